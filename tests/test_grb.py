"""GRB windows (science/grb.py) against the plain GRB-notebook steps, array for array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from reference import reference_grb_file, reference_grb_row
from test_dpi import assert_parity

from batglitch.errors import EventFileError
from batglitch.science.events import parse_events
from batglitch.science.grb import grb_table, trigger_time
from batglitch.standins.synth import SynthSpec, write_event_file

TRIGGER_FILES = [
    SynthSpec(obsid="01200037000", duration=40.0, n_glitches=0, n_grbs=1, trigger_met=7.0e8 + 17.3,
              seed=1),
    SynthSpec(obsid="01200074000", duration=60.0, n_glitches=2, n_grbs=2, trigger_met=7.0e8 + 9.0071,
              rate_hz=9000.0, n_gti=3, seed=2),
    SynthSpec(obsid="01200111000", duration=30.0, n_glitches=0, n_grbs=1, trigger_met=7.0e8 + 25.5,
              rate_hz=2000.0, disabled_fraction=0.1, seed=3),
]  # fmt: skip


@pytest.mark.parametrize("spec", TRIGGER_FILES, ids=lambda s: s.obsid)
def test_grb_window_equals_the_grb_notebook(tmp_path: Path, spec: SynthSpec):
    path = tmp_path / f"sw{spec.obsid}bevshsp_uf.evt.gz"
    write_event_file(path, spec)
    row = reference_grb_file(path)
    events = parse_events(path.read_bytes(), str(path))
    assert trigger_time(events) == spec.trigger_met
    table = grb_table(events)
    assert row["n_events"] > 0  # the trigger window holds the burst: something to compare
    assert_parity(table, [row], compare_snr=False)
    assert np.isnan(table.snr_low).all() and np.isnan(table.snr_ratio).all()


def test_an_explicit_trigger_time_and_file_order_do_not_matter(tmp_path: Path):
    spec = TRIGGER_FILES[0]
    path = tmp_path / "trigger.evt.gz"
    write_event_file(path, spec)
    events = parse_events(path.read_bytes(), str(path))
    order = np.random.default_rng(0).permutation(len(events))
    shuffled = type(events)(
        events.time[order], events.detx[order], events.dety[order], events.energy[order],
        events.gti, events.source, events.header,
    )  # fmt: skip
    at = spec.trigger_met + 0.5
    row = reference_grb_row(events.time, events.detx, events.dety, events.energy, at)
    assert_parity(grb_table(shuffled, at), [row], compare_snr=False)


def test_a_file_without_trigtime_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "sw00012345000bevshpo_uf.evt.gz"
    write_event_file(path, SynthSpec(duration=10.0, n_glitches=1))
    events = parse_events(path.read_bytes(), str(path))
    with pytest.raises(EventFileError, match="TRIGTIME") as caught:
        grb_table(events)
    assert "00012345000" in str(caught.value) and str(path) in str(caught.value)


def test_trigger_spec_must_hold_its_burst():
    with pytest.raises(ValueError, match="trigger"):
        SynthSpec(n_grbs=0, trigger_met=7.0e8 + 1)
    with pytest.raises(ValueError, match="trigger"):
        SynthSpec(n_grbs=1, trigger_met=6.0e8)
