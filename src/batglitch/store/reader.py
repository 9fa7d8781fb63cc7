"""Reading the archive: the xarray view and scikit-learn-ready arrays.

Kept apart from archive.py so that workers, which only write, never import xarray and pandas
(a second of start-up per pool process or Lambda cold start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from batglitch.store.archive import archive_storage_options


def open_archive(url: str, storage_options: dict[str, Any] | None = None) -> xr.Dataset:
    """The training view as an xarray Dataset (plain ``xr.open_zarr`` works as well)."""
    options = archive_storage_options(url) if storage_options is None else storage_options
    return xr.open_zarr(url, consolidated=True, storage_options=options or None)


@dataclass(frozen=True)
class TrainingSet:
    """What scikit-learn estimators take: X (n_samples, n_features) plus ids to group and join on."""

    X: np.ndarray
    obsid: np.ndarray
    window_start: np.ndarray
    trigger_type: np.ndarray

    @property
    def groups(self) -> np.ndarray:
        """Use with GroupKFold: windows of one observation must not straddle train and test."""
        return self.obsid


def training_set(ds: xr.Dataset, resolution: str = "lowres") -> TrainingSet:
    """Flattened DPIs of one resolution, in the reference ``np.ravel`` order, as float32."""
    name = {"lowres": "dpi_lowres", "original": "dpi"}[resolution]
    images = ds[name].values
    return TrainingSet(
        X=images.reshape(len(images), int(np.prod(images.shape[1:]))).astype(np.float32),
        obsid=np.asarray(ds["obsid"].values, dtype=object),
        window_start=ds["window_start"].values,
        trigger_type=np.asarray(ds["trigger_type"].values, dtype=object),
    )
