"""Realistic synthetic Swift/BAT event files with known heat-pipe glitches and GRB-like bursts.

Tests, benchmarks and local demos need event files that look like the real thing (layout, keywords,
geometry, spectra, glitch statistics) and come with the truth, so that every stage can be checked
without network access. Everything is deterministic from ``SynthSpec.seed``: the same spec always
gives the same bytes.

The model, tuned against ``../shared/data/real_glitch_grb_dpis.npz``:

- background: Poisson counts at ``rate_hz`` over the enabled detectors (mild detector-to-detector
  rate scatter), broken power-law count spectrum 10-1000 keV, times on the 100 us BAT clock tick;
- glitch: a few-ms burst of 10-22 keV counts inside one 16 ms bin of the reference grid, part on a
  handful of detectors (recurring hot spots, this file's warm detectors near the heat pipe), the
  rest spread over the sandwich column by the pipe. Its size is whatever makes the reference
  detector see the drawn significance (>= 11 sigma) in that file, and its bin has an ordinary high
  band, so every injected glitch is flagged and nothing else is;
- GRB: fast-rise exponential-decay burst over the whole (coded-mask shadowed) plane, hard spectrum.

With the real example mask's share of disabled detectors (54%), 64 ms windows come out as the
real ones: glitch ~510 counts, brightest detector ~10, 10 brightest ~9.5%; GRB ~470, 2, ~3.8%.
"""

from __future__ import annotations

import io
import math
import os
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

TICK_S = 1e-4  # BAT event time resolution
UTCF_S = -25.0  # UTC - MET clock offset of the late 2010s-2020s (UTC = 2001-01-01 + MET + UTCF)
MET_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
N_DETECTORS = N_SIDE * N_SIDE * SANDWICH_NX * SANDWICH_NY  # 32,768

# Background count spectrum: (lo keV, hi keV, photon index, weight). Nearly flat to ~30 keV, then
# falling, so ~14% of counts fall below 15 keV, ~36% at <= 25 keV and ~3% above 350 keV; the
# 15-50 / 50-350 keV ratio is that of the real low-resolution glitch DPIs (~2).
BACKGROUND_SPECTRUM = ((10.0, 30.0, 0.5, 0.45), (30.0, 1000.0, 2.0, 0.55))
GLITCH_ENERGY = (10.0, 22.0, 3.0)  # lo, hi, index: heat-pipe glitches are low-energy noise
GRB_ENERGY = (10.0, 800.0)  # index drawn per burst in GRB_INDEX
GRB_INDEX = (0.7, 1.3)

# Detectors that are the brightest in real glitch windows again and again, with the fraction of
# real glitch windows in which each holds >= 4 counts (measured on the reference DPIs).
HOT_SPOTS = (
    ((0, 25), 0.65),
    ((12, 51), 0.57),
    ((12, 38), 0.44),
    ((6, 62), 0.39),
    ((21, 29), 0.32),
    ((29, 51), 0.30),
    ((3, 11), 0.29),
    ((27, 7), 0.25),
    ((0, 139), 0.23),
    ((3, 13), 0.17),
)
HOT_SPOT_BOOST = 2.0  # hot spots take more of a glitch than this file's warm detectors
N_WARM = 20  # this file's own glitch-prone detectors, in the two sandwich columns by the heat pipe
WARM_DETX_MAX = 2 * PITCH_X
WARM_RATE = 0.35  # chance that a warm detector takes part in a given glitch
# The rest of a glitch is diffuse: single counts over the sandwich column by the heat pipe, which
# holds ~23% of real glitch-window counts against ~6% in GRB windows.
GLITCH_CORE_SHARE = (0.35, 0.65)
PIPE_DETX_MAX = PITCH_X
GLITCH_Z_MIN = 11.0  # low-band significance every injected glitch reaches in its 16 ms bin
GLITCH_Z_SCALE = 2.5  # median excess over the minimum, lognormal
GLITCH_Z_SPREAD = 0.9
GLITCH_Z_MAX = 60.0
# k glitches in a GTI of n bins can reach z ~ sqrt(n / k) at most, whatever their size: aim at
# most this share of it, which bounds how many glitches one GTI can hold.
GLITCH_Z_REACH = 0.8
GTI_BINS_PER_GLITCH = math.ceil((GLITCH_Z_MIN / GLITCH_Z_REACH) ** 2)
GLITCH_Z_HIGH_MAX = 3.0  # glitch bins have an ordinary high band: z_low / |z_high| stays > 3
GLITCH_STRIDE_BINS = 16  # candidate glitch bins are this far apart, so their windows never overlap
GRB_PEAK_HZ = (300.0, 2500.0)  # log-uniform peak rate above background
GRB_RISE_S = (0.1, 1.0)
GRB_DECAY_S = (1.0, 8.0)
GRB_GLITCH_CLEARANCE_S = 2.0  # no glitch this close to a GRB peak: truth stays unambiguous

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
    disabled_fraction: float = 0.1
    n_glitches: int = 3
    n_grbs: int = 0
    gainapp: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.obsid) != 11 or not self.obsid.isdigit():
            raise ValueError(f"obsid must be 11 digits, got {self.obsid!r}")
        if not self.duration > 0 or not self.rate_hz > 0:
            raise ValueError("duration and rate_hz must be positive")
        if self.n_gti < 1 or self.n_glitches < 0 or self.n_grbs < 0:
            raise ValueError("need n_gti >= 1 and non-negative n_glitches, n_grbs")
        if not 0 <= self.disabled_fraction < 1:
            raise ValueError("disabled_fraction must be in [0, 1)")


@dataclass(frozen=True, eq=False)
class SynthTruth:
    """What was injected. A glitch lies strictly inside the 16 ms bin [t, t + 0.016) of the
    reference grid of its GTI, t = glitch_times[k] exactly as np.arange computes the edges."""

    glitch_times: np.ndarray  # bin starts, MET s
    grb_times: np.ndarray  # peak times, MET s
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
    warm: np.ndarray  # indices of this file's glitch-prone detectors
    pipe: np.ndarray  # indices of the enabled detectors in the sandwich column by the heat pipe


def detector_index(detx: np.ndarray, dety: np.ndarray) -> np.ndarray:
    """Index 0..32767 of real detector positions (sandwich-major, then row, then column); it is
    also the DET_ID the synthetic files carry."""
    sandwich = (dety // PITCH_Y) * N_SIDE + detx // PITCH_X
    local = (dety % PITCH_Y) * SANDWICH_NX + detx % PITCH_X
    return sandwich * (SANDWICH_NX * SANDWICH_NY) + local


HOT_SPOT_INDEX = detector_index(
    np.array([x for (x, _), _ in HOT_SPOTS]), np.array([y for (_, y), _ in HOT_SPOTS])
)
HOT_SPOT_RATE = np.array([p for _, p in HOT_SPOTS])


def _all_positions() -> tuple[np.ndarray, np.ndarray]:
    d = np.arange(N_DETECTORS)
    sandwich, local = np.divmod(d, SANDWICH_NX * SANDWICH_NY)
    sy, sx = np.divmod(sandwich, N_SIDE)
    ly, lx = np.divmod(local, SANDWICH_NX)
    return sx * PITCH_X + lx, sy * PITCH_Y + ly


def _make_plane(spec: SynthSpec, rng: np.random.Generator) -> _Plane:
    detx, dety = _all_positions()
    # Hot spots are never disabled: a detector that glitches is one that is switched on.
    others = np.setdiff1d(np.arange(N_DETECTORS), HOT_SPOT_INDEX)
    n_off = round(spec.disabled_fraction * N_DETECTORS)
    enabled = np.ones(N_DETECTORS, bool)
    enabled[rng.choice(others, size=min(n_off, others.size), replace=False)] = False
    weight = rng.gamma(10.0, 0.1, N_DETECTORS) * enabled
    gain = GAIN_KEV_PER_ADU * (1 + 0.03 * rng.standard_normal(N_DETECTORS))
    offset = OFFSET_ADU + 5.0 * rng.standard_normal(N_DETECTORS)
    near_pipe = np.flatnonzero(enabled & (detx < WARM_DETX_MAX))
    warm = np.sort(rng.choice(near_pipe, size=min(N_WARM, near_pipe.size), replace=False))
    pipe = np.flatnonzero(enabled & (detx < PIPE_DETX_MAX))
    return _Plane(detx, dety, enabled, weight / weight.sum(), gain, offset, warm, pipe)


def _power_law(u: np.ndarray, lo: float, hi: float, index: float) -> np.ndarray:
    """Inverse CDF of dN/dE ~ E^-index on [lo, hi] at uniform deviates u."""
    a = 1.0 - index
    if abs(a) < 1e-9:
        return lo * (hi / lo) ** u
    return (lo**a + u * (hi**a - lo**a)) ** (1.0 / a)


def _bg_energy(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.random(n)
    edges = np.cumsum([0.0, *(w for *_, w in BACKGROUND_SPECTRUM)])
    seg = np.searchsorted(edges, u, side="right") - 1
    energy = np.empty(n)
    for k, (lo, hi, index, _) in enumerate(BACKGROUND_SPECTRUM):
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
    return _Batch(ticks, rng.choice(N_DETECTORS, size=n, p=plane.rate_weight), _bg_energy(rng, n))


def _last_tick(spec: SynthSpec) -> int:
    return round(spec.duration / TICK_S)


def _grb_events(
    spec: SynthSpec, plane: _Plane, gti: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, _Batch]:
    """Peak times and counts of the GRB-like bursts (FRED profiles, peaks inside GTIs)."""
    lengths = gti[:, 1] - gti[:, 0]
    which = rng.choice(len(gti), size=spec.n_grbs, p=lengths / lengths.sum())
    peaks = np.sort(gti[which, 0] + rng.random(spec.n_grbs) * lengths[which])
    bursts = []
    for peak in peaks:
        rate = math.exp(rng.uniform(*np.log(GRB_PEAK_HZ)))
        rise, decay = rng.uniform(*GRB_RISE_S), rng.uniform(*GRB_DECAY_S)
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


def _glitch(spec: SynthSpec, plane: _Plane, t0: float, n: int, rng: np.random.Generator) -> _Batch:
    """One burst of n low-energy counts inside the bin starting at t0: part on a few hot or warm
    detectors (the core), the rest spread over the sandwich column by the heat pipe."""
    hot = HOT_SPOT_INDEX[rng.random(HOT_SPOT_INDEX.size) < HOT_SPOT_RATE]
    members = np.concatenate(
        [
            hot,
            plane.warm[rng.random(plane.warm.size) < WARM_RATE],
            rng.choice(np.flatnonzero(plane.enabled), size=rng.integers(1, 3)),
        ]
    )
    weight = rng.lognormal(0.0, 0.6, members.size)
    weight[: hot.size] *= HOT_SPOT_BOOST
    core = rng.binomial(n, rng.uniform(*GLITCH_CORE_SHARE))
    length = rng.uniform(0.002, 0.006)
    begin = t0 + rng.uniform(0.001, BIN_S - 0.001 - length)
    det = np.concatenate(
        [
            np.repeat(members, rng.multinomial(core, weight / weight.sum())),
            rng.choice(plane.pipe, size=n - core),
        ]
    )
    return _Batch(
        _ticks(begin + length * rng.random(n), spec), det, _power_law(rng.random(n), *GLITCH_ENERGY)
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
        z = GLITCH_Z_MIN + GLITCH_Z_SCALE * rng.lognormal(0.0, GLITCH_Z_SPREAD, bins.size)
        h_low = np.histogram(time[energy <= LOW_MAX_KEV], edges)[0]
        counts = _glitch_sizes(h_low, bins, np.minimum(z, z_cap))
        for t0, n in zip(edges[bins], counts, strict=True):
            bursts.append(_glitch(spec, plane, t0, n, rng))
            starts.append(t0)
            sizes.append(n)
    return np.array(starts), np.array(sizes, np.int64), _Batch.join(bursts)


def _pha(batch: _Batch, plane: _Plane) -> np.ndarray:
    pha = np.rint(plane.offset[batch.det] + batch.energy / plane.gain[batch.det])
    return np.clip(pha, 0, ADC_MAX)


def _stored_energy(pha: np.ndarray, det: np.ndarray, plane: _Plane, gainapp: bool) -> np.ndarray:
    """ENERGY as the file stores it, from PHA. Without the per-detector gain correction it is
    the nominal linear conversion, off by a few keV: the reason readers check GAINAPP."""
    if gainapp:
        return ((pha - plane.offset[det]) * plane.gain[det]).astype(np.float32)
    return ((pha - OFFSET_ADU) * GAIN_KEV_PER_ADU).astype(np.float32)


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
    events["PI"] = np.clip(np.rint(energy * np.float64(10.0)), 0, np.iinfo(np.int16).max)
    events["MASK_WEIGHT"] = 1.0
    events["DETX"] = plane.detx[merged.det]
    events["DETY"] = plane.dety[merged.det]
    events["ENERGY"] = energy
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
        ("MASK_WEIGHT", ">f4"),
        ("DETX", ">i2"),
        ("DETY", ">i2"),
        ("ENERGY", ">f4"),
    ]
)
_EVENT_COLUMNS = {  # name: (TUNIT, TLMIN, TLMAX)
    "TIME": ("s", None, None),
    "DET_ID": (None, 0, N_DETECTORS - 1),
    "EVENT_FLAGS": (None, None, None),
    "PHA": ("chan", 0, ADC_MAX),
    "PI": ("chan", 0, 32767),
    "MASK_WEIGHT": (None, None, None),
    "DETX": ("pixel", 0, N_DETX - 1),
    "DETY": ("pixel", 0, N_DETY - 1),
    "ENERGY": ("keV", None, None),
}


def _utc(met: float) -> str:
    return (MET_EPOCH + timedelta(seconds=met + UTCF_S)).strftime("%Y-%m-%dT%H:%M:%S")


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
        ("DATE-OBS", _utc(spec.tstart), "UTC start"),
        ("DATE-END", _utc(tstop), "UTC stop"),
        ("CLOCKAPP", False, "Clock correction applied"),
        ("UTCFINIT", UTCF_S, "UTCF at TSTART (s)"),
        ("ORIGIN", "batglitch", "Synthetic data, not an observation"),
        ("CREATOR", "batglitch.standins.synth", "Program that made this file"),
    ]


def fits_hdus(events: np.ndarray, gti: np.ndarray, spec: SynthSpec) -> fits.HDUList:
    """PRIMARY, EVENTS and GTI with the real BAT column formats and header keywords."""
    common = _common_header(spec, gti)
    primary = fits.PrimaryHDU(header=fits.Header(common))
    columns = [
        fits.Column(name=name, format=_tform(events.dtype[name]), unit=unit, array=events[name])
        for name, (unit, _, _) in _EVENT_COLUMNS.items()
    ]
    evt = fits.BinTableHDU.from_columns(columns, name="EVENTS")
    evt.header.extend(
        [
            ("HDUCLASS", "OGIP", "Format conforms to OGIP standards"),
            ("HDUCLAS1", "EVENTS", "Event list"),
            *common,
            ("GAINAPP", spec.gainapp, "Gain correction has been applied"),
            ("GAINMETH", "FIXEDDAC" if spec.gainapp else "LINEAR", "Gain correction method"),
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


def write_event_file(target: str | os.PathLike | BinaryIO, spec: SynthSpec) -> SynthTruth:
    """Write the gzipped FITS event file to a path or a binary file object."""
    data, truth = event_file_bytes(spec)
    if isinstance(target, str | os.PathLike):
        with open(target, "wb") as f:
            f.write(data)
    else:
        target.write(data)
    return truth


def dpi_statistics(dpis: np.ndarray) -> dict[str, float]:
    """Medians over a stack of (n, 286, 173) DPIs of the three numbers that tell glitch windows
    from GRB windows: total counts, brightest-detector counts, share of the 10 brightest."""
    flat = np.asarray(dpis, dtype=np.float64).reshape(len(dpis), -1)
    total = flat.sum(axis=1)
    top10 = np.partition(flat, -10, axis=1)[:, -10:].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = top10 / total
    return {
        "median_total": float(np.median(total)),
        "median_max": float(np.median(flat.max(axis=1))),
        "median_top10_fraction": float(np.nanmedian(share)),
    }
