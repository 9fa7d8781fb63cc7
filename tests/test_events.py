"""The event-file reader: what it returns for good files, and a typed, named refusal for bad ones."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from eventfiles import OBSID, Events, event_hdus, file_bytes, write_file
from isal import igzip

from batglitch.errors import EventFileError
from batglitch.science.events import EventList, parse_events
from batglitch.sources.fetch import fetch
from batglitch.standins.synth import SynthSpec, event_file_bytes

SOURCE = "s3://bucket/sw00031337001bevshpo_uf.evt.gz"


def small_events(**changes) -> Events:
    """Five ordinary events in one GTI; keyword arguments replace whole columns."""
    columns = {
        "time": [100.0, 100.5, 101.0, 101.5, 102.0],
        "detx": [0, 10, 100, 200, 285],
        "dety": [0, 20, 90, 150, 172],
        "energy": [15.0, 25.0, 50.0, 120.5, 350.0],
        "gti": [[99.0, 103.0]],
    }
    return Events.of(**{**columns, **changes})


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
        assert np.array_equal(getattr(parsed, name.lower()), np.asarray(events[name])), name
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


def _without(extname: str) -> Callable[[fits.HDUList], None]:
    def edit(hdus: fits.HDUList) -> None:
        del hdus[extname]

    return edit


def _drop_column(name: str) -> Callable[[fits.HDUList], None]:
    def edit(hdus: fits.HDUList) -> None:
        old = hdus["EVENTS"]
        columns = [c for c in old.columns if c.name != name]
        header = old.header.copy()
        hdus["EVENTS"] = fits.BinTableHDU.from_columns(columns, header=header, name="EVENTS")

    return edit


# (test id, events, HDU edit or None, expected message part)
HEADER_READABLE = [
    ("no EVENTS", small_events(), _without("EVENTS"), "no EVENTS extension"),
    ("no GTI", small_events(), _without("GTI"), "no GTI extension"),
    ("no ENERGY column", small_events(), _drop_column("ENERGY"), "no column(s) ENERGY"),
    ("no DETY column", small_events(), _drop_column("DETY"), "no column(s) DETY"),
    ("zero events", Events.of([], [], [], [], [[99.0, 103.0]]), None, "EVENTS has no rows"),
    ("zero GTI rows", small_events(gti=np.empty((0, 2))), None, "GTI has no rows"),
    ("STOP < START", small_events(gti=[[99.0, 103.0], [110.0, 109.0]]), None, "STOP < START"),
    ("NaN TIME", small_events(time=[100.0, np.nan, 101, 102, 103]), None, "1 non-finite TIME"),
    ("inf TIME", small_events(time=[100.0, 101, np.inf, -np.inf, 103]), None, "2 non-finite TIME"),
    ("DETX 286", small_events(detx=[0, 1, 2, 3, 286]), None, "DETX outside 0..285"),
    ("DETX -1", small_events(detx=[-1, 1, 2, 3, 4]), None, "DETX outside 0..285"),
    ("DETY 173", small_events(dety=[0, 173, 2, 3, 4]), None, "DETY outside 0..172"),
]


@pytest.mark.parametrize(
    ("events", "edit", "problem"),
    [case[1:] for case in HEADER_READABLE],
    ids=[case[0] for case in HEADER_READABLE],
)
def test_bad_content_is_refused_naming_file_and_obsid(events, edit, problem):
    hdus = event_hdus(events)
    if edit:
        edit(hdus)
    with pytest.raises(EventFileError) as caught:
        parse_events(file_bytes(hdus), SOURCE)
    error = caught.value
    assert problem in error.problem
    assert error.source == SOURCE and error.obsid == OBSID
    assert SOURCE in str(error) and OBSID in str(error)


def _fits() -> bytes:
    return file_bytes(event_hdus(small_events()), gz=False)


def _gzip_cut(drop: float) -> bytes:
    whole = igzip.compress(_fits())
    return whole[: len(whole) - max(1, int(drop * len(whole)))]


UNREADABLE = [
    ("empty", lambda: b"", "not a FITS file"),
    ("text", lambda: b"TIME,DETX\n1,2\n" * 300, "not a FITS file"),
    ("gzipped text", lambda: igzip.compress(b"hello " * 1000), "not a FITS file"),
    ("gzip cut in half", lambda: _gzip_cut(0.5), "truncated gzip"),
    ("gzip without its last byte", lambda: _gzip_cut(0.0), "truncated gzip"),
    ("corrupt gzip", lambda: b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8, "corrupt gzip"),
    ("header cut short", lambda: _fits()[:1000], "truncated FITS"),
]


@pytest.mark.parametrize(
    ("make", "problem"), [case[1:] for case in UNREADABLE], ids=[case[0] for case in UNREADABLE]
)
def test_unreadable_bytes_are_refused_naming_the_file(make, problem):
    with pytest.raises(EventFileError) as caught:
        parse_events(make(), SOURCE)
    assert problem in caught.value.problem and SOURCE in str(caught.value)


def test_truncated_data_names_the_obsid_from_the_readable_header():
    whole = _fits()
    with fits.open(io.BytesIO(whole)) as hdus:
        cut = hdus.fileinfo(1)["datLoc"] + 10  # a download cut short inside the EVENTS rows
    with pytest.raises(EventFileError, match="truncated FITS") as caught:
        parse_events(whole[:cut], SOURCE)
    assert caught.value.obsid == OBSID


def test_event_list_obsid_is_stripped_text_or_none():
    events = small_events()
    columns = (events.time, events.detx, events.dety, events.energy, events.gti, "x")
    assert EventList(*columns).obsid is None
    assert EventList(*columns, header={"OBS_ID": f" {OBSID}  "}).obsid == OBSID
