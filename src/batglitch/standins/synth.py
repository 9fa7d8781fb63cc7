"""Realistic synthetic Swift/BAT event files with known heat-pipe glitches and GRB-like bursts.

Tests, benchmarks and local demos need event files that look like the real thing (layout, keywords,
geometry, spectra, glitch statistics) and come with the truth, so that every stage can be checked
without network access. Everything is deterministic from ``SynthSpec.seed``: the same spec always
gives the same bytes.

The model, with its numbers measured on the real windows in ``../shared/data`` (the constants
below say which):

- background: Poisson counts at ``rate_hz`` (real windows: ~6-7 kHz) over the enabled detectors of
  a patchy mask (whole sandwiches off, the rest scattered), mild detector-to-detector rate
  scatter, a falling spectrum with ~40% of counts below 15 keV, times on the 100 us BAT clock;
- glitch: a few-ms burst of <= 25 keV counts (most at 15-25 keV) inside one 16 ms bin of the
  reference grid, on the recurring glitch detectors (each active as often and as brightly as in
  the real glitch windows) and, for the rest, spread over the sandwich column by the heat pipe.
  Its size is whatever makes the reference detector see the drawn significance (>= 11 sigma) in
  that file, and its bin has an ordinary high band, so every injected glitch is flagged and
  nothing else is;
- GRB: fast-rise exponential-decay burst over the whole (coded-mask shadowed) plane peaking at its
  trigger time, with a heavy-tailed brightness in the 64 ms trigger window and a hard spectrum.

``tests/test_synth.py`` compares synthetic and real windows statistic by statistic.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

import numpy as np
from astropy.io import fits
from isal import igzip

from batglitch.science.config import (
    N_DETX,
    N_DETY,
    N_SIDE,
    PITCH_X,
    PITCH_Y,
    SANDWICH_NX,
    SANDWICH_NY,
    DetectionConfig,
)
from batglitch.science.glitches import bin_edges

TICK_S = 1e-4  # BAT event time resolution (TIMEDEL)
# The archive's event files (bateconvert, scaled energy; DESIGN.md): ENERGY 1I with TSCAL 0.1,
# PI 1I in 0.1 keV channels, both with TNULL -32768
ENERGY_SCALE = 0.1
NULL_I2 = -32768
NULL_BELOW_KEV = 10.05  # counts this soft are stored without an energy (~0.1% of them)
UTCF_S = -25.0  # UTC - MET clock offset of the late 2010s-2020s (UTC = 2001-01-01 + MET + UTCF)
MET_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
N_DETECTORS = N_SIDE * N_SIDE * SANDWICH_NX * SANDWICH_NY  # 32,768

# Background count spectrum: (lo keV, hi keV, photon index, weight). Flat below 15 keV, then
# falling: ~40% of counts below 15 keV (their share of all counts against the low-resolution DPI's
# 15-350 keV in the real windows), ~55% at <= 25 keV, ~2% above 350 keV, and a 15-50 / 50-350 keV
# split like the real GRB windows' low-resolution DPIs (~0.6 in 15-50 keV).
BACKGROUND_SPECTRUM = ((10.0, 15.0, 0.0, 0.40), (15.0, 50.0, 1.0, 0.35), (50.0, 1000.0, 2.0, 0.25))
# Heat-pipe glitches are low-energy noise: all at <= 25 keV (the detection band), flat segments whose
# top stays below 25 keV by more than the stored energy's quantisation. Per glitch kind (below): the
# small hot-set glitches barely lift the real windows' 15-50 keV share (0.60-0.66 against ~0.6 for
# the background), the big ones push it to ~0.9, so most glitch counts are at 15-25 keV.
GLITCH_SPECTRA = (
    ((10.0, 15.0, 0.0, 0.6), (15.0, 24.5, 0.0, 0.4)),
    ((10.0, 15.0, 0.0, 0.1), (15.0, 24.5, 0.0, 0.9)),
)
GRB_ENERGY = (10.0, 800.0)  # index drawn per burst in GRB_INDEX
GRB_INDEX = (1.1, 1.8)  # real GRB windows keep ~59% (52-65%) of their 15-350 keV counts at 15-50

# Recurring glitch detectors: (DETX, DETY), the share of real glitch windows in which the detector
# holds >= 3 counts, and its mean count then. Measured on the 77 real glitch DPIs of
# ../shared/data/real_glitch_grb_dpis.npz (none of them holds >= 3 counts in any real GRB window).
GLITCH_DETECTORS = (
    ((0, 25), 0.65, 6.9),
    ((12, 51), 0.57, 8.9),
    ((3, 11), 0.56, 3.6),
    ((21, 29), 0.48, 4.5),
    ((6, 62), 0.47, 4.4),
    ((12, 38), 0.45, 5.0),
    ((3, 13), 0.39, 3.5),
    ((0, 139), 0.35, 4.2),
    ((27, 7), 0.34, 4.3),
    ((29, 51), 0.30, 6.5),
    ((3, 25), 0.30, 3.7),
    ((21, 92), 0.29, 3.4),
    ((0, 17), 0.27, 3.6),
    ((0, 145), 0.23, 3.7),
    ((8, 95), 0.19, 5.7),
    ((0, 95), 0.18, 3.3),
    ((11, 49), 0.16, 3.2),
    ((3, 101), 0.16, 3.9),
    ((0, 82), 0.13, 3.4),
    ((15, 123), 0.12, 4.7),
    ((0, 47), 0.12, 3.3),
    ((8, 121), 0.12, 5.0),
    ((7, 79), 0.10, 8.2),
    ((94, 154), 0.10, 6.5),
    ((15, 1), 0.10, 3.2),
)
# The recurring hot set: the detectors active in >= 20% of real glitch windows.
HOT_SET = tuple(position for position, share, _ in GLITCH_DETECTORS if share >= 0.2)
# About a quarter of the real glitch windows put (almost) nothing on the hot set: those are the big
# ones (totals of ~750 to ~3,700 counts against ~380-580 for the hot-set kind), their counts on a
# group near DETY 110 and other detectors instead (same source and measurement as above).
OTHER_GLITCH_DETECTORS = (
    ((81, 110), 0.8, 19.0),
    ((78, 110), 0.7, 8.5),
    ((44, 110), 0.7, 10.0),
    ((2, 110), 0.6, 3.0),
    ((4, 115), 0.5, 16.8),
    ((7, 114), 0.5, 7.8),
    ((25, 90), 0.5, 13.7),
)
OTHER_GLITCH_SHARE = 0.27
OTHER_GLITCH_SIZE = 150  # counts of an other-kind glitch whose detectors hold the table's means
GLITCH_ACTIVE_QUIET = 0.4  # mean counts of a glitch detector that is not active (real: 0-1)
GLITCH_ACTIVE_MIN = 3  # an active glitch detector holds at least this many counts
# The rest of a glitch is diffuse: single counts over the sandwich column by the heat pipe
# (DETX < 18), which holds ~23% of real glitch-window counts against ~6% in GRB windows.
PIPE_DETX_MAX = PITCH_X
GLITCH_HOT_SHARE_MAX = 0.55  # the diffuse part is never below 45% of a glitch
GLITCH_Z_MIN = 11.0  # low-band significance every injected glitch reaches in its 16 ms bin
# Excess over the minimum, lognormal (scale, spread) for the hot-set kind and the other kind: the
# first just clears the detection threshold, the second has the heavy tail of the real totals.
GLITCH_Z_EXCESS = ((3.0, 0.6), (25.0, 0.8))
GLITCH_Z_MAX = 80.0
# k glitches in a GTI of n bins can reach z ~ sqrt(n / k) at most, whatever their size: aim at
# most this share of it, which bounds how many glitches one GTI can hold.
GLITCH_Z_REACH = 0.8
GTI_BINS_PER_GLITCH = math.ceil((GLITCH_Z_MIN / GLITCH_Z_REACH) ** 2)
GLITCH_Z_HIGH_MAX = 3.0  # glitch bins have an ordinary high band: z_low / |z_high| stays > 3
GLITCH_STRIDE_BINS = 16  # candidate glitch bins are this far apart, so their windows never overlap
# Counts a GRB adds to the 64 ms window from its trigger: lognormal, heavy-tailed like the real GRB
# windows (total median ~470, 90th percentile ~870, 99th ~1,700 on a ~410-count background).
GRB_WINDOW_EXCESS = (60.0, 1.45)  # median, log spread
GRB_WINDOW_EXCESS_MAX = 7500.0  # the brightest real GRB window holds ~7,800 counts
GRB_WINDOW_S = 0.064
GRB_RISE_S = (0.1, 1.0)
GRB_DECAY_S = (1.0, 8.0)
GRB_GLITCH_CLEARANCE_S = 2.0  # no glitch this close to a GRB peak: truth stays unambiguous
# Patchy detector mask like the real one (../shared/data/bat_detmask_example.fits: 74 of 256
# sandwiches wholly off, the others with a scattered share of their 128 detectors off).
SANDWICH_OFF_SHARE = 0.29

ADC_MAX = 4095
GAIN_KEV_PER_ADU = 0.25
OFFSET_ADU = 30.0

BIN_S = DetectionConfig().bin_s
LOW_MAX_KEV = DetectionConfig().low_energy_max_kev
HIGH_MIN_KEV = DetectionConfig().high_energy_min_kev


@dataclass(frozen=True)
class SynthSpec:
    """What to simulate. rate_hz defaults to the background that gives real glitch-window counts."""

    obsid: str = "00012345000"
    tstart: float = 7.0e8
    duration: float = 200.0
    n_gti: int = 2
    rate_hz: float = 6600.0
    disabled_fraction: float = 0.54  # the real example mask's share (bat_detmask_example.fits)
    n_glitches: int = 3
    n_grbs: int = 0
    # A BAT trigger's event file (the bevshsp kind): the first GRB peaks at this MET and the
    # EVENTS header carries it as TRIGTIME.
    trigger_met: float | None = None
    gainapp: bool = True
    utcf: float = UTCF_S  # UTC - MET at TSTART (UTCFINIT), as the Swift API gives it
    scaled_energy: bool = True  # ENERGY as the archive stores it (see fits_hdus)
    seed: int = 0
    # The detector mask's own seed, so that every file of one observation shares the one
    # enable map its archive folder holds (None: drawn from seed with the rest).
    mask_seed: int | None = None

    def __post_init__(self) -> None:
        if len(self.obsid) != 11 or not self.obsid.isdigit():
            raise ValueError(f"obsid must be 11 digits, got {self.obsid!r}")
        if not self.duration > 0 or not self.rate_hz > 0:
            raise ValueError("duration and rate_hz must be positive")
        if self.n_gti < 1 or self.n_glitches < 0 or self.n_grbs < 0:
            raise ValueError("need n_gti >= 1 and non-negative n_glitches, n_grbs")
        if self.trigger_met is not None and (
            self.n_grbs < 1 or not self.tstart < self.trigger_met < self.tstart + self.duration
        ):
            raise ValueError("a trigger file needs n_grbs >= 1 and trigger_met inside the file")
        if not 0 <= self.disabled_fraction < 1:
            raise ValueError("disabled_fraction must be in [0, 1)")


@dataclass(frozen=True, eq=False)
class SynthTruth:
    """What was injected. A glitch lies strictly inside the 16 ms bin [t, t + 0.016) of the
    reference grid of its GTI, t = glitch_times[k] exactly as np.arange computes the edges."""

    glitch_times: np.ndarray  # bin starts, MET s
    grb_times: np.ndarray  # trigger (= peak) times, MET s: the GRB window starts there
    gti: np.ndarray  # (n_gti, 2) START, STOP
    glitch_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    enabled: np.ndarray = field(default_factory=lambda: np.zeros((N_DETX, N_DETY), bool))
    n_events: int = 0


@dataclass(frozen=True)
class _Plane:
    """Per-detector properties, index d over all 32,768 detectors."""

    detx: np.ndarray
    dety: np.ndarray
    enabled: np.ndarray
    rate_weight: np.ndarray  # background rate share, zero when disabled
    gain: np.ndarray  # keV per ADU
    offset: np.ndarray  # ADU
    pipe: np.ndarray  # indices of the enabled detectors in the sandwich column by the heat pipe


def detector_index(detx: np.ndarray, dety: np.ndarray) -> np.ndarray:
    """Index 0..32767 of real detector positions (sandwich-major, then row, then column); it is
    also the DET_ID the synthetic files carry."""
    sandwich = (dety // PITCH_Y) * N_SIDE + detx // PITCH_X
    local = (dety % PITCH_Y) * SANDWICH_NX + detx % PITCH_X
    return sandwich * (SANDWICH_NX * SANDWICH_NY) + local


def _detector_table(
    table: tuple[tuple[tuple[int, int], float, float], ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detector indices, participation shares and mean active counts of a glitch-detector table."""
    index = detector_index(
        np.array([x for (x, _), *_ in table]), np.array([y for (_, y), *_ in table])
    )
    return index, np.array([p for _, p, _ in table]), np.array([m for *_, m in table])


def _hot_kind_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shares were measured over all real glitch windows, the other kind included, where the
    hot set is quiet: within the hot-set kind each detector takes part that much more often."""
    index, share, mean = _detector_table(GLITCH_DETECTORS)
    return index, np.minimum(share / (1 - OTHER_GLITCH_SHARE), 1.0), mean


GLITCH_TABLES = (_hot_kind_table(), _detector_table(OTHER_GLITCH_DETECTORS))
HOT_SET_INDEX = detector_index(np.array([x for x, _ in HOT_SET]), np.array([y for _, y in HOT_SET]))


def _all_positions() -> tuple[np.ndarray, np.ndarray]:
    d = np.arange(N_DETECTORS)
    sandwich, local = np.divmod(d, SANDWICH_NX * SANDWICH_NY)
    sy, sx = np.divmod(sandwich, N_SIDE)
    ly, lx = np.divmod(local, SANDWICH_NX)
    return sx * PITCH_X + lx, sy * PITCH_Y + ly


def _make_plane(spec: SynthSpec, rng: np.random.Generator) -> _Plane:
    detx, dety = _all_positions()
    own = rng if spec.mask_seed is None else np.random.default_rng(spec.mask_seed)
    enabled = _mask(spec.disabled_fraction, own)
    weight = rng.gamma(10.0, 0.1, N_DETECTORS) * enabled
    gain = GAIN_KEV_PER_ADU * (1 + 0.03 * rng.standard_normal(N_DETECTORS))
    offset = OFFSET_ADU + 5.0 * rng.standard_normal(N_DETECTORS)
    pipe = np.flatnonzero(enabled & (detx < PIPE_DETX_MAX))
    return _Plane(detx, dety, enabled, weight / weight.sum(), gain, offset, pipe)


def _mask(disabled_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly round(disabled_fraction * 32768) detectors off, patchy like the real mask: whole
    sandwiches off (29% of them at the real 54%), and the rest scattered unevenly over the others.
    Glitch detectors are never off: a detector that glitches is one that is switched on."""
    per_sandwich = SANDWICH_NX * SANDWICH_NY
    n_off = round(disabled_fraction * N_DETECTORS)
    keep = np.concatenate([index for index, _, _ in GLITCH_TABLES])
    protected = np.unique(keep // per_sandwich)
    free = np.setdiff1d(np.arange(N_SIDE * N_SIDE), protected)
    n_whole = min(round(SANDWICH_OFF_SHARE * n_off / 0.54 / per_sandwich), free.size)
    whole = rng.choice(free, size=n_whole, replace=False)
    enabled = np.ones(N_DETECTORS, bool)
    enabled[(whole[:, None] * per_sandwich + np.arange(per_sandwich)).ravel()] = False
    # The rest: each remaining sandwich loses a share of its detectors drawn around the mean.
    candidates = np.setdiff1d(np.flatnonzero(enabled), keep)
    sandwich_weight = rng.gamma(2.0, 1.0, N_SIDE * N_SIDE)[candidates // per_sandwich]
    scattered = rng.choice(
        candidates,
        size=min(n_off - n_whole * per_sandwich, candidates.size),
        replace=False,
        p=sandwich_weight / sandwich_weight.sum(),
    )
    enabled[scattered] = False
    return enabled


def _power_law(u: np.ndarray, lo: float, hi: float, index: float) -> np.ndarray:
    """Inverse CDF of dN/dE ~ E^-index on [lo, hi] at uniform deviates u."""
    a = 1.0 - index
    if abs(a) < 1e-9:
        return lo * (hi / lo) ** u
    return (lo**a + u * (hi**a - lo**a)) ** (1.0 / a)


def _spectrum(
    rng: np.random.Generator, n: int, segments: tuple[tuple[float, float, float, float], ...]
) -> np.ndarray:
    """n energies from a spectrum of power-law segments (lo keV, hi keV, index, weight)."""
    u = rng.random(n)
    edges = np.cumsum([0.0, *(w for *_, w in segments)])
    seg = np.searchsorted(edges, u, side="right") - 1
    energy = np.empty(n)
    for k, (lo, hi, index, _) in enumerate(segments):
        sel = seg == k
        energy[sel] = _power_law((u[sel] - edges[k]) / (edges[k + 1] - edges[k]), lo, hi, index)
    return energy


def _make_gti(spec: SynthSpec, rng: np.random.Generator) -> np.ndarray:
    """n_gti intervals with short random gaps before, between and after them."""
    bounds = spec.tstart + spec.duration * np.arange(spec.n_gti + 1) / spec.n_gti
    seg = spec.duration / spec.n_gti
    lead = rng.uniform(0.01, 0.04, spec.n_gti) * seg
    tail = rng.uniform(0.01, 0.04, spec.n_gti) * seg
    return np.column_stack([bounds[:-1] + lead, bounds[1:] - tail])


@dataclass(frozen=True)
class _Batch:
    """Counts before they become FITS rows: clock ticks since TSTART, detector index, true keV."""

    ticks: np.ndarray
    det: np.ndarray
    energy: np.ndarray

    @staticmethod
    def join(batches: list[_Batch]) -> _Batch:
        if not batches:
            return _Batch(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        return _Batch(
            *(np.concatenate(parts) for parts in zip(*(b.columns() for b in batches), strict=True))
        )

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.ticks, self.det, self.energy

    def take(self, index: np.ndarray) -> _Batch:
        return _Batch(self.ticks[index], self.det[index], self.energy[index])


def _ticks(times: np.ndarray, spec: SynthSpec) -> np.ndarray:
    return np.rint((times - spec.tstart) / TICK_S).astype(np.int64)


def _background(spec: SynthSpec, plane: _Plane, rng: np.random.Generator) -> _Batch:
    """Poisson counts per clock tick: already in time order, and detector and energy do not
    depend on time."""
    per_tick = rng.poisson(spec.rate_hz * TICK_S, _last_tick(spec) + 1)
    ticks = np.repeat(np.arange(per_tick.size), per_tick)
    n = ticks.size
    return _Batch(
        ticks,
        rng.choice(N_DETECTORS, size=n, p=plane.rate_weight),
        _spectrum(rng, n, BACKGROUND_SPECTRUM),
    )


def _last_tick(spec: SynthSpec) -> int:
    return round(spec.duration / TICK_S)


def _grb_events(
    spec: SynthSpec, plane: _Plane, gti: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, _Batch]:
    """Trigger times and counts of the GRB-like bursts: FRED profiles peaking at the trigger
    (inside a GTI), brightness in the 64 ms window from the trigger drawn like the real windows'."""
    lengths = gti[:, 1] - gti[:, 0]
    which = rng.choice(len(gti), size=spec.n_grbs, p=lengths / lengths.sum())
    peaks = np.sort(gti[which, 0] + rng.random(spec.n_grbs) * lengths[which])
    if spec.trigger_met is not None:  # the trigger's burst, wherever the GTIs are
        peaks = np.sort(np.concatenate([[spec.trigger_met], peaks[1:]]))
    bursts = []
    for peak in peaks:
        median, spread = GRB_WINDOW_EXCESS
        excess = min(median * math.exp(spread * rng.standard_normal()), GRB_WINDOW_EXCESS_MAX)
        rise, decay = rng.uniform(*GRB_RISE_S), rng.uniform(*GRB_DECAY_S)
        # the decay keeps exp(-t / decay) of the peak rate: the window's mean share of it
        rate = excess / (decay * -math.expm1(-GRB_WINDOW_S / decay))
        n = rng.poisson(rate * (rise + decay))
        before = rng.random(n) < rise / (rise + decay)
        offsets = np.where(before, -rise, decay) * rng.exponential(1.0, n)
        # Coded-mask shadow: about half the plane sees the burst through open mask elements.
        shadow = np.where(rng.random(N_DETECTORS) < 0.5, 1.0, 0.05) * plane.enabled
        bursts.append(
            _Batch(
                _ticks(peak + offsets, spec),
                rng.choice(N_DETECTORS, size=n, p=shadow / shadow.sum()),
                _power_law(rng.random(n), *GRB_ENERGY, rng.uniform(*GRB_INDEX)),
            )
        )
    return peaks, _Batch.join(bursts)


def _glitch_bins(
    spec: SynthSpec,
    grids: list[np.ndarray],
    high: list[np.ndarray],
    grb_peaks: np.ndarray,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Per GTI, the bins that get a glitch: interior, well apart, clear of GRBs, and with an
    ordinary high-band count, so that the reference's ratio test cannot veto them."""
    candidates = []
    for row, (edges, h_high) in enumerate(zip(grids, high, strict=True)):
        bins = np.arange(2, len(edges) - 3, GLITCH_STRIDE_BINS)
        near = np.abs(edges[bins, None] - grb_peaks[None, :]) < GRB_GLITCH_CLEARANCE_S
        with np.errstate(divide="ignore", invalid="ignore"):
            z_high = (h_high[bins] - h_high.mean()) / h_high.std()
        bins = bins[~near.any(axis=1) & (np.abs(z_high) < GLITCH_Z_HIGH_MAX)]
        candidates.append(np.column_stack([np.full(bins.size, row), bins]))
    pool = np.concatenate(candidates)
    # Random order, keeping at most `cap` glitches per GTI: beyond that no glitch size can make
    # them all stand GLITCH_Z_MIN above a spread they inflate themselves.
    order = rng.permutation(len(pool))
    rows = pool[order, 0]
    rank = np.zeros(len(order), np.int64)
    for row in range(len(grids)):
        rank[rows == row] = np.arange(np.count_nonzero(rows == row))
    cap = np.array([(len(edges) - 1) // GTI_BINS_PER_GLITCH for edges in grids], np.int64)
    fits_in = order[rank < cap[rows]]
    if spec.n_glitches > len(fits_in):
        raise ValueError(
            f"{spec.n_glitches} glitches do not fit in these GTIs: at most one per"
            f" {GTI_BINS_PER_GLITCH * BIN_S:.1f} s of GTI, none within"
            f" {GRB_GLITCH_CLEARANCE_S} s of a GRB"
        )
    chosen = pool[np.sort(fits_in[: spec.n_glitches])]
    return [chosen[chosen[:, 0] == row, 1] for row in range(len(grids))]


def _glitch_sizes(h0: np.ndarray, bins: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Smallest counts that lift each bin to low-band significance z, the glitches themselves
    raising the GTI's mean and spread (fixed point, increasing from below)."""
    counts = np.zeros(bins.size, np.int64)
    for _ in range(1000):
        h = h0.copy()
        h[bins] += counts
        need = np.maximum(np.ceil(z * h.std() + h.mean() - h0[bins]).astype(np.int64), 1)
        if np.array_equal(need, counts):
            return counts
        counts = need
    raise ValueError("GTI too short for this many glitches; use longer GTIs or fewer glitches")


def _glitch(
    spec: SynthSpec,
    plane: _Plane,
    t0: float,
    n: int,
    kind: int,
    rng: np.random.Generator,
) -> _Batch:
    """One burst of n low-energy counts inside the bin starting at t0: each glitch detector of the
    table takes part as often and as brightly as in the real glitches, the rest is spread over
    the sandwich column by the heat pipe."""
    index, share, mean = GLITCH_TABLES[kind]
    active = rng.random(index.size) < share
    # the big glitches of the other kind are big on their own detectors too (the real windows'
    # 10 brightest detectors hold up to ~25% of ~2,000-count windows)
    mean = mean * (max(1.0, n / OTHER_GLITCH_SIZE) if kind else 1.0)
    counts = np.where(
        active,
        GLITCH_ACTIVE_MIN + rng.poisson(np.maximum(mean - GLITCH_ACTIVE_MIN, 0)),
        rng.poisson(GLITCH_ACTIVE_QUIET, index.size),
    )
    cap = math.floor(GLITCH_HOT_SHARE_MAX * n)
    if counts.sum() > cap:  # a small glitch cannot light every detector: thin them to fit
        counts = rng.multivariate_hypergeometric(counts, cap)
    det = np.concatenate([np.repeat(index, counts), rng.choice(plane.pipe, size=n - counts.sum())])
    length = rng.uniform(0.002, 0.006)
    begin = t0 + rng.uniform(0.001, BIN_S - 0.001 - length)
    return _Batch(
        _ticks(begin + length * rng.random(n), spec), det, _spectrum(rng, n, GLITCH_SPECTRA[kind])
    )


def _glitch_events(
    spec: SynthSpec,
    plane: _Plane,
    gti: np.ndarray,
    time: np.ndarray,
    energy: np.ndarray,
    grb_peaks: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, _Batch]:
    """Bin starts, sizes and counts of the glitch bursts, given TIME and ENERGY of the rest."""
    grids = [bin_edges(start, stop, DetectionConfig()) for start, stop in gti]
    high = [np.histogram(time[energy > HIGH_MIN_KEV], edges)[0] for edges in grids]
    starts, sizes, bursts = [], [], []
    for edges, bins in zip(grids, _glitch_bins(spec, grids, high, grb_peaks, rng), strict=True):
        if bins.size == 0:
            continue
        z_cap = min(GLITCH_Z_MAX, GLITCH_Z_REACH * math.sqrt((len(edges) - 1) / bins.size))
        other = rng.random(bins.size) < OTHER_GLITCH_SHARE
        scale, spread = np.array(GLITCH_Z_EXCESS)[other.astype(int)].T
        z = GLITCH_Z_MIN + scale * rng.lognormal(0.0, spread)
        h_low = np.histogram(time[energy <= LOW_MAX_KEV], edges)[0]
        counts = _glitch_sizes(h_low, bins, np.minimum(z, z_cap))
        for t0, n, kind in zip(edges[bins], counts, other, strict=True):
            bursts.append(_glitch(spec, plane, t0, n, int(kind), rng))
            starts.append(t0)
            sizes.append(n)
    return np.array(starts), np.array(sizes, np.int64), _Batch.join(bursts)


def _pha(batch: _Batch, plane: _Plane) -> np.ndarray:
    pha = np.rint(plane.offset[batch.det] + batch.energy / plane.gain[batch.det])
    return np.clip(pha, 0, ADC_MAX)


def _stored_energy(pha: np.ndarray, det: np.ndarray, plane: _Plane, gainapp: bool) -> np.ndarray:
    """ENERGY (keV) as a reader of the file sees it, from PHA: in ENERGY_SCALE steps, as the
    archive stores it. Without the per-detector gain correction it is the nominal linear
    conversion, off by a few keV: the reason readers check GAINAPP."""
    if gainapp:
        kev = (pha - plane.offset[det]) * plane.gain[det]
    else:
        kev = (pha - OFFSET_ADU) * GAIN_KEV_PER_ADU
    return _energy_units(kev) * ENERGY_SCALE


def _energy_units(kev: np.ndarray) -> np.ndarray:
    """keV in the file's integer units of ENERGY_SCALE (0.1 keV), inside the 1I range (a null
    energy, read as -3276.8 keV, maps back to TNULL)."""
    units = np.rint(np.asarray(kev, np.float64) / ENERGY_SCALE)
    return np.clip(units, NULL_I2, np.iinfo(np.int16).max)


def _merge(base: _Batch, extra: _Batch) -> _Batch:
    """Insert extra counts into the time-ordered base (stable: base first on equal ticks)."""
    extra = extra.take(np.argsort(extra.ticks, kind="stable"))
    at = np.searchsorted(base.ticks, extra.ticks, side="right")
    return _Batch(
        *(np.insert(b, at, e) for b, e in zip(base.columns(), extra.columns(), strict=True))
    )


def synth_events(spec: SynthSpec) -> tuple[np.ndarray, SynthTruth]:
    """The EVENTS table as a big-endian structured array sorted by TIME, and the truth."""
    layout, background, grbs, glitches = (
        np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(4)
    )
    plane = _make_plane(spec, layout)
    gti = _make_gti(spec, layout)
    bg = _background(spec, plane, background)
    grb_peaks, grb = _grb_events(spec, plane, gti, grbs)
    grb = grb.take((grb.ticks >= 0) & (grb.ticks <= _last_tick(spec)))  # tails past the file
    so_far = _Batch.join([bg, grb])
    glitch_starts, glitch_counts, glitch = _glitch_events(
        spec,
        plane,
        gti,
        spec.tstart + so_far.ticks * TICK_S,
        _stored_energy(_pha(so_far, plane), so_far.det, plane, spec.gainapp),
        grb_peaks,
        glitches,
    )
    merged = _merge(bg, _Batch.join([grb, glitch]))

    pha = _pha(merged, plane)
    energy = _stored_energy(pha, merged.det, plane, spec.gainapp)
    events = np.empty(merged.ticks.size, dtype=EVENT_DTYPE)
    events["TIME"] = spec.tstart + merged.ticks * TICK_S
    events["DET_ID"] = merged.det  # the detector index is the DET_ID
    events["EVENT_FLAGS"] = 0
    events["PHA"] = pha
    units = _energy_units(energy)
    # A few events have no energy, as in real files (TNULL); picked among the softest counts,
    # which are <= 25 keV and below every DPI band either way, so detection does not change.
    null = units < NULL_BELOW_KEV / ENERGY_SCALE
    events["PI"] = np.where(null, NULL_I2, np.clip(units, 0, None))
    events["DETX"] = plane.detx[merged.det]
    events["DETY"] = plane.dety[merged.det]
    events["ENERGY"] = np.where(null, NULL_I2, units) * ENERGY_SCALE  # keV, as a reader sees it
    enabled = np.zeros((N_DETX, N_DETY), bool)
    enabled[plane.detx[plane.enabled], plane.dety[plane.enabled]] = True
    truth = SynthTruth(
        glitch_times=glitch_starts,
        grb_times=grb_peaks,
        gti=gti,
        glitch_counts=glitch_counts,
        enabled=enabled,
        n_events=int(merged.ticks.size),
    )
    return events, truth


EVENT_DTYPE = np.dtype(
    [
        ("TIME", ">f8"),
        ("DET_ID", ">i2"),
        ("EVENT_FLAGS", "u1"),
        ("PHA", ">i2"),
        ("PI", ">i2"),
        ("DETX", ">i2"),
        ("DETY", ">i2"),
        ("ENERGY", ">f4"),  # keV; written as the archive stores it (fits_hdus)
    ]
)
_EVENT_COLUMNS = {  # name: (TUNIT, TLMIN, TLMAX)
    "TIME": ("s", None, None),
    "DET_ID": (None, 0, N_DETECTORS - 1),
    "EVENT_FLAGS": (None, None, None),
    "PHA": ("chan", 0, ADC_MAX),
    "PI": ("chan", 0, 32767),
    "DETX": ("pixel", 0, N_DETX - 1),
    "DETY": ("pixel", 0, N_DETY - 1),
    "ENERGY": ("keV", None, None),
}


def _utc(met: float, utcf: float) -> str:
    return (MET_EPOCH + timedelta(seconds=met + utcf)).strftime("%Y-%m-%dT%H:%M:%S")


def _common_header(spec: SynthSpec, gti: np.ndarray) -> list[tuple[str, object, str]]:
    tstop = float(spec.tstart + spec.duration)
    return [
        ("TELESCOP", "SWIFT", "Telescope (mission) name"),
        ("INSTRUME", "BAT", "Instrument name"),
        ("OBS_ID", spec.obsid, "Observation ID"),
        ("TARG_ID", int(spec.obsid[:8]), "Target ID"),
        ("DATAMODE", "EVENT", "Instrument data mode"),
        ("TIMESYS", "TT", "Time system"),
        ("MJDREFI", 51910, "Integer part of MJD of MET 0"),
        ("MJDREFF", 7.4287037e-4, "Fractional part of MJD of MET 0"),
        ("TIMEREF", "LOCAL", "Reference frame for times"),
        ("TASSIGN", "SATELLITE", "Location of time assignment"),
        ("TIMEUNIT", "s", "Unit of time keywords"),
        ("TIMEZERO", 0.0, "Time offset"),
        ("TIERRELA", 1.0e-8, "Relative clock error"),
        ("TSTART", float(spec.tstart), "Start time (MET s)"),
        ("TSTOP", tstop, "Stop time (MET s)"),
        ("TELAPSE", float(spec.duration), "TSTOP - TSTART"),
        ("ONTIME", float((gti[:, 1] - gti[:, 0]).sum()), "Sum of GTIs"),
        ("DATE-OBS", _utc(spec.tstart, spec.utcf), "UTC start"),
        ("DATE-END", _utc(tstop, spec.utcf), "UTC stop"),
        ("CLOCKAPP", False, "Clock correction applied"),
        ("UTCFINIT", spec.utcf, "UTCF at TSTART (s)"),
        ("ORIGIN", "batglitch", "Synthetic data, not an observation"),
        ("CREATOR", "batglitch.standins.synth", "Program that made this file"),
    ]


def fits_hdus(events: np.ndarray, gti: np.ndarray, spec: SynthSpec) -> fits.HDUList:
    """PRIMARY, EVENTS and GTI with the real BAT column formats and header keywords.

    The archive's layout (bateconvert with scaled energy): ENERGY 1I with TSCAL 0.1, PI 1I in
    0.1 keV channels, both with TNULL -32768; spec.scaled_energy=False writes ENERGY as 1E keV
    instead (any float energy survives exactly: test files of hand-picked events)."""
    common = _common_header(spec, gti)
    primary = fits.PrimaryHDU(header=fits.Header(common))
    stored = {name: events[name] for name in _EVENT_COLUMNS}
    if spec.scaled_energy:
        stored["ENERGY"] = _energy_units(events["ENERGY"]).astype(">i2")
    columns = [
        fits.Column(name=name, format=_tform(stored[name].dtype), unit=unit, array=stored[name])
        for name, (unit, _, _) in _EVENT_COLUMNS.items()
    ]
    evt = fits.BinTableHDU.from_columns(columns, name="EVENTS")
    for k, name in enumerate(_EVENT_COLUMNS, start=1):
        if stored[name].dtype.kind == "i" and name in ("PI", "ENERGY"):
            evt.header[f"TNULL{k}"] = NULL_I2
        if name == "ENERGY" and spec.scaled_energy:
            evt.header[f"TSCAL{k}"] = ENERGY_SCALE
    evt.header.extend(
        [
            ("HDUCLASS", "OGIP", "Format conforms to OGIP standards"),
            ("HDUCLAS1", "EVENTS", "Event list"),
            *common,
            ("GAINAPP", spec.gainapp, "Gain correction has been applied"),
            *(
                [("TRIGTIME", float(spec.trigger_met), "BAT trigger time (MET s)")]
                if spec.trigger_met is not None
                else []
            ),
            ("GAINMETH", "FIXEDDAC" if spec.gainapp else "LINEAR", "Gain correction method"),
            ("TIMEDEL", TICK_S, "Time resolution (s)"),
        ]
    )
    for k, (_, lo, hi) in enumerate(_EVENT_COLUMNS.values(), start=1):
        if lo is not None:
            evt.header[f"TLMIN{k}"], evt.header[f"TLMAX{k}"] = lo, hi
    gti_hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="START", format="1D", unit="s", array=gti[:, 0]),
            fits.Column(name="STOP", format="1D", unit="s", array=gti[:, 1]),
        ],
        name="GTI",
    )
    gti_hdu.header.extend(
        [("HDUCLASS", "OGIP", ""), ("HDUCLAS1", "GTI", ""), ("HDUCLAS2", "STANDARD", ""), *common]
    )
    return fits.HDUList([primary, evt, gti_hdu])


def _tform(dtype: np.dtype) -> str:
    return {"f8": "1D", "f4": "1E", "i2": "1I", "u1": "1B"}[dtype.str[1:]]


def event_file_bytes(spec: SynthSpec) -> tuple[bytes, SynthTruth]:
    """The gzipped FITS event file (what an .evt.gz holds) in memory, and the truth."""
    events, truth = synth_events(spec)
    raw = io.BytesIO()
    fits_hdus(events, truth.gti, spec).writeto(raw)
    # mtime=0: no timestamp in the gzip header, so the bytes depend on the spec only.
    return igzip.compress(raw.getbuffer(), compresslevel=1, mtime=0), truth


def enable_map_bytes(obsid: str, times: Sequence[float], enabled: np.ndarray) -> bytes:
    """A gzipped detector enable/disable file as HEASoft reads one (science.detmask): a binary
    table of maps in time, TIME (MET) and FLAG (286 x 173, 0 = enabled) per row; ``enabled`` is
    bool [map, DETX, DETY] (SynthTruth.enabled per map). Its EXTNAME and FLAG type are not known
    here; readers rely on neither."""
    flag = (~np.asarray(enabled, dtype=bool)).transpose(0, 2, 1).reshape(len(times), -1)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="TIME", format="1D", unit="s", array=np.asarray(times, float)),
            fits.Column(
                name="FLAG", format=f"{N_DETX * N_DETY}B", dim=f"({N_DETX},{N_DETY})",
                array=flag.astype(np.uint8),
            ),
        ],
        name="DET_ENABLE",
    )  # fmt: skip
    primary = fits.PrimaryHDU()
    for hdu in (primary, table):
        hdu.header.update({"TELESCOP": "SWIFT", "INSTRUME": "BAT", "OBS_ID": obsid})
    raw = io.BytesIO()
    fits.HDUList([primary, table]).writeto(raw)
    return igzip.compress(raw.getbuffer(), compresslevel=1, mtime=0)


def write_event_file(target: str | os.PathLike | BinaryIO, spec: SynthSpec) -> SynthTruth:
    """Write the gzipped FITS event file to a path or a binary file object."""
    data, truth = event_file_bytes(spec)
    if isinstance(target, str | os.PathLike):
        with open(target, "wb") as f:
            f.write(data)
    else:
        target.write(data)
    return truth


def dpi_statistics(dpis: np.ndarray) -> dict[str, np.ndarray]:
    """Per window of a (n, 286, 173) DPI stack, the numbers that tell glitch windows from GRB
    windows: total counts, brightest-detector counts, share of the 10 brightest, counts on the
    recurring hot set."""
    flat = np.asarray(dpis, dtype=np.float64).reshape(len(dpis), -1)
    total = flat.sum(axis=1)
    top10 = np.partition(flat, -10, axis=1)[:, -10:].sum(axis=1)
    hot = np.asarray(dpis)[:, [x for x, _ in HOT_SET], [y for _, y in HOT_SET]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "total": total,
            "brightest": flat.max(axis=1),
            "top10_share": top10 / total,
            "hot_set": hot.sum(axis=1).astype(np.float64),
        }


def lowres_statistics(lowres: np.ndarray) -> dict[str, np.ndarray]:
    """Per window of a (n, 16, 16, 2) low-resolution stack: the 15-50 keV share of its counts and
    the share of its sandwich/band bins that are empty."""
    flat = np.asarray(lowres, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "soft_share": flat[..., 0].sum(axis=(1, 2)) / flat.sum(axis=(1, 2, 3)),
            "empty_share": (flat == 0).reshape(len(flat), -1).mean(axis=1),
        }
