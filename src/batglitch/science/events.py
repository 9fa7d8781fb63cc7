"""Read a BAT event file (``.evt`` or ``.evt.gz``) into plain numpy arrays.

Only the EVENTS columns the algorithm needs (TIME, DETX, DETY, ENERGY) and the GTI table are read.
The FITS structure is parsed here directly rather than through astropy: the file is decompressed
once into memory and the columns are cut out of that buffer, so the peak memory is one decompressed
copy plus the four columns, and nothing needs a seekable file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from isal import igzip

from batglitch.errors import EventFileError
from batglitch.science.config import N_DETX, N_DETY

BLOCK = 2880
CARD = 80
GZIP_MAGIC = b"\x1f\x8b"
EVENT_COLUMNS = {"TIME": "f8", "DETX": "i2", "DETY": "i2", "ENERGY": "f4"}
GTI_COLUMNS = {"START": "f8", "STOP": "f8"}
HEADER_KEYS = ("OBS_ID", "TSTART", "TSTOP", "UTCFINIT", "GAINAPP", "GAINMETH", "TIMESYS")

# FITS binary-table type codes: (bytes per element, numpy big-endian dtype or None if not numeric)
_TFORM_TYPES: dict[str, tuple[int, str | None]] = {
    "L": (1, None),
    "B": (1, "u1"),
    "I": (2, ">i2"),
    "J": (4, ">i4"),
    "K": (8, ">i8"),
    "A": (1, None),
    "E": (4, ">f4"),
    "D": (8, ">f8"),
    "C": (8, None),
    "M": (16, None),
    "P": (8, None),
    "Q": (16, None),
}
_TFORM = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])")


@dataclass(frozen=True)
class EventList:
    """The columns of one event file that the glitch search uses, in native byte order."""

    time: np.ndarray  # float64, MET seconds, in file order
    detx: np.ndarray  # int16, 0..285
    dety: np.ndarray  # int16, 0..172
    energy: np.ndarray  # float32, keV
    gti: np.ndarray  # float64, shape (n, 2): START, STOP
    source: str
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def obsid(self) -> str | None:
        value = self.header.get("OBS_ID")
        return str(value).strip() if value is not None else None

    def __len__(self) -> int:
        return len(self.time)


@dataclass(frozen=True)
class _HDU:
    header: dict[str, Any]
    data_offset: int
    data_size: int


def decompress(raw: bytes, source: str) -> bytes:
    """Gunzip (multi-member aware) if the bytes are gzip, else return them; errors name the file."""
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return igzip.decompress(raw)
    except EOFError as exc:
        raise EventFileError(source, f"truncated gzip stream ({exc})") from exc
    except Exception as exc:  # isal raises its own error classes for corrupt deflate data
        raise EventFileError(source, f"corrupt gzip stream ({exc})") from exc


def parse_events(raw: bytes, source: str, *, allow_uncalibrated: bool = False) -> EventList:
    """Turn the bytes of an event file (gzipped or not) into an EventList, validating as it goes."""
    data = decompress(raw, source)
    del raw
    if not data.startswith(b"SIMPLE  ="):
        raise EventFileError(source, "not a FITS file (no SIMPLE card at the start)")
    hdus: dict[str, _HDU] = {}
    primary: dict[str, Any] | None = None
    try:
        for hdu in _iter_hdus(data, source):
            if primary is None:
                primary = hdu.header
            name = str(hdu.header.get("EXTNAME", "")).strip().upper()
            if name in ("EVENTS", "GTI") and name not in hdus:
                hdus[name] = hdu
            if len(hdus) == 2:
                break
    except EventFileError as exc:  # name the obsid if a header before the damage gave it
        if exc.obsid is None and (known := _obsid(hdus.get("EVENTS"), primary)):
            raise EventFileError(source, exc.problem, known) from exc
        raise
    obsid = _obsid(hdus.get("EVENTS"), primary)
    for needed in ("EVENTS", "GTI"):
        if needed not in hdus:
            raise EventFileError(source, f"no {needed} extension", obsid)

    events_hdu = hdus["EVENTS"]
    header = {k: events_hdu.header[k] for k in HEADER_KEYS if k in events_hdu.header}
    if primary is not None:
        header.update({k: primary[k] for k in HEADER_KEYS if k not in header and k in primary})
    if obsid is not None:
        header["OBS_ID"] = obsid
    if header.get("GAINAPP") is not True and not allow_uncalibrated:
        raise EventFileError(
            source,
            f"GAINAPP is {header.get('GAINAPP')!r}: ENERGY is not gain-corrected "
            "(pass allow_uncalibrated to use it anyway)",
            obsid,
        )

    cols = _read_columns(data, events_hdu, EVENT_COLUMNS, source, obsid)
    gti_cols = _read_columns(data, hdus["GTI"], GTI_COLUMNS, source, obsid)
    del data
    gti = np.column_stack([gti_cols["START"], gti_cols["STOP"]])
    events = EventList(
        time=cols["TIME"],
        detx=cols["DETX"],
        dety=cols["DETY"],
        energy=cols["ENERGY"],
        gti=gti,
        source=source,
        header=header,
    )
    validate(events)
    return events


def validate(events: EventList) -> None:
    """Refuse content the algorithm would silently get wrong."""
    problems = []
    if len(events) == 0:
        problems.append("EVENTS has no rows")
    if len(events.gti) == 0:
        problems.append("GTI has no rows")
    elif np.any(events.gti[:, 1] < events.gti[:, 0]):
        bad = int(np.argmax(events.gti[:, 1] < events.gti[:, 0]))
        problems.append(f"GTI row {bad} has STOP < START")
    if not np.all(np.isfinite(events.gti)):
        problems.append("GTI has non-finite START/STOP")
    if len(events) and not np.all(np.isfinite(events.time)):
        bad = int(np.count_nonzero(~np.isfinite(events.time)))
        problems.append(f"{bad} non-finite TIME values")
    for name, values, size in (("DETX", events.detx, N_DETX), ("DETY", events.dety, N_DETY)):
        if len(values) and (values.min() < 0 or values.max() >= size):
            problems.append(f"{name} outside 0..{size - 1} ({values.min()}..{values.max()})")
    if problems:
        raise EventFileError(events.source, "; ".join(problems), events.obsid)


def _obsid(events_hdu: _HDU | None, primary: dict[str, Any] | None) -> str | None:
    for header in (events_hdu.header if events_hdu else None, primary):
        if header and header.get("OBS_ID") not in (None, ""):
            return str(header["OBS_ID"]).strip()
    return None


def _iter_hdus(data: bytes, source: str) -> Iterator[_HDU]:
    offset = 0
    while offset < len(data):
        header, data_offset = _parse_header(data, offset, source)
        naxis = int(header.get("NAXIS", 0))
        if naxis:
            elements = math.prod(int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1))
        else:
            elements = 0
        bits = abs(int(header.get("BITPIX", 8)))
        size = bits // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + elements)
        if data_offset + size > len(data):
            name = header.get("EXTNAME", "PRIMARY")
            problem = f"file ends inside the data of HDU {name} (truncated FITS)"
            raise EventFileError(source, problem, _obsid(None, header))
        yield _HDU(header, data_offset, size)
        offset = data_offset + -(-size // BLOCK) * BLOCK


def _parse_header(data: bytes, offset: int, source: str) -> tuple[dict[str, Any], int]:
    header: dict[str, Any] = {}
    pos = offset
    while True:
        if pos + BLOCK > len(data):
            raise EventFileError(source, "file ends inside a FITS header (truncated FITS)")
        block = data[pos : pos + BLOCK].decode("ascii", errors="replace")
        pos += BLOCK
        for i in range(0, BLOCK, CARD):
            card = block[i : i + CARD]
            key = card[:8].strip()
            if key == "END":
                return header, pos
            if card[8:10] == "= " and key not in header:
                header[key] = _card_value(card[10:])


def _card_value(text: str) -> Any:
    text = text.strip()
    if text.startswith("'"):
        # quoted string; '' is an escaped quote; trailing blanks are not significant
        out, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(text[i])
            i += 1
        return "".join(out).rstrip()
    value = text.split("/", 1)[0].strip()
    if value in ("T", "F"):
        return value == "T"
    for convert in (int, float):
        try:
            return convert(value.replace("D", "E") if convert is float else value)
        except ValueError:
            pass
    return value


def _read_columns(
    data: bytes, hdu: _HDU, wanted: dict[str, str], source: str, obsid: str | None
) -> dict[str, np.ndarray]:
    """Cut the wanted columns out of a binary table as native arrays (one copy each)."""
    header = hdu.header
    name = header.get("EXTNAME")
    if str(header.get("XTENSION", "")).strip() != "BINTABLE":
        raise EventFileError(source, f"{name} is not a binary table", obsid)
    row_bytes, n_rows = int(header["NAXIS1"]), int(header["NAXIS2"])
    layout: dict[str, tuple[int, str, int]] = {}  # column -> (offset, dtype, field index)
    offset = 0
    for index in range(1, int(header.get("TFIELDS", 0)) + 1):
        tform = str(header.get(f"TFORM{index}", ""))
        match = _TFORM.match(tform)
        if not match:
            raise EventFileError(source, f"{name}: unreadable TFORM{index} {tform!r}", obsid)
        repeat = int(match.group(1) or 1)
        size, dtype = _TFORM_TYPES.get(match.group(2), (0, None))
        width = -(-repeat // 8) if match.group(2) == "X" else size * repeat
        column = str(header.get(f"TTYPE{index}", "")).strip().upper()
        if column in wanted and column not in layout:
            if dtype is None or repeat != 1:
                problem = f"{name}.{column} has unsupported format {tform}"
                raise EventFileError(source, problem, obsid)
            layout[column] = (offset, dtype, index)
        offset += width
    missing = [c for c in wanted if c not in layout]
    if missing:
        raise EventFileError(source, f"{name} has no column(s) {', '.join(missing)}", obsid)
    names = list(layout)
    rows = np.frombuffer(
        data,
        dtype=np.dtype(
            {
                "names": names,
                "formats": [layout[c][1] for c in names],
                "offsets": [layout[c][0] for c in names],
                "itemsize": row_bytes,
            }
        ),
        count=n_rows,
        offset=hdu.data_offset,
    )
    out = {}
    for column in names:
        values = rows[column]
        index = layout[column][2]
        scale, zero = header.get(f"TSCAL{index}", 1), header.get(f"TZERO{index}", 0)
        if scale != 1 or zero != 0:
            values = values.astype(np.float64) * scale + zero
        out[column] = values.astype(wanted[column])
    return out
