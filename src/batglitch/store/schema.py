"""The archive's row schema, in one place: every per-window variable and every per-obsid field.

Adding a column is one line here (name, dtype, long_name, and units or extra dims when it has
them) plus the producer handing an array of that name: the storage code writes whatever this
table lists, in this order, and refuses rows that do not match it. Storage never imports the
science modules; the science side hands plain arrays keyed by these names (Fragment.rows).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np

WINDOW, FRAGMENT = "window", "fragment"
# The per-obsid provenance table lives in this group, apart from the training dataset at the root
# that open_archive and plain xarray read (issue 10): a dataset of its own, open_provenance.
PROVENANCE_GROUP = "provenance"
# MET counts seconds from 2001-01-01 (TT); UTC = that epoch + MET + UTCF (DESIGN.md)
MET_EPOCH_UNITS = "seconds since 2001-01-01 00:00:00"
_UTC = {"units": MET_EPOCH_UNITS, "calendar": "proleptic_gregorian"}
# Mission Elapsed Time as the event files' headers define it (DESIGN.md): TT, from MJD 51910 +
# 7.4287037E-4 d. Kept as plain seconds (no "since" units), so xarray does not re-interpret it.
_MET = {"timesys": "TT", "mjdrefi": 51910, "mjdreff": 7.4287037e-4, "timeunit": "s"}
CONVENTIONS = "CF-1.11"
# Per-window variables that label a row; the rest are data (and stay out of plot titles).
ROW_COORDINATES = ("obsid", "window_start")
# The reference layout (DESIGN.md): the detector plane, 16 x 16 sandwiches in 2 energy bands, and
# the light-curve context every row carries (DetectionConfig.lightcurve_bins).
DIM_SIZES = {"detx": 286, "dety": 173, "sand_y": 16, "sand_x": 16, "energy_band": 2, "lc_bin": 64}


# Obsids are always 11 digits (keys.OBSID): stored fixed-width (zarr's fixed_length_utf32), so even
# a plain xr.open_zarr reader gets numpy "<U11" for the column everyone groups, selects and saves
# by (GroupKFold, ds.sel, np.savez without pickle), where variable-length strings come back as
# numpy's StringDType, which .astype(str) and np.savez refuse.
OBSID_DTYPE = "U11"


@dataclass(frozen=True)
class Column:
    """One variable: its dtype ("str" is variable-length UTF-8, "U<n>" fixed-width), what it
    means, and the dims it has besides the row dim."""

    dtype: str
    long_name: str
    dims: tuple[str, ...] = ()
    units: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def attrs(self) -> dict[str, Any]:
        units = {"units": self.units} if self.units else {}
        return {"long_name": self.long_name, **units, **self.extra}

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one row."""
        return tuple(DIM_SIZES[d] for d in self.dims)

    @property
    def numpy_dtype(self) -> type[str] | np.dtype:
        """What both numpy (astype) and zarr (create_array: variable-length UTF-8 for str) take."""
        return str if self.dtype == "str" else np.dtype(self.dtype)


# detector_flags values, CF flag_values/flag_meanings in this order. UNKNOWN is 0, so that rows
# written without a map and the fill value of an archive made before the column existed never
# claim "enabled".
FLAGS = ("unknown", "enabled", "disabled", "gap")
FLAG_UNKNOWN, FLAG_ENABLED, FLAG_DISABLED, FLAG_GAP = range(len(FLAGS))

# Per window (dim "window"). The store fills `obsid` from the fragment it writes.
WINDOW_COLUMNS: dict[str, Column] = {
    "obsid": Column(OBSID_DTYPE, "11-digit Swift observation id"),
    "dpi": Column("uint16", "counts per detector, all energies", ("detx", "dety"), "count"),
    "dpi_lowres": Column(
        "uint16",
        "counts per detector sandwich in 15-50 / 50-350 keV",
        ("sand_y", "sand_x", "energy_band"),
        "count",
    ),
    "lightcurve": Column("int32", "all-energy counts in 16 ms bins", ("lc_bin",), "count"),
    "lightcurve_low": Column("int32", "counts <= 25 keV in 16 ms bins", ("lc_bin",), "count"),
    "lightcurve_high": Column("int32", "counts > 50 keV in 16 ms bins", ("lc_bin",), "count"),
    "window_start": Column("float64", "window start, MET (TT)", units="s", extra=_MET),
    "window_stop": Column("float64", "window stop, MET (TT)", units="s", extra=_MET),
    "snr_low": Column("float64", "z-score of the flagged bin, <= 25 keV", units="1"),
    "snr_ratio": Column("float64", "z_low / |z_high| of the flagged bin", units="1"),
    "n_events": Column("int64", "events in the window, all energies", units="count"),
    "window_start_utc": Column("float64", "window start, UTC", extra=_UTC),
    "trigger_type": Column("str", "GUANO trigger type of the dump"),
    "trigger_time_utc": Column("float64", "GUANO trigger time, UTC", extra=_UTC),
    "source_file": Column("str", "event file the window was read from"),
    "label": Column("str", "GLITCH (found by the glitch search) or GRB (64 ms from a BAT trigger)"),
    "burst_name": Column("str", "catalogued BAT GRB of the window (GRB) or around it, else ''"),
    "trigger_id": Column("int64", "BAT trigger number of that burst, -1 if none", units="1"),
    "in_burst": Column(
        "bool", "inside a catalogued burst's time (a GLITCH row so is suspect)", units="1"
    ),
    "source_kind": Column("str", "kind of that file: po pointed, sp slewing+pointing, sl slewing"),
    "trigger_time_base": Column(
        "str", "time base GUANO gave the dump's times in (utc or swift), decided on the file"
    ),
    "detector_flags": Column(
        "uint8",
        "detector state at the window: the observation's enable/disable map in force then",
        ("detx", "dety"),
        extra={"flag_values": list(range(len(FLAGS))), "flag_meanings": " ".join(FLAGS)},
    ),
}
IMAGE_COLUMNS = tuple(name for name, column in WINDOW_COLUMNS.items() if column.dims)
TABLE_COLUMNS = tuple(name for name, column in WINDOW_COLUMNS.items() if not column.dims)

# Per obsid (dim "fragment", in group PROVENANCE_GROUP): what each obsid's rows were made from.
FRAGMENT_COLUMNS: dict[str, Column] = {
    "obsid": Column(OBSID_DTYPE, "11-digit Swift observation id"),
    "n_windows": Column("int64", "windows the obsid contributes (0: searched, none found)"),
    "source": Column("str", "event file(s) the rows were read from"),
    "size": Column("int64", "bytes of the event file(s)", units="bytes"),
    "etag": Column("str", "ETag of the event file(s), when the store gave one"),
    "attempt": Column("str", "id of the worker attempt whose rows these are"),
    "completed_at": Column("str", "when that attempt completed, UTC ISO 8601"),
    "version": Column("str", "batglitch version that made the rows"),
    "from_quicklook": Column("bool", "made from quick-look data: planning redoes it once archived"),
    # JSON, so that planning finds a quick-look obsid again from the table alone, and a reader
    # sees how each dump's trigger time was read (issue 7: the time base decided on the file)
    "dumps": Column("str", "GUANO dumps the obsid was planned from, as JSON"),
    "time_base": Column(
        "str", "per dump: time base (utc or swift) and whether a file decided it, as JSON"
    ),
}


@dataclass(frozen=True)
class Completion:
    """One published obsid, as planning needs it: one row of the provenance table."""

    obsid: str
    n_windows: int
    source: str
    size: int
    etag: str
    attempt: str
    completed_at: str
    version: str
    from_quicklook: bool
    dumps: str = "[]"  # absent from archives published before the column existed
    time_base: str = "[]"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Completion:
        """From a completion marker or a table row (extra keys, e.g. the config, are ignored;
        a column added since the row was written reads as its default, or as zarr's fill "")."""
        return cls(
            **{
                f.name: record[f.name]
                for f in fields(cls)
                if f.name in record and (f.default is MISSING or record[f.name] != "")
            }
        )


def dimension_coords(config: Mapping[str, Any]) -> dict[str, tuple[tuple[str, ...], Any, dict]]:
    """Coordinate values for every image dimension, so plots and selections read in detector,
    sandwich, keV and second units: name -> (dims, values, attrs). `config` is the algorithm's
    parameters (DetectionConfig.as_attrs()); without it only the plane's indices are known."""
    index = {"units": "1"}
    coords: dict[str, tuple[tuple[str, ...], Any, dict]] = {
        "detx": (("detx",), np.arange(DIM_SIZES["detx"]), {**index, "long_name": "DETX"}),
        "dety": (("dety",), np.arange(DIM_SIZES["dety"]), {**index, "long_name": "DETY"}),
        "sand_x": (("sand_x",), np.arange(DIM_SIZES["sand_x"]), {**index, "long_name": "sandwich column"}),
        "sand_y": (("sand_y",), np.arange(DIM_SIZES["sand_y"]), {**index, "long_name": "sandwich row"}),
    }  # fmt: skip
    if config:
        edges = np.asarray(config["lowres_energy_edges"], dtype=np.float64)
        coords["energy_band"] = (
            ("energy_band",), edges[:-1],
            {"units": "keV", "long_name": "energy band lower edge", "bounds": "energy_band_bounds"},
        )  # fmt: skip
        coords["energy_band_bounds"] = (
            ("energy_band", "nv"),
            np.stack([edges[:-1], edges[1:]], axis=1),
            {},  # CF: bounds take their units from the coordinate they bound
        )
        bins = int(config["lightcurve_bins"])
        coords["lc_bin"] = (
            ("lc_bin",), (np.arange(bins) - bins // 2) * float(config["bin_s"]),
            {"units": "s", "long_name": "bin start minus the flagged bin's start"},
        )  # fmt: skip
    return coords


def algorithm_attr(config: Mapping[str, Any]) -> str:
    """The algorithm's parameters as the root attribute holds them: one canonical JSON string
    (netCDF takes no nested attributes; equal configurations give equal strings)."""
    return json.dumps(dict(config), sort_keys=True)


def check_rows(obsid: str, rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One obsid's rows as the schema stores them: every column present, one length, the listed
    extra dims, cast to the column dtype; ValueError naming the obsid and column otherwise."""
    given = dict(rows)
    n = len(given["window_start"]) if "window_start" in given else 0
    given.setdefault("obsid", np.full(n, obsid))
    if unknown := given.keys() - WINDOW_COLUMNS.keys():
        raise ValueError(f"obsid {obsid}: columns {sorted(unknown)} are not in the archive schema")
    checked = {}
    for name, column in WINDOW_COLUMNS.items():
        if name not in given:
            raise ValueError(f"obsid {obsid}: column {name!r} is missing")
        values = np.asarray(given[name])
        if values.shape != (n, *column.shape):
            raise ValueError(
                f"obsid {obsid}: column {name!r} has shape {values.shape}, expected {n} rows "
                f"with dims {column.dims}"
            )
        checked[name] = values.astype(column.numpy_dtype, copy=False)
    return checked


def detector_flags(plane: np.ndarray, maps: np.ndarray | None, index: np.ndarray) -> np.ndarray:
    """detector_flags rows: row i from map index[i] of ``maps`` (bool [map, detx, dety], True
    enabled), GAP off the detector ``plane`` (bool [detx, dety]); without maps, UNKNOWN on it."""
    stack = plane[None] if maps is None else np.asarray(maps, dtype=bool)
    per_map = np.full(stack.shape, FLAG_GAP, dtype=np.uint8)
    states = np.where(stack[:, plane], FLAG_ENABLED, FLAG_DISABLED)
    per_map[:, plane] = FLAG_UNKNOWN if maps is None else states
    return per_map[np.asarray(index, dtype=np.intp)]
