"""Detector-plane images of glitch windows, both resolutions from one gather of the window events.

Reference steps 6-8 of DESIGN.md: events with t_min <= TIME <= t_max; the original DPI is
histogram2d(DETX, DETY) on unit bins, shape (286, 173) indexed [DETX, DETY]; the low-resolution DPI
is histogramdd(DETX, DETY, ENERGY) on the sandwich/energy edges with axes 0 and 1 swapped. Integer
DETX/DETY make the first a plain ``bincount``; the second uses per-axis lookup tables that follow
numpy's histogramdd edge rules (right-closed last bin, everything else half-open).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from batglitch.errors import EventFileError
from batglitch.science.config import N_DETX, N_DETY, DetectionConfig, edges_array
from batglitch.science.events import EventList
from batglitch.science.glitches import (
    Windows,
    band_times,
    find_windows,
    light_curves,
    time_sorted,
)

DPI_DTYPE = np.uint16
PLANE = N_DETX * N_DETY
BATCH = 256  # windows per bincount, bounds the temporary int64 counts to ~100 MB


@dataclass(frozen=True)
class WindowTable:
    """The archive rows of one event file (window dimension first)."""

    window_start: np.ndarray  # float64 MET
    window_stop: np.ndarray  # float64 MET
    snr_low: np.ndarray  # float64
    snr_ratio: np.ndarray  # float64
    n_events: np.ndarray  # int64, all energies
    dpi: np.ndarray  # uint16 (n, 286, 173) [DETX, DETY]
    dpi_lowres: np.ndarray  # uint16 (n, 16, 16, 2) [sand_y, sand_x, band]
    lightcurve: np.ndarray  # int32 (n, lightcurve_bins), 16 ms context around the flagged bin
    lightcurve_low: np.ndarray  # the same in the detection's low band (<= 25 keV)
    lightcurve_high: np.ndarray  # and in its high band (> 50 keV)

    def __len__(self) -> int:
        return len(self.window_start)

    def columns(self) -> dict[str, np.ndarray]:
        """The rows as plain arrays keyed by field name (the archive schema's names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def concat(cls, tables: Sequence[WindowTable]) -> WindowTable:
        """The rows of several tables (e.g. an obsid's pointed and slewing files) in one."""
        if len(tables) == 1:
            return tables[0]
        return cls(*(np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)))


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """histogramdd's bin of each value, or -1 outside the edges (NaN included)."""
    index = np.searchsorted(edges, values, side="right")
    index[values == edges[-1]] -= 1  # the last bin is closed on the right
    index -= 1
    index[(index < 0) | (index >= len(edges) - 1)] = -1
    return index


def glitch_table(events: EventList, config: DetectionConfig | None = None) -> WindowTable:
    """Everything the archive needs from one event file: glitch windows and their two DPIs."""
    config = config or DetectionConfig()
    events = time_sorted(events)
    bands = band_times(events, config)
    return window_images(events, find_windows(events, config, bands), config, bands)


def window_images(
    events: EventList,
    windows: Windows,
    config: DetectionConfig,
    bands: tuple[np.ndarray, np.ndarray] | None = None,
) -> WindowTable:
    """Gather each window's events once and bin them at both resolutions; drop empty windows.

    ``bands`` as for ``find_windows``: the band light curves need the same selection.
    """
    first = np.searchsorted(events.time, windows.start, side="left")
    last = np.searchsorted(events.time, windows.stop, side="right")
    counts = (last - first).astype(np.int64)
    keep = counts > 0  # a window whose DPI is all zero is skipped
    first, counts = first[keep], counts[keep]
    n = len(counts)
    lowres_shape = config.lowres_shape
    dpi = np.empty((n, N_DETX, N_DETY), dtype=DPI_DTYPE)
    lowres = np.empty((n, *lowres_shape), dtype=DPI_DTYPE)
    x_lut = bin_index(np.arange(N_DETX, dtype=np.float64), edges_array(config.lowres_x_edges))
    y_lut = bin_index(np.arange(N_DETY, dtype=np.float64), edges_array(config.lowres_y_edges))
    energy_edges = edges_array(config.lowres_energy_edges)
    low, high = bands or band_times(events, config)
    lowres_size = int(np.prod(lowres_shape))
    for lo in range(0, n, BATCH):
        sl = slice(lo, min(lo + BATCH, n))
        k = sl.stop - sl.start
        owner = np.repeat(np.arange(k), counts[sl])
        starts = np.cumsum(counts[sl]) - counts[sl]
        rows = np.arange(len(owner)) - np.repeat(starts - first[sl], counts[sl])
        detx = events.detx[rows].astype(np.int64)
        dety = events.dety[rows].astype(np.int64)
        full = np.bincount(owner * PLANE + detx * N_DETY + dety, minlength=k * PLANE)
        sand_y, sand_x = y_lut[dety], x_lut[detx]
        band = bin_index(events.energy[rows].astype(np.float64), energy_edges)
        ok = (sand_x >= 0) & (sand_y >= 0) & (band >= 0)
        flat = ((owner * lowres_shape[0] + sand_y) * lowres_shape[1] + sand_x) * lowres_shape[2]
        coarse = np.bincount((flat + band)[ok], minlength=k * lowres_size)
        if max(full.max(initial=0), coarse.max(initial=0)) > np.iinfo(DPI_DTYPE).max:
            raise EventFileError(events.source, "a DPI count exceeds uint16", events.obsid)
        dpi[sl] = full.reshape(k, N_DETX, N_DETY)
        lowres[sl] = coarse.reshape(k, *lowres_shape)
    return WindowTable(
        window_start=windows.start[keep],
        window_stop=windows.stop[keep],
        snr_low=windows.snr_low[keep],
        snr_ratio=windows.snr_ratio[keep],
        n_events=counts,
        dpi=dpi,
        dpi_lowres=lowres,
        lightcurve=light_curves(events.time, windows.t0[keep], config),
        lightcurve_low=light_curves(low, windows.t0[keep], config),
        lightcurve_high=light_curves(high, windows.t0[keep], config),
    )
