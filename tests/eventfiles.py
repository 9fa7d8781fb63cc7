"""Build BAT event files from plain arrays, for tests that need exact control over every event.

The FITS layout comes from the synthetic generator's writer, so the project has one event-file
writer; this module only turns arrays into its input and lets tests break the result on purpose.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from isal import igzip

from batglitch.science.config import N_DETX, N_DETY
from batglitch.science.events import BLOCK, CARD, EventList
from batglitch.standins import synth

OBSID = "00031337001"
BIN_S = 0.016  # the reference's bin and pad, written as it writes them
PAD_S = 0.024
LOW_BAND = (15.0, 25.0)  # low-band energies that also land in the first low-resolution band
HIGH_BAND = (50.5, 349.0)


@dataclass(frozen=True)
class Events:
    """The columns the algorithm reads, in the dtypes a BAT file stores, plus the GTI rows."""

    time: np.ndarray
    detx: np.ndarray
    dety: np.ndarray
    energy: np.ndarray
    gti: np.ndarray

    @classmethod
    def of(cls, time, detx, dety, energy, gti) -> Events:
        time = np.asarray(time, dtype=np.float64)
        n = len(time)
        return cls(
            time=time,
            detx=np.broadcast_to(np.asarray(detx, dtype=np.int16), n).copy(),
            dety=np.broadcast_to(np.asarray(dety, dtype=np.int16), n).copy(),
            energy=np.broadcast_to(np.asarray(energy, dtype=np.float32), n).copy(),
            gti=np.asarray(gti, dtype=np.float64).reshape(-1, 2),
        )

    @classmethod
    def join(cls, parts: list[Events], gti) -> Events:
        """All events of the parts (in that order) under the given GTI rows."""
        columns = ("time", "detx", "dety", "energy")
        return cls.of(*(np.concatenate([getattr(p, c) for p in parts]) for c in columns), gti=gti)

    def permuted(self, order: np.ndarray) -> Events:
        """The same events in another file order."""
        return Events(
            self.time[order], self.detx[order], self.dety[order], self.energy[order], self.gti
        )

    def event_list(self, source: str = "arrays") -> EventList:
        """The same content as parse_events would return it, without a file in between."""
        return EventList(
            self.time, self.detx, self.dety, self.energy, self.gti, source, {"OBS_ID": OBSID}
        )


def reference_edges(start: float, stop: float) -> np.ndarray:
    """One GTI's 16 ms grid with exactly the reference's float arithmetic."""
    return np.arange(start, stop + BIN_S / 2, BIN_S)


def binned_events(
    edges: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    rng: np.random.Generator,
    *,
    on_left_edge: float = 0.0,
) -> Events:
    """low[i] low-band and high[i] high-band events in bin i, anywhere on the plane.

    Times sit well inside their bin, except a fraction ``on_left_edge`` placed exactly on the
    bin's left edge (which still belongs to the bin).
    """
    low, high = np.asarray(low), np.asarray(high)
    bins = np.concatenate(
        [np.repeat(np.arange(len(low)), low), np.repeat(np.arange(len(high)), high)]
    )
    width = edges[bins + 1] - edges[bins]
    offset = np.where(rng.random(bins.size) < on_left_edge, 0.0, rng.uniform(0.1, 0.9, bins.size))
    energy = np.concatenate(
        [rng.uniform(*LOW_BAND, low.sum()), rng.uniform(*HIGH_BAND, high.sum())]
    )
    return Events.of(
        edges[bins] + offset * width,
        rng.integers(0, N_DETX, bins.size),
        rng.integers(0, N_DETY, bins.size),
        energy,
        gti=np.empty((0, 2)),
    )


def event_hdus(
    events: Events, *, obsid: str = OBSID, gainapp: bool = True, scaled: bool = False
) -> fits.HDUList:
    """The HDUs of a BAT event file holding exactly these events and GTI rows; scaled: ENERGY
    in the archive's 1I/TSCAL 0.1 layout (energies then in 0.1 keV steps), else 1E keV."""
    table = np.zeros(len(events.time), dtype=synth.EVENT_DTYPE)
    for column in ("time", "detx", "dety", "energy"):
        table[column.upper()] = getattr(events, column)
    known = np.concatenate([events.time[np.isfinite(events.time)], events.gti.ravel()])
    tstart = float(known.min()) if known.size else 0.0
    duration = max(float(known.max()) - tstart, 1.0) if known.size else 1.0
    spec = synth.SynthSpec(
        obsid=obsid, tstart=tstart, duration=duration, gainapp=gainapp, scaled_energy=scaled
    )
    return synth.fits_hdus(table, events.gti, spec)


def file_bytes(hdus: fits.HDUList, *, gz: bool = True) -> bytes:
    """The file as stored: gzipped (.evt.gz) or plain (.evt)."""
    buffer = io.BytesIO()
    hdus.writeto(buffer)
    return igzip.compress(buffer.getvalue(), compresslevel=1) if gz else buffer.getvalue()


def write_file(path: Path, events: Events, **header) -> Path:
    path.write_bytes(file_bytes(event_hdus(events, **header), gz=path.suffix == ".gz"))
    return path


# ---- damaged and hostile files: the one corpus the reader, the pipeline and the fuzzer share ----


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


def header_starts(raw: bytes) -> list[int]:
    """Byte offsets of the HDU headers of a plain FITS file (PRIMARY first)."""
    return [0] + [p for p in range(0, len(raw), BLOCK) if raw[p : p + 9] == b"XTENSION="]


def set_card(raw: bytes, hdu: int, key: str, value: str | None) -> bytes:
    """The file with the first ``key`` card of HDU ``hdu`` given a new value text, or added
    before END if it has none (None: the card becomes a blank COMMENT, the keyword is gone)."""
    start = header_starts(raw)[hdu]
    end = raw.index(b"END" + b" " * 77, start)
    card = ("COMMENT" if value is None else f"{key:<8}= {value:>20}").ljust(CARD).encode()
    for pos in range(start, end, CARD):
        if raw[pos : pos + 8].decode().strip() == key:
            return raw[:pos] + card + raw[pos + CARD :]
    return _before_end(raw, start, card)


def _before_end(raw: bytes, start: int, card: bytes) -> bytes:
    """One more card at the end of the header starting at ``start`` (END moves one card on)."""
    end = raw.index(b"END" + b" " * 77, start)
    assert (end - start) % BLOCK < BLOCK - CARD, "END is the last card of its block"
    return raw[:end] + card + raw[end : end + CARD] + raw[end + 2 * CARD :]


def column_index(name: str, hdus: fits.HDUList | None = None) -> int:
    """1-based field number of an EVENTS column (for TSCALn and friends)."""
    hdus = hdus or event_hdus(small_events())
    return hdus["EVENTS"].columns.names.index(name) + 1


def _edited(edit, events: Events | None = None, **header) -> bytes:
    hdus = event_hdus(events or small_events(), **header)
    edit(hdus)
    return file_bytes(hdus, gz=False)


def _replace_events(hdus: fits.HDUList, columns: list[fits.Column]) -> None:
    old = hdus["EVENTS"]
    hdus["EVENTS"] = fits.BinTableHDU.from_columns(columns, header=old.header.copy(), name="EVENTS")


def _without(extname: str):
    return lambda hdus: hdus.__delitem__(extname)


def _drop_column(name: str):
    return lambda hdus: _replace_events(hdus, [c for c in hdus["EVENTS"].columns if c.name != name])


def _detx_as_j(value: int):
    """DETX stored as 32-bit J: out-of-range values that int16 would wrap into range."""

    def edit(hdus: fits.HDUList) -> None:
        detx = np.asarray(hdus["EVENTS"].data["DETX"], dtype=np.int32)
        detx[-1] = value
        columns = [
            fits.Column(name="DETX", format="1J", array=detx) if c.name == "DETX" else c
            for c in hdus["EVENTS"].columns
        ]
        _replace_events(hdus, columns)

    return edit


def _tiny_events_first(hdus: fits.HDUList) -> None:
    """A second EVENTS extension, one event long, placed before the real one."""
    tiny = event_hdus(small_events(time=[100.0] * 5))["EVENTS"]
    tiny.data = tiny.data[:1]
    hdus.insert(1, tiny)


def _plain() -> bytes:
    return file_bytes(event_hdus(small_events()), gz=False)


def _gzip_cut(drop: float) -> bytes:
    whole = igzip.compress(_plain())
    return whole[: len(whole) - max(1, int(drop * len(whole)))]


def _events_data_offset(raw: bytes) -> int:
    with fits.open(io.BytesIO(raw)) as hdus:
        return hdus.fileinfo(1)["datLoc"]


def _naxis2(delta: int) -> bytes:
    raw = _plain()
    return set_card(raw, 1, "NAXIS2", str(len(small_events().time) + delta))


def _non_ascii() -> bytes:
    raw = bytearray(_plain())
    start = header_starts(bytes(raw))[1]
    raw[start + 8 * CARD + 20] = 0xE9  # inside a card of the EVENTS header
    return bytes(raw)


def _duplicate_card(key: str) -> bytes:
    """The EVENTS header with a second ``key`` card (same value) added before END."""
    raw = _plain()
    start = header_starts(raw)[1]
    pos = next(p for p in range(start, len(raw), CARD) if raw[p : p + 8].strip() == key.encode())
    return _before_end(raw, start, raw[pos : pos + CARD])


def _nan_gti(hdus: fits.HDUList) -> None:
    hdus["GTI"].data["STOP"][0] = np.nan


@dataclass(frozen=True)
class Damaged:
    """A damaged or hostile event file: its bytes, part of the expected problem, and whether
    its readable header names the obsid (so errors can)."""

    make: Callable[[], bytes]
    problem: str
    names_obsid: bool = True


ENERGY, DETX = column_index("ENERGY"), column_index("DETX")

DAMAGED: dict[str, Damaged] = {
    "empty": Damaged(lambda: b"", "not a FITS file", False),
    "text": Damaged(lambda: b"TIME,DETX\n1,2\n" * 300, "not a FITS file", False),
    "gzipped text": Damaged(lambda: igzip.compress(b"hello " * 1000), "not a FITS file", False),
    # the headers (OBS_ID) lie in the first half of the stream: the error names the obsid
    "gzip cut in half": Damaged(lambda: _gzip_cut(0.5), "truncated gzip"),
    "gzip without its last byte": Damaged(lambda: _gzip_cut(0.0), "truncated gzip"),
    "corrupt deflate data": Damaged(
        lambda: b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8, "corrupt gzip", False
    ),
    "gzip CRC wrong": Damaged(
        lambda: (lambda z: z[:-8] + bytes([z[-8] ^ 0xFF]) + z[-7:])(igzip.compress(_plain())),
        "corrupt gzip",
        False,  # a small file fails its CRC before any header is out
    ),
    "header cut short": Damaged(lambda: _plain()[:1000], "truncated FITS", False),
    "cut inside the EVENTS rows": Damaged(
        lambda: (lambda r: r[: _events_data_offset(r) + 10])(_plain()), "truncated FITS"
    ),
    "no EVENTS": Damaged(lambda: _edited(_without("EVENTS")), "no EVENTS extension"),
    "no GTI": Damaged(lambda: _edited(_without("GTI")), "no GTI extension"),
    "no ENERGY column": Damaged(lambda: _edited(_drop_column("ENERGY")), "no column(s) ENERGY"),
    "no DETY column": Damaged(lambda: _edited(_drop_column("DETY")), "no column(s) DETY"),
    "zero events": Damaged(
        lambda: file_bytes(event_hdus(Events.of([], [], [], [], [[99.0, 103.0]]))),
        "EVENTS has no rows",
    ),
    "zero GTI rows": Damaged(
        lambda: file_bytes(event_hdus(small_events(gti=np.empty((0, 2))))), "GTI has no rows"
    ),
    "GTI STOP < START": Damaged(
        lambda: file_bytes(event_hdus(small_events(gti=[[99.0, 103.0], [110.0, 109.0]]))),
        "STOP < START",
    ),
    "NaN in GTI": Damaged(lambda: _edited(_nan_gti), "non-finite START"),
    "NaN TIME": Damaged(
        lambda: file_bytes(event_hdus(small_events(time=[100.0, np.nan, 101, 102, 103]))),
        "1 non-finite TIME",
    ),
    "inf TIME": Damaged(
        lambda: file_bytes(event_hdus(small_events(time=[100.0, 101, np.inf, -np.inf, 103]))),
        "2 non-finite TIME",
    ),
    "NaN ENERGY": Damaged(
        lambda: file_bytes(event_hdus(small_events(energy=[20.0, np.nan, 30, 40, 50]))),
        "1 non-finite ENERGY",
    ),
    "DETX 286": Damaged(
        lambda: file_bytes(event_hdus(small_events(detx=[0, 1, 2, 3, 286]))), "DETX outside 0..285"
    ),
    "DETX -1": Damaged(
        lambda: file_bytes(event_hdus(small_events(detx=[-1, 1, 2, 3, 4]))), "DETX outside 0..285"
    ),
    "DETY 173": Damaged(
        lambda: file_bytes(event_hdus(small_events(dety=[0, 173, 2, 3, 4]))), "DETY outside 0..172"
    ),
    "DETX as J wrapping into range": Damaged(
        lambda: _edited(_detx_as_j(65536 + 100)), "DETX outside 0..285"
    ),
    "DETX scaled to fractions": Damaged(
        lambda: set_card(_plain(), 1, f"TSCAL{DETX}", "0.5"), "DETX has non-integer values"
    ),
    "a tiny EVENTS before the real one": Damaged(
        lambda: _edited(_tiny_events_first), "2 EVENTS extensions"
    ),
    "NAXIS2 understated": Damaged(lambda: _naxis2(-2), "data size disagrees"),
    "NAXIS2 overstated": Damaged(lambda: _naxis2(+200), "data size disagrees"),
    "NAXIS2 not a number": Damaged(lambda: set_card(_plain(), 1, "NAXIS2", "'five'"), "NAXIS2"),
    "NAXIS2 missing": Damaged(lambda: set_card(_plain(), 1, "NAXIS2", None), "NAXIS2 is missing"),
    "NAXIS1 too small": Damaged(
        lambda: set_card(set_card(_plain(), 1, "NAXIS1", "9"), 1, "NAXIS2", "15"),
        "NAXIS1 is 9 but its columns take",
    ),
    "TSCAL as a string": Damaged(
        lambda: set_card(_plain(), 1, f"TSCAL{ENERGY}", "'0.1'"), f"TSCAL{ENERGY}"
    ),
    "TFORM unreadable": Damaged(lambda: set_card(_plain(), 1, "TFORM1", "'1Z'"), "TFORM1"),
    "TFIELDS a float": Damaged(lambda: set_card(_plain(), 1, "TFIELDS", "9.5"), "TFIELDS"),
    "BITPIX 7": Damaged(lambda: set_card(_plain(), 2, "BITPIX", "7"), "BITPIX 7"),
    "NAXIS2 twice": Damaged(lambda: _duplicate_card("NAXIS2"), "NAXIS2 twice"),
    "extension without XTENSION": Damaged(
        lambda: (lambda r: r.replace(b"XTENSION= 'BINTABLE'", b"XTENSIOX= 'BINTABLE'", 1))(
            _plain()
        ),
        "no XTENSION card",
    ),
    "non-ASCII header byte": Damaged(_non_ascii, "non-ASCII"),
    "trailing garbage": Damaged(lambda: _plain() + b"\x00" * BLOCK, "no XTENSION card"),
    "path characters in OBS_ID": Damaged(
        lambda: set_card(_plain(), 0, "OBS_ID", "'../../../tmp/x'"), "is not 11 digits", False
    ),
    "OBS_ID differs between HDUs": Damaged(
        lambda: set_card(_plain(), 1, "OBS_ID", "'00099999001'"), "differs from"
    ),
    "TSTART a string": Damaged(
        lambda: set_card(set_card(_plain(), 0, "TSTART", "'soon'"), 1, "TSTART", "'soon'"),
        "TSTART",
    ),
    "uncalibrated energies": Damaged(
        lambda: file_bytes(event_hdus(small_events(), gainapp=False)), "GAINAPP"
    ),
}
