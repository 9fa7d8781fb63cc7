"""The event-file reader: what it returns for good files, and a typed, named refusal for bad ones."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from eventfiles import (
    DAMAGED,
    OBSID,
    column_index,
    event_hdus,
    file_bytes,
    set_card,
    small_events,
    write_file,
)
from isal import igzip

from batglitch.errors import EventFileError
from batglitch.science.events import EventList, parse_events
from batglitch.sources.fetch import fetch
from batglitch.standins.synth import SynthSpec, event_file_bytes

SOURCE = "s3://bucket/sw00031337001bevshpo_uf.evt.gz"


def test_columns_come_back_exact_native_and_typed():
    events = small_events()
    parsed = parse_events(file_bytes(event_hdus(events)), SOURCE)
    for name, dtype in (("time", "f8"), ("detx", "i2"), ("dety", "i2"), ("energy", "f4")):
        column = getattr(parsed, name)
        assert column.dtype == np.dtype(dtype) and column.dtype.isnative, name
        assert np.array_equal(column, getattr(events, name)), name
    assert parsed.gti.dtype == np.float64 and parsed.gti.dtype.isnative
    assert np.array_equal(parsed.gti, events.gti)
    assert parsed.obsid == OBSID and parsed.header["GAINAPP"] is True
    assert parsed.source == SOURCE and len(parsed) == 5


def test_synthetic_file_reads_like_astropy(tmp_path):
    raw, truth = event_file_bytes(SynthSpec(duration=12.0, rate_hz=3000.0, n_glitches=1, seed=3))
    parsed = parse_events(raw, "synth.evt.gz")
    path = tmp_path / "synth.evt.gz"
    path.write_bytes(raw)
    events, gti = Table.read(path, hdu="EVENTS"), Table.read(path, hdu="GTI")
    for name in ("TIME", "DETX", "DETY", "ENERGY"):
        column = getattr(parsed, name.lower())
        # the archive's layout: astropy scales ENERGY (1I, TSCAL 0.1) to float64, nulls included;
        # the reader keeps keV at float32, which leaves every band edge (15, 25, 50, 350) exact
        assert np.array_equal(column, np.asarray(events[name]).astype(column.dtype)), name
    assert events["ENERGY"].dtype == np.float64 and np.any(events["ENERGY"] == -3276.8)
    assert np.array_equal(parsed.gti, np.column_stack([gti["START"], gti["STOP"]]))
    assert np.array_equal(parsed.gti, truth.gti) and len(parsed) == truth.n_events
    assert parsed.header["TSTART"] == 7.0e8 and parsed.header["UTCFINIT"] == -25.0


def test_plain_evt_reads_the_same_as_gzipped():
    hdus = event_hdus(small_events())
    plain = parse_events(file_bytes(hdus, gz=False), "f.evt")
    gzipped = parse_events(file_bytes(hdus), "f.evt.gz")
    for name in ("time", "detx", "dety", "energy", "gti"):
        assert np.array_equal(getattr(plain, name), getattr(gzipped, name)), name


def test_multi_member_gzip_reads_whole():
    plain = file_bytes(event_hdus(small_events()), gz=False)
    cut = len(plain) // 3
    members = igzip.compress(plain[:cut]) + igzip.compress(plain[cut:])
    assert np.array_equal(parse_events(members, "f.evt.gz").time, small_events().time)


def test_reads_through_an_fsspec_url(tmp_path):
    path = write_file(tmp_path / "sw.evt.gz", small_events())
    url = path.as_uri()
    assert url.startswith("file://")
    blob = fetch(url)
    parsed = parse_events(blob.data, blob.url)
    assert parsed.source == url and np.array_equal(parsed.time, small_events().time)


def test_uncalibrated_energies_only_when_allowed():
    raw = file_bytes(event_hdus(small_events(), gainapp=False))
    with pytest.raises(EventFileError, match="GAINAPP") as caught:
        parse_events(raw, SOURCE)
    assert caught.value.obsid == OBSID and SOURCE in str(caught.value)
    parsed = parse_events(raw, SOURCE, allow_uncalibrated=True)
    assert parsed.header["GAINAPP"] is False
    assert np.array_equal(parsed.energy, small_events().energy)


@pytest.mark.parametrize("case", DAMAGED.values(), ids=DAMAGED.keys())
def test_damaged_files_are_refused_naming_file_and_obsid(case):
    with pytest.raises(EventFileError) as caught:
        parse_events(case.make(), SOURCE)
    error = caught.value
    assert case.problem in error.problem, error.problem
    assert error.source == SOURCE and SOURCE in str(error) and "\n" not in str(error)
    assert error.obsid == (OBSID if case.names_obsid else None)


def test_the_archive_energy_layout_reads_as_astropy_scales_it(tmp_path):
    """ENERGY as the archive stores it: 1I with TSCAL 0.1 and TNULL -32768 (DESIGN.md); a null
    reads as -3276.8 keV, as astropy's Table.read gives it."""
    hdus = event_hdus(small_events())
    stored = np.array([150, 250, 251, -32768, 3500], dtype=np.int16)
    columns = [
        fits.Column(name="ENERGY", format="1I", array=stored) if c.name == "ENERGY" else c
        for c in hdus["EVENTS"].columns
    ]
    hdus["EVENTS"] = fits.BinTableHDU.from_columns(
        columns, header=hdus["EVENTS"].header.copy(), name="EVENTS"
    )
    index = column_index("ENERGY", hdus)
    raw = file_bytes(hdus, gz=False)  # then the scaling keywords, as bateconvert writes them
    raw = set_card(set_card(raw, 1, f"TSCAL{index}", "0.1"), 1, f"TNULL{index}", "-32768")
    path = tmp_path / "scaled.evt"
    path.write_bytes(raw)
    expected = np.asarray(Table.read(path, hdu="EVENTS")["ENERGY"])
    assert expected.dtype == np.float64 and expected[3] == -3276.8
    parsed = parse_events(raw, str(path))
    assert np.array_equal(parsed.energy, expected.astype(np.float32))
    assert np.array_equal(parsed.energy <= 25.0, expected <= 25.0)


def test_event_list_obsid_is_stripped_text_or_none():
    events = small_events()
    columns = (events.time, events.detx, events.dety, events.energy, events.gti, "x")
    assert EventList(*columns).obsid is None
    assert EventList(*columns, header={"OBS_ID": f" {OBSID}  "}).obsid == OBSID
