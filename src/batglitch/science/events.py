"""Read a BAT event file (``.evt`` or ``.evt.gz``) into plain numpy arrays, trusting nothing in it.

Only the EVENTS columns the algorithm needs (TIME, DETX, DETY, ENERGY) and the GTI table are read.
The FITS structure is parsed here directly rather than through astropy, and strictly: every
extension starts with XTENSION, there is exactly one EVENTS and one GTI, NAXIS1 is the sum of the
column widths, every HDU ends where the next header starts, the keywords that shape the data are
numbers, and integer columns are range-checked before any cast. Every refusal is an EventFileError
naming the file (and the obsid once a header gave one).

Memory: a stream of (possibly gzipped) bytes is decompressed in small pieces into ONE buffer
reserved at the size cap; only the pages written become resident, so the peak is the FITS bytes
plus the four columns. The FITS structure is checked while the bytes arrive, so a gzip bomb stops
at its first wrong header instead of at the cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from isal import igzip_lib

from batglitch.errors import EventFileError
from batglitch.science.config import N_DETX, N_DETY

BLOCK = 2880
CARD = 80
GZIP_MAGIC = b"\x1f\x8b"
FITS_MAGIC = b"SIMPLE  ="
MAX_HEADER_BLOCKS = 1000  # real BAT headers take a few blocks; bounds re-scans of a partial one
MAX_FITS_BYTES = 2 * 1024**3  # decompressed cap: ~8x a 10 M-event GRB trigger file (~250 MB)
# Compressed bytes per decompressor call: deflate expands at most ~1032:1, so one call's output
# stays under ~70 MB even for a bomb. Small pieces also measured as fast as one-shot isal.
PIECE = 64 * 1024
# Gzip bombs: real event files expand ~2-5x; beyond MAX_RATIO x the compressed bytes read so far
# (plus a little slack for small files) the stream is refused long before the size cap.
MAX_RATIO = 100
RATIO_SLACK = 64 * 1024**2
CONVERT_ROWS = 1 << 20  # rows per conversion step: temporaries stay a few MB
EVENT_COLUMNS = {"TIME": "f8", "DETX": "i2", "DETY": "i2", "ENERGY": "f4"}
GTI_COLUMNS = {"START": "f8", "STOP": "f8"}
# Integer columns: the allowed range, checked on the stored (scaled) values before the cast.
COLUMN_RANGES = {"DETX": (0, N_DETX - 1), "DETY": (0, N_DETY - 1)}
HEADER_KEYS = ("OBS_ID", "TSTART", "TSTOP", "UTCFINIT", "GAINAPP", "GAINMETH", "TIMESYS")
HEADER_KEYS += ("TRIGTIME",)  # BAT trigger files: where the GRB window starts
NUMERIC_HEADER_KEYS = ("TSTART", "TSTOP", "UTCFINIT", "TRIGTIME")
OBSID = re.compile(r"\d{11}")
BITPIX = (8, 16, 32, 64, -32, -64)
# Keywords that shape the data or name the file: a second card of one is refused, not ignored.
STRUCTURAL = re.compile(
    r"SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|EXTNAME|OBS_ID|T(FORM|TYPE|SCAL|ZERO|NULL)\d+"
)

# FITS binary-table type codes: (bytes per element, numpy big-endian dtype or None if not numeric)
_TFORM_TYPES: dict[str, tuple[int, str | None]] = {
    "L": (1, None),
    "X": (1, None),
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
_TFORM = re.compile(r"\s*(\d*)([LXBIJKAEDCMPQ])(\S*)\s*")


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
class HDU:
    index: int
    header: dict[str, Any]
    data_offset: int
    data_size: int

    @property
    def name(self) -> str:
        name = str(self.header.get("EXTNAME", "PRIMARY" if self.index == 0 else "")).strip()
        return name or f"HDU {self.index}"  # an extension without EXTNAME, named in messages


class Layout:
    """The HDUs of a FITS byte stream as far as it has arrived, checked as they complete.

    ``scan`` is called with the bytes so far (streaming) and once more with all of them
    (``final``); the same checks apply to a file in memory and to one still downloading.
    """

    def __init__(self, source: str, limit: int) -> None:
        self.source, self.limit = source, limit
        self.hdus: list[HDU] = []
        self.next = 0  # where the next header starts
        self.obsid: str | None = None

    def fail(self, problem: str) -> EventFileError:
        return EventFileError(self.source, problem, self.obsid)

    def scan(self, data: memoryview | bytes, available: int, *, final: bool = False) -> None:
        if not self.hdus and available >= len(FITS_MAGIC) and data[:9] != FITS_MAGIC:
            raise self.fail("not a FITS file (no SIMPLE card at the start)")
        while self.next < available:
            parsed = self._header(data, self.next, available, final)
            if parsed is None:
                return  # the rest of this header has not arrived yet
            header, data_offset = parsed
            hdu = HDU(len(self.hdus), header, data_offset, self._data_size(header))
            end = data_offset + hdu.data_size
            if end > self.limit:
                raise self.fail(
                    f"HDU {hdu.index} ({hdu.name}) declares {hdu.data_size} bytes of data: "
                    f"over the {self.limit}-byte cap"
                )
            self.hdus.append(hdu)
            self.next = data_offset + -(-hdu.data_size // BLOCK) * BLOCK
        if final:
            if not self.hdus:
                raise self.fail("not a FITS file (no SIMPLE card at the start)")
            last = self.hdus[-1]
            if last.data_offset + last.data_size > available:
                raise self.fail(f"file ends inside the data of {last.name} (truncated FITS)")
            self._check_padding(data, min(self.next, available))

    def _header(
        self, data: memoryview | bytes, offset: int, available: int, final: bool
    ) -> tuple[dict[str, Any], int] | None:
        first = not self.hdus
        header: dict[str, Any] = {}
        pos = offset
        while True:
            if pos - offset >= MAX_HEADER_BLOCKS * BLOCK:
                raise self.fail(
                    f"header of HDU {len(self.hdus)} has no END card in {pos - offset} bytes"
                )
            if pos + BLOCK > available:
                if final:
                    raise self.fail("file ends inside a FITS header (truncated FITS)")
                return None
            try:
                block = bytes(data[pos : pos + BLOCK]).decode("ascii")
            except UnicodeDecodeError:
                raise self.fail(f"non-ASCII bytes in header of HDU {len(self.hdus)}") from None
            if pos == offset and not first:
                self._check_padding(data, offset)
            if pos == offset and not first and not block.startswith("XTENSION= "):
                raise self.fail(
                    f"no XTENSION card where HDU {len(self.hdus)} must start (byte {offset}): "
                    "the previous header's data size disagrees with the file"
                )
            pos += BLOCK
            for i in range(0, BLOCK, CARD):
                card = block[i : i + CARD]
                key = card[:8].strip()
                if key == "END":
                    self._check_obsid(header)
                    return header, pos
                if card[8:10] != "= ":
                    continue
                if key in header and STRUCTURAL.fullmatch(key):
                    raise self.fail(f"HDU {len(self.hdus)} has keyword {key} twice")
                header.setdefault(key, _card_value(card[10:]))

    def _check_padding(self, data: memoryview | bytes, offset: int) -> None:
        """FITS pads data to a block with zeros: anything else there means the header
        understated the data (e.g. NAXIS2 too small)."""
        last = self.hdus[-1]
        padding = data[last.data_offset + last.data_size : offset]
        if any(padding) if len(padding) < 64 else np.frombuffer(padding, np.uint8).any():
            raise self.fail(
                f"bytes after the data of HDU {last.index} ({last.name}) are not zero padding: "
                "its header's data size disagrees with the file"
            )

    def _check_obsid(self, header: dict[str, Any]) -> None:
        if "OBS_ID" not in header:
            return
        value = header["OBS_ID"]
        obsid = value.strip() if isinstance(value, str) else None
        if obsid is None or not OBSID.fullmatch(obsid):
            raise self.fail(f"OBS_ID {str(value)[:40]!r} is not 11 digits")
        if self.obsid not in (None, obsid):
            raise self.fail(f"OBS_ID {obsid} in HDU {len(self.hdus)} differs from {self.obsid}")
        self.obsid = obsid

    def _data_size(self, header: dict[str, Any]) -> int:
        index = len(self.hdus)
        bitpix = self.integer(header, "BITPIX", index, low=-64)  # images may be float
        if bitpix not in BITPIX:
            raise self.fail(f"HDU {index}: BITPIX {bitpix} is not a FITS value")
        naxis = self.integer(header, "NAXIS", index, high=999)
        elements = 1 if naxis else 0
        for axis in range(1, naxis + 1):
            elements *= self.integer(header, f"NAXIS{axis}", index)
        pcount = self.integer(header, "PCOUNT", index, default=0)
        gcount = self.integer(header, "GCOUNT", index, low=1, default=1)
        return abs(bitpix) // 8 * gcount * (pcount + elements)

    def integer(
        self,
        header: dict[str, Any],
        key: str,
        index: int,
        *,
        low: int = 0,
        high: int | None = None,
        default: int | None = None,
    ) -> int:
        """A keyword that must be an integer in [low, high] (bool is not one)."""
        value = header.get(key, default)
        if value is None:
            raise self.fail(f"HDU {index}: {key} is missing")
        if type(value) is not int or value < low or (high is not None and value > high):
            raise self.fail(f"HDU {index}: {key} = {str(value)[:40]!r} is not an integer >= {low}")
        return value


def read_stream(
    chunks: Iterable[bytes | memoryview], source: str, *, limit: int = MAX_FITS_BYTES
) -> memoryview:
    """The FITS bytes of a (gzipped or plain) byte stream, in one buffer, checked as they come.

    The buffer is reserved at ``limit`` bytes but only the pages written become resident. Over
    the cap, a corrupt or truncated gzip stream, or a FITS structure that goes wrong are
    EventFileErrors as soon as they show.
    """
    layout = Layout(source, limit)
    out = np.empty(limit, dtype=np.uint8)
    view = memoryview(out)
    pos = 0
    decompressor: Any = None
    started = False
    consumed = 0  # compressed bytes fed to the decompressor

    def write(piece: bytes | memoryview) -> None:
        nonlocal pos
        if pos + len(piece) > limit:
            raise layout.fail(f"more than {limit} bytes of FITS: over the cap")
        if decompressor is not None and pos + len(piece) > MAX_RATIO * consumed + RATIO_SLACK:
            raise layout.fail(
                f"{consumed} gzipped bytes expand to more than {pos + len(piece)}: "
                f"over {MAX_RATIO}:1, a gzip bomb"
            )
        view[pos : pos + len(piece)] = piece
        pos += len(piece)
        layout.scan(view, pos)

    for chunk in chunks:
        data = memoryview(chunk).cast("B")
        if not started and data.nbytes:
            started = True
            if bytes(data[:2]) == GZIP_MAGIC:
                decompressor = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
        if decompressor is None:
            if data.nbytes:
                write(data)
            continue
        for start in range(0, data.nbytes, PIECE):
            rest: bytes | memoryview = data[start : start + PIECE]
            consumed += len(rest)
            while rest:
                if decompressor.eof:  # the next member of a multi-member file
                    decompressor = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
                try:
                    write(decompressor.decompress(rest))
                except igzip_lib.IsalError as exc:
                    raise layout.fail(f"corrupt gzip stream ({exc})") from exc
                rest = decompressor.unused_data if decompressor.eof else b""
    if decompressor is not None and not decompressor.eof:
        raise layout.fail("truncated gzip stream (ended before the end of the last member)")
    layout.scan(view, pos, final=True)
    return view[:pos]


def read_layout(
    raw: bytes | memoryview, source: str, *, limit: int = MAX_FITS_BYTES
) -> tuple[bytes | memoryview, Layout]:
    """The FITS bytes (gunzipped when gzipped) and their HDUs, every structure check passed."""
    if bytes(raw[:2]) == GZIP_MAGIC:
        raw = read_stream([raw], source, limit=limit)
    layout = Layout(source, limit)
    layout.scan(raw, len(raw), final=True)
    return raw, layout


def parse_events(
    raw: bytes | memoryview,
    source: str,
    *,
    allow_uncalibrated: bool = False,
    limit: int = MAX_FITS_BYTES,
) -> EventList:
    """Turn the bytes of an event file (gzipped or not) into an EventList, validating as it goes."""
    raw, layout = read_layout(raw, source, limit=limit)
    hdus = _named(layout)
    obsid = layout.obsid
    events_hdu = hdus["EVENTS"]
    header = {k: events_hdu.header[k] for k in HEADER_KEYS if k in events_hdu.header}
    primary = layout.hdus[0].header
    header.update({k: primary[k] for k in HEADER_KEYS if k not in header and k in primary})
    for key in NUMERIC_HEADER_KEYS:
        if key in header and not _is_number(header[key]):
            raise layout.fail(f"{key} = {str(header[key])[:40]!r} is not a number")
    if obsid is not None:
        header["OBS_ID"] = obsid
    if header.get("GAINAPP") is not True and not allow_uncalibrated:
        raise layout.fail(
            f"GAINAPP is {header.get('GAINAPP')!r}: ENERGY is not gain-corrected "
            "(pass allow_uncalibrated to use it anyway)"
        )
    cols = read_columns(raw, events_hdu, EVENT_COLUMNS, layout)
    gti_cols = read_columns(raw, hdus["GTI"], GTI_COLUMNS, layout)
    events = EventList(
        time=cols["TIME"],
        detx=cols["DETX"],
        dety=cols["DETY"],
        energy=cols["ENERGY"],
        gti=np.column_stack([gti_cols["START"], gti_cols["STOP"]]),
        source=source,
        header=header,
    )
    validate(events)
    return events


def _named(layout: Layout) -> dict[str, HDU]:
    """Exactly one EVENTS and one GTI extension (a second one, even after, is refused)."""
    found: dict[str, list[HDU]] = {"EVENTS": [], "GTI": []}
    for hdu in layout.hdus[1:]:
        name = hdu.name.upper()
        if name in found:
            found[name].append(hdu)
    for name, hdus in found.items():
        if not hdus:
            raise layout.fail(f"no {name} extension")
        if len(hdus) > 1:
            raise layout.fail(f"{len(hdus)} {name} extensions (HDUs {[h.index for h in hdus]})")
    return {name: hdus[0] for name, hdus in found.items()}


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
    for name, values in (("TIME", events.time), ("ENERGY", events.energy)):
        if len(values) and not np.all(np.isfinite(values)):
            problems.append(f"{np.count_nonzero(~np.isfinite(values))} non-finite {name} values")
    if problems:
        raise EventFileError(events.source, "; ".join(problems), events.obsid)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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


def _table_layout(
    hdu: HDU, wanted: dict[str, str], layout: Layout, vectors: Mapping[str, int]
) -> tuple[int, int, dict[str, tuple[int, str, int, int]]]:
    """(row bytes, rows, column -> (byte offset, stored dtype, field index, elements)) of a binary
    table; a column in ``vectors`` must hold exactly that many elements per row, any other one."""
    header, name, index = hdu.header, hdu.name, hdu.index
    if str(header.get("XTENSION", "")).strip() != "BINTABLE":
        raise layout.fail(f"{name} is not a binary table")
    if header["BITPIX"] != 8 or header["NAXIS"] != 2 or header.get("GCOUNT", 1) != 1:
        raise layout.fail(f"{name}: BITPIX/NAXIS/GCOUNT are not those of a binary table")
    row_bytes, n_rows = header["NAXIS1"], header["NAXIS2"]
    columns: dict[str, tuple[int, str, int, int]] = {}
    offset = 0
    for field_index in range(1, layout.integer(header, "TFIELDS", index, high=999) + 1):
        tform = header.get(f"TFORM{field_index}")
        match = _TFORM.fullmatch(tform) if isinstance(tform, str) else None
        if not match:
            raise layout.fail(f"{name}: unreadable TFORM{field_index} {str(tform)[:40]!r}")
        repeat = int(match.group(1) or 1)
        size, dtype = _TFORM_TYPES[match.group(2)]
        offset += -(-repeat // 8) if match.group(2) == "X" else size * repeat
        column = str(header.get(f"TTYPE{field_index}", "")).strip().upper()
        if column in wanted and column not in columns:
            if dtype is None or repeat != vectors.get(column, 1):
                raise layout.fail(f"{name}.{column} has unsupported format {tform}")
            columns[column] = (offset - size * repeat, dtype, field_index, repeat)
    if offset != row_bytes:
        raise layout.fail(f"{name}: NAXIS1 is {row_bytes} but its columns take {offset} bytes")
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise layout.fail(f"{name} has no column(s) {', '.join(missing)}")
    return row_bytes, n_rows, columns


def _check_range(column: str, values: np.ndarray, layout: Layout) -> None:
    """Integer columns (DETX, DETY): whole numbers inside the detector plane."""
    bounds = COLUMN_RANGES.get(column)
    if bounds is None or not len(values):
        return
    low, high = values.min(), values.max()
    if not bounds[0] <= low <= high <= bounds[1]:
        raise layout.fail(f"{column} outside {bounds[0]}..{bounds[1]} ({low}..{high})")
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        raise layout.fail(f"{column} has non-integer values")


def read_columns(
    data: bytes | memoryview,
    hdu: HDU,
    wanted: dict[str, str],
    layout: Layout,
    vectors: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Cut the wanted columns out of a binary table as native arrays (one copy each); a column in
    ``vectors`` (name -> elements per row) comes out as (rows, elements).

    TSCAL/TZERO are applied in float64 as astropy applies them (a TNULL value is scaled like
    any other, DESIGN.md); integer targets are range-checked on those values before the cast.
    """
    row_bytes, n_rows, columns = _table_layout(hdu, wanted, layout, vectors or {})
    names = list(columns)
    rows = np.frombuffer(
        data,
        dtype=np.dtype(
            {
                "names": names,
                "formats": [
                    (dtype, (n,)) if n > 1 else dtype
                    for _, dtype, _, n in (columns[c] for c in names)
                ],
                "offsets": [columns[c][0] for c in names],
                "itemsize": row_bytes,
            }
        ),
        count=n_rows,
        offset=hdu.data_offset,
    )
    out = {}
    for column in names:
        field_index = columns[column][2]
        scaling = [hdu.header.get(f"T{k}{field_index}") for k in ("SCAL", "ZERO", "NULL")]
        for key, value in zip(("TSCAL", "TZERO", "TNULL"), scaling, strict=True):
            if value is not None and not _is_number(value):
                raise layout.fail(
                    f"{hdu.name}: {key}{field_index} = {str(value)[:40]!r} is not a number"
                )
        scale, zero = scaling[0] if scaling[0] is not None else 1, scaling[1] or 0
        scaled = scale != 1 or zero != 0
        elements = columns[column][3]
        target = np.empty((n_rows, elements) if elements > 1 else n_rows, dtype=wanted[column])
        stored = rows.dtype[column].base
        # A cast to a type that holds every stored value (>i2 to i2: a byte swap) cannot wrap, so
        # its range is checked on the native copy; any narrowing cast is checked before it.
        exact = not scaled and np.can_cast(stored, target.dtype, casting="safe")
        step = max(1, CONVERT_ROWS // elements)
        for start in range(0, n_rows, step):
            values = rows[column][start : start + step]
            if scaled:
                values = values.astype(np.float64) * scale + zero
            if not exact:
                _check_range(column, values, layout)
            target[start : start + len(values)] = values
        if exact:
            _check_range(column, target, layout)
        out[column] = target
    return out
