"""Detector enable/disable maps: which of BAT's 32,768 detectors were switched on, and when.

Facts (the Swift BAT analysis threads and HEASoft's own readers, swift/bat/tasks/batdetmask and
swift/bat/lib/batimageutils/imageutils.c):
- The SDC makes one per observation: ``<obsid>/bat/hk/sw<obsid>bdecb.hk.gz``, "the detectors
  that are enabled during the observation"; the threads feed it straight to bathotpix as its
  detmask. Where one is missing they point at the nearest one in the archive's trend data (not
  searched here: such rows say "unknown").
- HEASoft reads a detector map from the file's first image of two or more axes (286 x 173, as
  ../shared/data/bat_detmask_example.fits), or from a binary table that comes before any such
  image, whose rows are maps in time: column FLAG (286 x 173 per row), the row's start in TIME
  (MET). FLAG is read here in any numeric FITS type (its type in the real files is not known).
- Of a table, batdetmask uses the last row whose TIME is before the time asked about, and the
  first row when none is.
- 0 means enabled (good); anything else disabled. Gap pixels are no detectors at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from batglitch.errors import EventFileError
from batglitch.science.config import N_DETX, N_DETY
from batglitch.science.events import HDU, Layout, read_columns, read_layout

# A map of bytes is 49 kB, of doubles 396 kB: hundreds of maps fit, and the float32 copy the
# reader makes stays under ~4x this cap (fetch is held to it too, before decompressing more).
MAX_MAP_BYTES = 32 * 1024**2
PIXELS = N_DETX * N_DETY
_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


@dataclass(frozen=True, eq=False)
class EnableMaps:
    """An observation's enable maps in the DPI layout, in file order."""

    times: np.ndarray  # float64 (n,): MET each map starts (TIME); -inf for a single image
    enabled: np.ndarray  # bool (n, 286, 173) [map, DETX, DETY]
    source: str
    obsid: str | None = None  # from its OBS_ID header, when it has one

    def at(self, met: np.ndarray) -> np.ndarray:
        """Index of the map in force at each MET, by batdetmask's rule: the last map (in file
        order) that starts before it, else the first."""
        before = self.times[None, :] < np.asarray(met, dtype=np.float64)[:, None]
        last = len(self.times) - 1 - np.argmax(before[:, ::-1], axis=1)
        return np.where(before.any(axis=1), last, 0)


def parse_enable_maps(raw: bytes | memoryview, source: str, obsid: str | None = None) -> EnableMaps:
    """The maps of an enable/disable file (gzipped or not), every structure checked as for event
    files; EventFileError naming the file (and the obsid) when it holds none."""
    try:
        raw, layout = read_layout(raw, source, limit=MAX_MAP_BYTES)
        for hdu in layout.hdus:
            kind = str(hdu.header.get("XTENSION", "IMAGE")).strip()
            if kind == "IMAGE" and hdu.header.get("NAXIS", 0) >= 2:
                return _image(raw, hdu, layout, source)
            if kind == "BINTABLE":
                return _table(raw, hdu, layout, source)
        raise layout.fail(f"no {N_DETX} x {N_DETY} detector map (image or FLAG table)")
    except EventFileError as exc:
        if not obsid or exc.obsid == obsid:
            raise
        seen = f" (its header says OBS_ID {exc.obsid})" if exc.obsid else ""
        raise EventFileError(exc.source, exc.problem + seen, obsid) from exc


def _image(raw: bytes | memoryview, hdu: HDU, layout: Layout, source: str) -> EnableMaps:
    header = hdu.header
    shape = tuple(header.get(f"NAXIS{i}") for i in range(1, header["NAXIS"] + 1))
    if shape != (N_DETX, N_DETY):
        raise layout.fail(f"HDU {hdu.index}: image is {shape}, not a {N_DETX} x {N_DETY} map")
    values = np.frombuffer(raw, _DTYPES[header["BITPIX"]], PIXELS, hdu.data_offset)
    scale, zero = header.get("BSCALE", 1.0), header.get("BZERO", 0.0)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (scale, zero)):
        raise layout.fail(f"HDU {hdu.index}: BSCALE/BZERO are not numbers")
    maps = (values * float(scale) + float(zero)).reshape(1, N_DETY, N_DETX)
    return EnableMaps(np.array([-np.inf]), _enabled(maps), source, layout.obsid)


def _table(raw: bytes | memoryview, hdu: HDU, layout: Layout, source: str) -> EnableMaps:
    tdim = next(
        (hdu.header.get(f"TDIM{i}") for i in range(1, 1000)
         if str(hdu.header.get(f"TTYPE{i}", "")).strip().upper() == "FLAG"),
        None,
    )  # fmt: skip
    if tdim is not None and str(tdim).replace(" ", "") != f"({N_DETX},{N_DETY})":
        raise layout.fail(f"{hdu.name}.FLAG is {tdim}, not a ({N_DETX},{N_DETY}) map per row")
    columns = read_columns(raw, hdu, {"TIME": "f8", "FLAG": "f8"}, layout, vectors={"FLAG": PIXELS})
    times = columns["TIME"]
    if not len(times):
        raise layout.fail(f"{hdu.name} has no rows: no map")
    if not np.isfinite(times).all():
        raise layout.fail(f"{hdu.name}.TIME has non-finite values")
    maps = columns["FLAG"].reshape(len(times), N_DETY, N_DETX)  # FITS order: DETX runs fastest
    return EnableMaps(times, _enabled(maps), source, layout.obsid)


def _enabled(maps: np.ndarray) -> np.ndarray:
    """[map, DETY, DETX] values as enabled flags [map, DETX, DETY]; NaN (blank) is not 0."""
    return np.ascontiguousarray((maps == 0).transpose(0, 2, 1))
