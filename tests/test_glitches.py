"""The glitch search pieces: histogram-equal binning, sorting, z-scores and flagged windows.

Whole-file equality with the reference is in test_dpi.py; here each piece is held to a result
known independently (numpy's own histogram, or light curves built with a known answer).
"""

from __future__ import annotations

import warnings

import numpy as np
from eventfiles import BIN_S, PAD_S, Events, binned_events, reference_edges
from hypothesis import given, settings
from hypothesis import strategies as st

from batglitch.science.config import DetectionConfig
from batglitch.science.events import parse_events
from batglitch.science.glitches import (
    binned_counts,
    find_windows,
    light_curves,
    time_sorted,
    zscores,
)
from batglitch.standins.synth import SynthSpec, event_file_bytes

T0 = 7.1e8 + 0.00123


def spike_light_curve(rng, n_bins=200, spike_bin=120, spike=60, high=None):
    """Constant low band (2 per bin) plus one spike: z_low of the spike is sqrt(n_bins - 1)."""
    edges = reference_edges(T0, T0 + n_bins * BIN_S)
    low = np.full(n_bins, 2)
    low[spike_bin] += spike
    high = rng.poisson(2.0, n_bins) if high is None else high
    events = binned_events(edges, low, high, rng)
    order = np.argsort(events.time, kind="stable")
    return Events.join([events.permuted(order)], [[edges[0], edges[-1]]]), edges, low + high


@st.composite
def sorted_values_and_edges(draw):
    start = draw(st.sampled_from([0.0, 5.0e8 + 0.1234, T0]))
    stop = start + draw(st.integers(0, 40)) * BIN_S + draw(st.sampled_from([0.0, 0.005, 0.009]))
    edges = reference_edges(start, stop)
    pool = np.concatenate(
        [
            edges,
            np.nextafter(edges, np.inf),
            np.nextafter(edges, -np.inf),
            np.linspace(start - 0.05, stop + 0.05, 50),
        ]
    )
    picks = draw(st.lists(st.integers(0, pool.size - 1), max_size=120))
    return np.sort(pool[picks]), edges


@settings(max_examples=150, deadline=None)
@given(sorted_values_and_edges())
def test_binned_counts_equals_numpy_histogram(case):
    values, edges = case
    if len(edges) < 2:  # np.histogram needs a bin; the search skips such GTIs before binning
        return
    expected, _ = np.histogram(values, bins=edges)
    assert np.array_equal(binned_counts(values, edges), expected)


def test_time_sorted_keeps_rows_together_and_ties_in_file_order():
    time = np.array([3.0, 1.0, 2.0, 1.0, 3.0, 0.5])
    events = Events.of(time, np.arange(6), np.arange(6) + 10, np.arange(6) * 1.5, [[0, 4]])
    ordered = time_sorted(events.event_list())
    assert np.array_equal(ordered.time, [0.5, 1.0, 1.0, 2.0, 3.0, 3.0])
    assert np.array_equal(ordered.detx, [5, 1, 3, 2, 0, 4])  # ties keep their file order
    assert np.array_equal(ordered.dety, ordered.detx + 10)
    assert np.array_equal(ordered.energy, ordered.detx * 1.5)
    assert time_sorted(ordered) is ordered  # already sorted: no copy


def test_zscores_standardise_and_give_nan_without_spread():
    z = zscores(np.array([0, 1, 5, 2, 2, 9]))
    assert np.isclose(z.mean(), 0.0) and np.isclose(z.std(), 1.0)
    assert np.isnan(zscores(np.full(7, 4))).all()


def test_single_spike_is_found_at_the_reference_bin():
    rng = np.random.default_rng(1)
    events, edges, _ = spike_light_curve(rng)
    windows = find_windows(events.event_list())
    assert np.array_equal(windows.t0, [edges[120]])
    assert windows.start[0] == edges[120] - PAD_S
    assert windows.stop[0] == edges[120] + BIN_S + PAD_S
    assert np.isclose(windows.snr_low[0], np.sqrt(199))
    assert windows.snr_ratio[0] > DetectionConfig().ratio_min


def test_thresholds_and_bin_width_come_from_the_config():
    rng = np.random.default_rng(2)
    events, _, _ = spike_light_curve(rng, n_bins=300)
    event_list = events.event_list()
    assert len(find_windows(event_list)) == 1
    assert len(find_windows(event_list, DetectionConfig(z_low_min=18.0))) == 0  # sqrt(299) < 18
    # 32 ms bins: 150 of them, still a lone spike over a constant background, z = sqrt(149)
    wide = find_windows(event_list, DetectionConfig(bin_s=0.032, pad_s=0.0))
    assert len(wide) == 1 and np.isclose(wide.stop[0] - wide.start[0], 0.032)


def test_gtis_without_a_whole_bin_are_skipped_quietly():
    rng = np.random.default_rng(3)
    events, edges, _ = spike_light_curve(rng)
    late = edges[-1] + 1.0
    gti = [[late, late], [late + 1, late + 1.005], [edges[0], edges[-1]], [late + 2, late + 2.01]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        windows = find_windows(Events.join([events], gti).event_list())
    assert np.array_equal(windows.t0, [edges[120]])


def test_synthetic_glitches_are_all_found():
    raw, truth = event_file_bytes(SynthSpec(duration=40.0, rate_hz=4000.0, n_glitches=4, seed=9))
    events = time_sorted(parse_events(raw, "synth.evt.gz"))
    windows = find_windows(events)
    assert len(truth.glitch_times) == 4
    assert np.isin(truth.glitch_times, windows.t0).all()


def test_light_curves_count_all_energies_around_the_flagged_bin():
    rng = np.random.default_rng(4)
    events, edges, per_bin = spike_light_curve(rng, spike_bin=100)
    config = DetectionConfig()
    curve = light_curves(events.time, np.array([edges[100]]), config)
    half = config.lightcurve_bins // 2
    assert curve.shape == (1, config.lightcurve_bins)
    assert np.array_equal(curve[0], per_bin[100 - half : 100 + half])
