"""The archive as scikit-learn takes it: X, y and groups aligned with the archive's rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from batglitch.science.grb import GLITCH

RESOLUTIONS = {"original": "dpi", "lowres": "dpi_lowres"}


@dataclass(frozen=True)
class TrainingSet:
    """X (n_samples, n_features) float32, y the class labels, plus ids to group and join on."""

    X: np.ndarray
    y: np.ndarray  # "GLITCH" or "GRB"
    obsid: np.ndarray
    window_start: np.ndarray

    @property
    def groups(self) -> np.ndarray:
        """Use with GroupKFold: windows of one observation must not straddle train and test."""
        return self.obsid


def training_set(ds: xr.Dataset, resolution: str = "lowres") -> TrainingSet:
    """Flattened DPIs of one resolution ("original" or "lowres"), in the reference ``np.ravel``
    order, as float32, with each row's label. Archives written before labels existed hold glitch
    windows only, so a missing ``label`` means GLITCH."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {sorted(RESOLUTIONS)}, not {resolution!r}")
    images = ds[RESOLUTIONS[resolution]].values
    n = len(images)
    labels = ds["label"].values if "label" in ds else np.full(n, GLITCH)
    return TrainingSet(
        X=images.reshape(n, int(np.prod(images.shape[1:]))).astype(np.float32),
        y=_plain_strings(labels),
        obsid=_plain_strings(ds["obsid"].values),
        window_start=ds["window_start"].values,
    )


def _plain_strings(values: np.ndarray) -> np.ndarray:
    """Fixed-width str, whatever the reader gave (numpy StringDType from zarr cannot be cast to
    it directly): what GroupKFold, np.savez and comparisons take everywhere."""
    return np.asarray(np.asarray(values).astype(object), dtype=str)
