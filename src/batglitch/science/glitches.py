"""Find heat-pipe glitch windows: 16 ms light curves per GTI, flagged by low/high-energy z-scores.

Bit-for-bit the reference steps 1-5 of DESIGN.md, but computed from one time-sorted copy of the
events with ``searchsorted`` instead of a histogram pass per band and GTI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from batglitch.science.config import DetectionConfig
from batglitch.science.events import EventList


@dataclass(frozen=True)
class Windows:
    """Flagged 16 ms bins, one row per window (in GTI order, then bin order, as the reference)."""

    t0: np.ndarray  # start of the flagged 16 ms bin
    start: np.ndarray  # t_min = t0 - pad
    stop: np.ndarray  # t_max = t0 + bin + pad
    snr_low: np.ndarray  # z_low of the flagged bin
    snr_ratio: np.ndarray  # z_low / |z_high| of the flagged bin

    def __len__(self) -> int:
        return len(self.start)


def time_sorted(events: EventList) -> EventList:
    """The events in ascending TIME order; returns the input untouched when already sorted."""
    t = events.time
    if len(t) < 2 or bool(np.all(t[1:] >= t[:-1])):
        return events
    order = np.argsort(t, kind="stable")
    return EventList(
        time=t[order],
        detx=events.detx[order],
        dety=events.dety[order],
        energy=events.energy[order],
        gti=events.gti,
        source=events.source,
        header=events.header,
    )


def binned_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` for already-sorted values (last bin closed, same ints)."""
    cumulative = np.concatenate(
        (
            np.searchsorted(sorted_values, edges[:-1], side="left"),
            np.searchsorted(sorted_values, edges[-1:], side="right"),
        )
    )
    return np.diff(cumulative)


def bin_edges(start: float, stop: float, config: DetectionConfig) -> np.ndarray:
    """The reference's bin edges for one GTI row, with the same float arithmetic."""
    return np.arange(start, stop + config.bin_s / 2, config.bin_s)


def zscores(counts: np.ndarray) -> np.ndarray:
    """(counts - mean) / population std; NaN when std is 0, as the reference."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (counts - counts.mean()) / counts.std()


def band_times(events: EventList, config: DetectionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Times of the events in the detection's low (<= 25 keV) and high (> 50 keV) bands."""
    return (
        events.time[events.energy <= config.low_energy_max_kev],
        events.time[events.energy > config.high_energy_min_kev],
    )


def find_windows(
    events: EventList,
    config: DetectionConfig | None = None,
    bands: tuple[np.ndarray, np.ndarray] | None = None,
) -> Windows:
    """Flag glitch bins in every GTI of time-sorted events and return their 64 ms windows.

    ``bands`` is ``band_times(events, config)`` when the caller has it already (selecting the
    bands is a good share of the search's time).
    """
    config = config or DetectionConfig()
    low_times, high_times = bands or band_times(events, config)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start, stop in events.gti:
        edges = bin_edges(start, stop, config)
        if len(edges) < 2:  # shorter than half a bin: no bin at all, nothing to flag
            continue
        z_low = zscores(binned_counts(low_times, edges))
        z_high = zscores(binned_counts(high_times, edges))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = z_low / np.abs(z_high)
        flagged = np.flatnonzero((z_low > config.z_low_min) & (ratio > config.ratio_min))
        parts.append((edges[flagged], z_low[flagged], ratio[flagged]))
    if not parts:
        empty = np.empty(0, dtype=np.float64)
        return Windows(empty, empty, empty, empty, empty)
    t0, snr_low, snr_ratio = (np.concatenate(p) for p in zip(*parts, strict=True))
    return Windows(
        t0=t0,
        start=t0 - config.pad_s,
        stop=t0 + config.bin_s + config.pad_s,
        snr_low=snr_low,
        snr_ratio=snr_ratio,
    )


def light_curves(sorted_time: np.ndarray, t0: np.ndarray, config: DetectionConfig) -> np.ndarray:
    """Counts of the given (sorted) event times in ``lightcurve_bins`` 16 ms bins centred on
    each flagged bin; bin lightcurve_bins // 2 is the flagged one.

    Context for people and models looking at a window; not part of the reference output.
    """
    half = config.lightcurve_bins // 2
    offsets = (np.arange(config.lightcurve_bins + 1) - half) * config.bin_s
    edges = t0[:, None] + offsets[None, :]
    cumulative = np.searchsorted(sorted_time, edges.ravel(), side="left").reshape(edges.shape)
    return np.diff(cumulative, axis=1).astype(np.int32)
