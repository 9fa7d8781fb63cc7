"""Reading the archive: any published version as an xarray Dataset, and scikit-learn-ready arrays.

Kept apart from archive.py so that workers, which only write, never import xarray and pandas
(a second of start-up per pool process or Lambda cold start).

Without this package, the same in one line (icechunk and xarray only; a local archive shown):

    xr.open_zarr(icechunk.Repository.open(icechunk.local_filesystem_storage("out/archive/repo"))
                 .readonly_session("main").store, consolidated=False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from batglitch.store.archive import archive_storage_options
from batglitch.store.engine import open_repository, readonly_session
from batglitch.store.schema import PROVENANCE_GROUP


def open_archive(
    url: str, version: str | None = None, storage_options: dict[str, Any] | None = None
) -> xr.Dataset:
    """One version of the archive (a run id, a snapshot id or a branch; the newest when None) as
    an xarray Dataset. It reads that snapshot only, whatever is published meanwhile; its id is in
    ``ds.attrs["snapshot_id"]``. Rows are in publish order: ``ds.sortby(["obsid",
    "window_start"])`` sorts them."""
    return _open(url, version, storage_options)


def open_provenance(
    url: str, version: str | None = None, storage_options: dict[str, Any] | None = None
) -> xr.Dataset:
    """What each published obsid's rows were made from (event file, size, etag, attempt, software
    version, quick-look or not), one row per obsid on dim ``fragment``, indexed by obsid: kept
    apart from the training dataset so that it never enters a model or a plot."""
    return _open(url, version, storage_options, group=PROVENANCE_GROUP)


def _open(
    url: str,
    version: str | None,
    storage_options: dict[str, Any] | None,
    group: str | None = None,
) -> xr.Dataset:
    options = archive_storage_options(url) if storage_options is None else storage_options
    repo = open_repository(url, options)
    if repo is None:
        raise FileNotFoundError(f"{url}: no archive has been published there")
    session = readonly_session(repo, version)
    ds = xr.open_zarr(session.store, group=group, consolidated=False)
    ds = obsid_index(plain_strings(ds))
    ds.attrs["snapshot_id"] = session.snapshot_id
    return ds


def plain_strings(ds: xr.Dataset) -> xr.Dataset:
    """Every variable-length string variable as an object array of Python ``str`` (the
    fixed-width obsid is numpy ``<U11`` already).

    zarr v3 hands variable-length strings back as numpy's StringDType, which ``np.savez``
    (without pickling) and ``.astype(str)`` refuse; object arrays of str work everywhere,
    whatever numpy returns underneath.
    """
    strings = {
        name: var.copy(data=np.asarray(var.values, dtype=object))
        for name, var in ds.variables.items()
        if var.dtype.kind == "T"
    }
    return ds.assign(strings) if strings else ds


def obsid_index(ds: xr.Dataset) -> xr.Dataset:
    """An index on the obsid coordinate: ``ds.sel(obsid="00012345000")`` gives its rows.
    (The one-liner for a plain xarray dataset: ``ds.set_xindex("obsid")``.)"""
    if "obsid" not in ds or "obsid" in ds.xindexes:
        return ds
    return ds.set_coords("obsid").set_xindex("obsid")


RESOLUTIONS = {"original": "dpi", "lowres": "dpi_lowres"}


@dataclass(frozen=True)
class TrainingSet:
    """What scikit-learn estimators take: X (n_samples, n_features), y the class of each row
    ("GLITCH" or "GRB"), ids to group and join on, and the archive version they were read from
    (open_archive(url, version) gives them back)."""

    X: np.ndarray
    y: np.ndarray
    obsid: np.ndarray
    window_start: np.ndarray
    trigger_type: np.ndarray
    version: str

    @property
    def groups(self) -> np.ndarray:
        """Use with GroupKFold: windows of one observation must not straddle train and test."""
        return self.obsid


def training_set(ds: xr.Dataset, resolution: str = "lowres") -> TrainingSet:
    """Flattened DPIs of one resolution ("original" or "lowres"), in the reference ``np.ravel``
    order, as float32, with each row's label. Rows published before labels existed are glitch
    windows (an archive without ``label``, or the column's empty fill value), so they read as
    GLITCH. Strings are plain ``str`` arrays, which every scikit-learn splitter takes."""
    from batglitch.science.grb import GLITCH  # a constant; the science modules are numpy only

    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {sorted(RESOLUTIONS)}, not {resolution!r}")
    images = ds[RESOLUTIONS[resolution]].values
    n = len(images)
    labels = _str(ds["label"].values) if "label" in ds else np.full(n, "")
    return TrainingSet(
        X=images.reshape(n, int(np.prod(images.shape[1:]))).astype(np.float32),
        y=np.where(labels == "", GLITCH, labels),
        obsid=_str(ds["obsid"].values),
        window_start=ds["window_start"].values,
        trigger_type=_str(ds["trigger_type"].values),
        version=str(ds.attrs.get("snapshot_id", "")),
    )


def _str(values: np.ndarray) -> np.ndarray:
    """Fixed-width str from object or StringDType arrays (the latter casts only through object)."""
    return np.asarray(np.asarray(values).astype(object), dtype=str)
