"""The time base of GUANO answers, decided against the event file's own MET."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from batglitch.sources.guano import Dump
from batglitch.sources.timebase import MET_EPOCH, SWIFT, UTC, FileSpan, met_of, resolve_triggers

UTCF = -36.5
TSTART = 780_000_000.0


def dump_in(base: str, begin_met: float, duration: float = 200.0, with_utcf: bool = True) -> Dump:
    """A dump covering [begin_met, begin_met + duration] with its trigger at the middle, every
    time written in `base` as a service speaking that base would (with or without its UTCF)."""
    shift = UTCF if base == UTC else 0.0

    def when(met: float):
        return MET_EPOCH + timedelta(seconds=met + shift)

    return Dump(
        obsid="00012345001",
        triggertype="GBM GRB",
        triggertime=when(begin_met + duration / 2),
        duration=duration,
        begin=when(begin_met),
        end=when(begin_met + duration),
        utcf=UTCF if with_utcf else None,
        kinds=("po",),
    )


def span(tstart: float = TSTART, duration: float = 200.0, utcf: float | None = UTCF) -> FileSpan:
    gti = np.array(
        [[tstart + 0.5, tstart + duration / 2], [tstart + duration / 2 + 3, tstart + duration]]
    )
    return FileSpan(tstart, tstart + duration, gti, utcf)


@pytest.mark.parametrize("base", [UTC, SWIFT])
def test_the_base_whose_edges_fit_the_file_wins_and_trigger_times_agree(base):
    [t] = resolve_triggers([dump_in(base, TSTART)], [span()])
    assert (t.time_base, t.checked) == (base, True)
    assert t.trigger_met == pytest.approx(TSTART + 100.0, abs=1e-6)
    assert t.trigger_utc == MET_EPOCH + timedelta(seconds=TSTART + 100.0 + UTCF)


def test_dumps_without_file_evidence_follow_the_others_then_the_default():
    far = dump_in(SWIFT, TSTART + 50_000)
    near = dump_in(SWIFT, TSTART)
    triggers = resolve_triggers([near, far], [span()])
    assert [t.time_base for t in triggers] == [SWIFT, SWIFT]
    assert [t.checked for t in triggers] == [True, False]
    [alone] = resolve_triggers([far], [span()])
    assert (alone.time_base, alone.checked) == (UTC, False)  # the recorded answers' base


@pytest.mark.parametrize("base", [UTC, SWIFT])
def test_a_dump_without_utcf_is_read_with_the_files(base):
    [t] = resolve_triggers([dump_in(base, TSTART, with_utcf=False)], [span()])
    assert (t.time_base, t.checked, t.utcf) == (base, True, UTCF)
    assert t.trigger_met == pytest.approx(TSTART + 100.0, abs=1e-6)


def test_several_files_any_of_them_can_decide():
    sl = span(TSTART - 300.0, 100.0)
    [t] = resolve_triggers([dump_in(UTC, TSTART)], [sl, span()])
    assert (t.time_base, t.checked) == (UTC, True)


def test_met_of_reads_either_base():
    t = MET_EPOCH + timedelta(seconds=1000.0)
    assert met_of(t, SWIFT, UTCF) == 1000.0
    assert met_of(t, UTC, UTCF) == 1000.0 - UTCF


@pytest.mark.parametrize("base", [UTC, SWIFT])
def test_a_file_shorter_or_longer_than_the_dump_still_decides(base):
    short = span(duration=90.0)  # the file holds the first 90 s of a 200 s dump
    [t] = resolve_triggers([dump_in(base, TSTART)], [short])
    assert (t.time_base, t.checked) == (base, True)
    long = span(TSTART - 500.0, 900.0)  # several dumps in one file: only GTIs mark this one
    long = FileSpan(long.tstart, long.tstop, np.array([[TSTART, TSTART + 200.0]]), UTCF)
    [t] = resolve_triggers([dump_in(base, TSTART)], [long])
    assert (t.time_base, t.checked) == (base, True)
