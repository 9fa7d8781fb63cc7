"""Made-up archive rows without an event file behind them: for store tests and the store benchmark.

Every row is self-consistent the way real rows are (n_events is the DPI's sum), so a reader can
check any row it sees; window_start values are deliberately out of order.
"""

from __future__ import annotations

import numpy as np

from batglitch.science.config import N_DETX, N_DETY, DetectionConfig, detector_plane
from batglitch.science.dpi import WindowTable
from batglitch.science.grb import GLITCH, burst_columns
from batglitch.science.metadata import window_metadata
from batglitch.store.archive import Fragment
from batglitch.store.schema import detector_flags


def window_table(n: int, seed: int, t0: float = 7.0e8, *, sparse: bool = False) -> WindowTable:
    """``n`` rows; sparse ones hold a single count per DPI (cheap to build in bulk, and all-zero
    chunks of the low-resolution images are not even stored)."""
    rng = np.random.default_rng(seed)
    start = t0 + rng.permutation(n) * 0.016
    if sparse:
        dpi = np.zeros((n, N_DETX, N_DETY), dtype=np.uint16)
        dpi[np.arange(n), rng.integers(0, N_DETX, n), rng.integers(0, N_DETY, n)] = 1
        lowres = np.zeros((n, 16, 16, 2), dtype=np.uint16)
    else:
        dpi = rng.poisson(0.02, (n, N_DETX, N_DETY)).astype(np.uint16)
        lowres = rng.poisson(2.0, (n, 16, 16, 2)).astype(np.uint16)
    return WindowTable(
        window_start=start,
        window_stop=start + 0.064,
        snr_low=rng.uniform(10, 40, n),
        snr_ratio=rng.uniform(3, 30, n),
        n_events=dpi.sum(axis=(1, 2), dtype=np.int64),
        dpi=dpi,
        dpi_lowres=lowres,
        lightcurve=rng.poisson(30, (n, 64)).astype(np.int32),
        lightcurve_low=rng.poisson(20, (n, 64)).astype(np.int32),
        lightcurve_high=rng.poisson(5, (n, 64)).astype(np.int32),
    )


def fragment(
    obsid: str,
    n: int,
    seed: int = 0,
    config: DetectionConfig | None = None,
    *,
    sparse: bool = False,
) -> Fragment:
    """One obsid's made-up rows, handed to the store the way the worker hands them."""
    table = window_table(n, seed, sparse=sparse)
    source = f"/data/sw{obsid}bevshpo_uf.evt.gz"
    return Fragment(
        obsid=obsid,
        rows={
            **table.columns(),
            **window_metadata(table, utcf=-25.0),
            "source_file": np.full(n, source),
            **burst_columns(table.window_start, table.window_stop, GLITCH),
            "detector_flags": detector_flags(detector_plane(), None, np.zeros(n)),
            "source_kind": np.full(n, "po"),
        },
        source=source,
        size=1234,
        etag=None,
        config=(config or DetectionConfig()).as_attrs(),
    )
