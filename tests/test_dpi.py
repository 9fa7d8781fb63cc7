"""The fast path (parse_events + glitch_table) against the plain reference, array for array.

Synthetic files of many kinds, hand-made edge cases and random cases from hypothesis. Every edge
case also asserts that the reference really flags something (or, where NaN must win, that the
same data with one thing changed does), so a test cannot pass because nothing happened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from eventfiles import (
    BIN_S,
    PAD_S,
    Events,
    binned_events,
    event_hdus,
    file_bytes,
    reference_edges,
    write_file,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reference import reference_file, reference_rows

from batglitch.errors import EventFileError
from batglitch.science.config import N_DETX, N_DETY, DetectionConfig, edges_array
from batglitch.science.dpi import WindowTable, bin_index, glitch_table, window_images
from batglitch.science.events import parse_events
from batglitch.science.glitches import Windows, time_sorted
from batglitch.standins.synth import SynthSpec, write_event_file

T0 = 7.0e8 + 0.0037  # MET scale, and a start off the millisecond grid so arange rounds


def fast_table(path: Path) -> WindowTable:
    return glitch_table(parse_events(path.read_bytes(), str(path)))


def assert_parity(table: WindowTable, rows: list[dict], *, compare_snr: bool = True) -> None:
    """Same windows in the same order with exactly equal values (GRB windows have no SNR)."""
    assert len(table) == len(rows)
    names = ("window_start", "window_stop", "n_events")
    for name in (*names, "snr_low", "snr_ratio") if compare_snr else names:
        expected = np.array([row[name] for row in rows], dtype=getattr(table, name).dtype)
        assert np.array_equal(getattr(table, name), expected), name
    assert table.dpi.shape == (len(rows), N_DETX, N_DETY)
    assert table.dpi_lowres.shape == (len(rows), *DetectionConfig().lowres_shape)
    for i, row in enumerate(rows):
        assert np.array_equal(table.dpi[i], row["dpi"]), f"dpi of window {i}"
        assert np.array_equal(table.dpi_lowres[i], row["dpi_lowres"]), f"dpi_lowres of window {i}"


def compare_file(path: Path, events: Events) -> list[dict]:
    """Write the events, run both paths on the file, assert parity, return the reference rows."""
    write_file(path, events)
    rows = reference_file(path)
    assert_parity(fast_table(path), rows)
    return rows


def spiky(rng, start=T0, n_bins=200, spikes=((100, 80),), low=2, high=None, on_left_edge=0.0):
    """One GTI of constant low-band background with spikes, and Poisson high-band counts.

    With a constant background a single spike has z_low = sqrt(n_bins - 1) whatever its size.
    """
    edges = reference_edges(start, start + n_bins * BIN_S)
    n = len(edges) - 1
    low_counts = np.full(n, low)
    for b, size in spikes:
        low_counts[b] += size
    high_counts = rng.poisson(2.0, n) if high is None else np.broadcast_to(high, n)
    events = binned_events(edges, low_counts, high_counts, rng, on_left_edge=on_left_edge)
    return events, edges


def window_of(edges: np.ndarray, b: int) -> tuple[float, float]:
    """The reference's [t_min, t_max] of flagged bin b."""
    return edges[b] - PAD_S, edges[b] + BIN_S + PAD_S


SYNTH_CASES = [
    SynthSpec(duration=20.0, rate_hz=2000.0, n_glitches=1, n_gti=1, seed=1),
    SynthSpec(duration=20.0, rate_hz=12000.0, n_glitches=4, n_gti=2, seed=2),
    SynthSpec(duration=30.0, rate_hz=4000.0, n_glitches=0, n_gti=1, seed=3),
    SynthSpec(duration=30.0, rate_hz=6400.0, n_glitches=3, n_gti=3, seed=4),
    SynthSpec(duration=40.0, rate_hz=3000.0, n_glitches=3, n_gti=4, n_grbs=1, seed=5),
    SynthSpec(duration=25.0, rate_hz=8000.0, n_glitches=2, n_gti=2, n_grbs=1, seed=6),
    SynthSpec(duration=60.0, rate_hz=1500.0, n_glitches=4, n_gti=2, seed=7),
    SynthSpec(duration=20.0, rate_hz=5000.0, n_glitches=2, n_gti=1, seed=8, disabled_fraction=0.5),
    SynthSpec(duration=35.0, rate_hz=2500.0, n_glitches=2, n_gti=3, n_grbs=2, seed=9),
    SynthSpec(duration=20.0, rate_hz=10000.0, n_glitches=3, n_gti=1, seed=10),
]


@pytest.mark.parametrize("spec", SYNTH_CASES, ids=lambda s: f"seed{s.seed}")
def test_synthetic_files_match_reference(tmp_path, spec):
    path = tmp_path / "sw.evt.gz"
    truth = write_event_file(path, spec)
    rows = reference_file(path)
    assert len(rows) >= len(truth.glitch_times) == spec.n_glitches
    assert_parity(fast_table(path), rows)


def test_events_exactly_on_bin_edges_and_window_bounds(tmp_path):
    rng = np.random.default_rng(11)
    # every event sits exactly on the left edge of its bin, as np.arange computed it
    background, edges = spiky(rng, on_left_edge=1.0)
    t_min, t_max = window_of(edges, 100)
    bounds = [
        t_min,
        t_max,
        np.nextafter(t_min, -np.inf),
        np.nextafter(t_max, np.inf),
        edges[101],
        edges[-1],  # the last edge: numpy closes the GTI's last bin
    ]
    extra = Events.of(bounds, 7, 9, 30.0, gti=[])
    events = Events.join([background, extra], gti=[[edges[0], edges[-1]]])
    assert np.isin(background.time, edges).all()
    rows = compare_file(tmp_path / "f.evt.gz", events)
    assert [row["window_start"] for row in rows] == [t_min]
    inside = (events.time >= t_min) & (events.time <= t_max)
    assert rows[0]["n_events"] == inside.sum()


def test_energies_exactly_on_band_edges(tmp_path):
    rng = np.random.default_rng(12)
    background, edges = spiky(rng, spikes=())
    # The spike is 25.0 keV exactly (low band is <= 25) plus 50.0 keV counts, which are not
    # high band (> 50): if either comparison flipped, the spike would not be flagged.
    spike_t = edges[100] + 0.005
    spike = Events.of(np.full(120, spike_t), 3, 4, np.r_[np.full(80, 25.0), np.full(40, 50.0)], [])
    f32 = np.float32
    around = [
        np.nextafter(f32(edge), f32(direction))
        for edge in (15.0, 25.0, 50.0, 350.0)
        for direction in (-np.inf, np.inf)
    ]
    special = np.array([15.0, 25.0, 50.0, 350.0, *around, 10.0, 1000.0], dtype=np.float32)
    near = Events.of(np.full(special.size, edges[101] + 0.004), 40, 50, special, [])
    gti = [[edges[0], edges[-1]]]
    rows = compare_file(tmp_path / "f.evt.gz", Events.join([background, spike, near], gti))
    without = Events.join([background, spike], gti)
    rows_without = reference_rows(
        without.time, without.detx, without.dety, without.energy, without.gti
    )
    assert len(rows) == len(rows_without) == 1
    # of the special energies only [15, 50) goes to band 0 and [50, 350] to band 1
    added = rows[0]["dpi_lowres"] - rows_without[0]["dpi_lowres"]
    sand_y, sand_x = 50 // 11, 40 // 18
    in_band = [((special >= 15) & (special < 50)).sum(), ((special >= 50) & (special <= 350)).sum()]
    assert list(added[sand_y, sand_x]) == in_band and added.sum() == sum(in_band)


def test_plane_corners_and_gaps(tmp_path):
    rng = np.random.default_rng(13)
    background, edges = spiky(rng)
    corners = [(285, 172), (0, 0), (285, 0), (0, 172), (270, 165), (269, 164), (16, 8), (284, 171)]
    x, y = np.array(corners).T
    extra = Events.of(np.full(x.size, edges[100] + 0.002), x, y, 30.0, [])
    events = Events.join([background, extra], gti=[[edges[0], edges[-1]]])
    write_file(tmp_path / "f.evt.gz", events)
    table = fast_table(tmp_path / "f.evt.gz")
    assert_parity(table, reference_file(tmp_path / "f.evt.gz"))
    assert len(table) == 1 and (table.dpi[0][x, y] > 0).all()
    # x 270..285 and y 165..172 are the last, right-closed low-resolution bins
    assert table.dpi_lowres[0][15, 15, 0] >= 3


@pytest.mark.parametrize(
    ("low", "spikes", "high", "expect_windows"),
    [
        (2, ((100, 80),), None, True),  # control: a plain spike is flagged
        (2, (), None, False),  # constant low band: std 0, z_low NaN
        (0, (), None, False),  # no low-band events at all
        (2, ((100, 80),), 0, False),  # no high-band events: z_high NaN, ratio NaN
        (2, ((100, 80),), 3, False),  # constant high band: the same
    ],
)
def test_zero_spread_gives_nan_and_no_flags(tmp_path, low, spikes, high, expect_windows):
    rng = np.random.default_rng(14)
    events, edges = spiky(rng, low=low, spikes=spikes, high=high)
    rows = compare_file(tmp_path / "f.evt.gz", Events.join([events], [[edges[0], edges[-1]]]))
    assert bool(rows) is expect_windows


def test_high_band_at_its_mean_gives_infinite_ratio(tmp_path):
    rng = np.random.default_rng(15)
    high = np.ones(200, dtype=np.int64)
    high[[10, 30]] = 0, 2  # mean stays exactly 1, std > 0, and the spike bin has z_high = 0
    events, edges = spiky(rng, high=high)
    rows = compare_file(tmp_path / "f.evt.gz", Events.join([events], [[edges[0], edges[-1]]]))
    assert len(rows) == 1 and np.isinf(rows[0]["snr_ratio"])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference takes the mean of no bins
def test_gtis_shorter_than_a_bin(tmp_path):
    rng = np.random.default_rng(16)
    events, edges = spiky(rng)
    starts = edges[-1] + np.array([5.0, 6.0, 7.0, 8.0])
    short = np.column_stack([starts, starts + np.array([0.010, 0.005, 0.0, 0.0081])])
    burst = Events.of(np.repeat(starts + 0.002, 50), 1, 2, 20.0, [])
    gti = [[edges[0], edges[-1]], *short]
    rows = compare_file(tmp_path / "f.evt.gz", Events.join([events, burst], gti))
    assert len(rows) == 1
    assert [len(reference_edges(*g)) for g in short] == [2, 1, 1, 2]


def test_several_overlapping_and_repeated_gtis(tmp_path):
    rng = np.random.default_rng(17)
    first, edges = spiky(rng, spikes=())
    second, edges2 = spiky(rng, start=edges[-1] + 3.0, spikes=((150, 90),))
    # mid-bin, so a GTI shifted by a third of a bin sees the whole spike in one of its bins
    spike = Events.of(np.full(80, edges[60] + 0.008), 30, 30, 18.0, [])
    shifted = [edges[0] + 0.005, edges[-1] + 0.005]
    gti = [[edges[0], edges[-1]], [edges2[0], edges2[-1]], shifted, [edges[0], edges[-1]]]
    rows = compare_file(tmp_path / "f.evt.gz", Events.join([first, second, spike], gti))
    starts = [row["window_start"] for row in rows]
    assert len(rows) == 4 and starts[0] == starts[3] != starts[2]


def test_events_outside_every_gti_still_count_in_windows(tmp_path):
    rng = np.random.default_rng(18)
    events, edges = spiky(rng, spikes=((199, 80),))  # the last bin, closed on the right
    gti = [[edges[0], edges[-1]]]
    # after the GTI, inside the last window's pad; and a big burst far from any GTI
    after = Events.of(edges[-1] + np.array([0.001, 0.01, 0.02]), 100, 100, 20.0, [])
    far = Events.of(np.full(500, edges[-1] + 10.0), 5, 5, 20.0, [])
    joined = Events.join([events, after, far], gti)
    rows = compare_file(tmp_path / "f.evt.gz", joined)
    assert len(rows) == 1
    _, t_max = window_of(edges, 199)
    assert rows[0]["window_stop"] == t_max > after.time.max()
    assert rows[0]["dpi"][100, 100] == 3


def test_adjacent_flagged_bins_give_overlapping_windows(tmp_path):
    rng = np.random.default_rng(19)
    events, edges = spiky(rng, n_bins=300, spikes=((100, 80), (101, 80)))
    rows = compare_file(tmp_path / "f.evt.gz", Events.join([events], [[edges[0], edges[-1]]]))
    assert len(rows) == 2 and rows[0]["window_stop"] > rows[1]["window_start"]


def test_unsorted_file_order(tmp_path):
    rng = np.random.default_rng(20)
    events, edges = spiky(rng, n_bins=300, spikes=((40, 80), (220, 80)))
    ordered = Events.join([events], [[edges[0], edges[-1]]])
    ordered = ordered.permuted(np.argsort(ordered.time, kind="stable"))
    shuffled = ordered.permuted(rng.permutation(len(ordered.time)))
    assert not np.all(np.diff(shuffled.time) >= 0)
    rows = compare_file(tmp_path / "shuffled.evt.gz", shuffled)
    assert len(rows) == 2
    assert_parity(fast_table(write_file(tmp_path / "sorted.evt", ordered)), rows)


def test_window_without_events_is_skipped():
    rng = np.random.default_rng(21)
    events, edges = spiky(rng)
    event_list = Events.join([events], [[edges[0], edges[-1]]]).event_list()
    event_list = time_sorted(event_list)
    t0 = np.array([edges[50], edges[-1] + 5.0, edges[150]])
    windows = Windows(t0, t0 - PAD_S, t0 + BIN_S + PAD_S, np.ones(3), np.ones(3))
    table = window_images(event_list, windows, DetectionConfig())
    assert np.array_equal(table.window_start, windows.start[[0, 2]])
    assert (table.n_events > 0).all()


def test_detector_count_beyond_uint16_is_refused():
    rng = np.random.default_rng(22)
    events, edges = spiky(rng, spikes=())
    hot = Events.of(np.full(70_000, edges[100] + 0.004), 12, 51, 20.0, [])
    event_list = Events.join([events, hot], [[edges[0], edges[-1]]]).event_list("hot.evt")
    with pytest.raises(EventFileError, match=r"hot\.evt.*uint16"):
        glitch_table(event_list)


def test_bin_index_follows_histogramdd():
    edges = edges_array(DetectionConfig().lowres_energy_edges)
    values = np.array(
        [-1.0, 14.999, 15.0, 15.001, 49.9, 50.0, 349.9, 350.0, 350.001, np.nan, np.inf]
    )
    expected = np.full(values.size, -1)
    for i, v in enumerate(values):
        counts, _ = np.histogramdd([[v]], bins=[edges])
        expected[i] = np.flatnonzero(counts)[0] if counts.any() else -1
    assert np.array_equal(bin_index(values, edges), expected)


@st.composite
def random_cases(draw) -> Events:
    """A few GTIs (possibly overlapping, possibly shorter than a bin) with spiky light curves,
    events on exact edges and window bounds, odd energies and detectors, in any file order."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    start = draw(st.sampled_from([0.0, 1.0e8 + 0.3, T0]))
    parts, gti = [], []
    for _ in range(draw(st.integers(1, 3))):
        start += draw(st.floats(-2.0, 1.0))  # negative: overlaps the previous GTI
        n_bins = draw(st.integers(0, 260))
        stop = start + n_bins * BIN_S + draw(st.sampled_from([0.0, 0.003, 0.0079, 0.0081, 0.012]))
        gti.append((start, stop))
        edges = reference_edges(start, stop)
        start = stop
        n = len(edges) - 1
        if n < 1:
            continue
        low = np.full(n, draw(st.integers(0, 3)))
        if draw(st.booleans()):
            low = rng.poisson(low.mean() + 0.5, n)
        high = rng.poisson(draw(st.sampled_from([0.0, 0.5, 2.0])), n)
        spikes = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 150)), max_size=3))
        for b, size in spikes:
            low[b] += size
        parts.append(
            binned_events(edges, low, high, rng, on_left_edge=draw(st.sampled_from([0, 0.5])))
        )
        bounds = [t for b, _ in spikes for t in window_of(edges, b)]
        times = np.r_[bounds, rng.choice(edges, draw(st.integers(0, 10)))]
        odd = len(times)
        parts.append(
            Events.of(
                times,
                rng.choice([0, 1, 17, 269, 270, 284, 285], odd),
                rng.choice([0, 7, 10, 164, 165, 171, 172], odd),
                rng.choice(
                    np.float32([14.9, 15, 24.99, 25, 25.01, 49.99, 50, 50.01, 350, 351]), odd
                ),
                [],
            )
        )
    parts.append(Events.of([gti[0][0]], 0, 0, 30.0, []))  # a file has at least one event
    events = Events.join(parts, gti)
    if draw(st.booleans()):
        events = events.permuted(rng.permutation(len(events.time)))
    return events


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_cases())
def test_random_cases_match_reference(events):
    # the reference runs on the very arrays written; reading through astropy is covered above
    table = glitch_table(parse_events(file_bytes(event_hdus(events)), "random.evt.gz"))
    rows = reference_rows(events.time, events.detx, events.dety, events.energy, events.gti)
    event("some window flagged" if rows else "nothing flagged")
    assert_parity(table, rows)


def test_band_light_curves_are_the_detections_bands(tmp_path):
    """lightcurve_low / _high count what the detection's z-scores count, bin for bin."""
    path = tmp_path / "sw.evt.gz"
    write_event_file(path, SynthSpec(duration=20.0, rate_hz=4000.0, n_glitches=2, seed=12))
    events = time_sorted(parse_events(path.read_bytes(), str(path)))
    table = glitch_table(events)
    assert len(table) > 0
    config = DetectionConfig()
    half = config.lightcurve_bins // 2
    t0 = table.window_start + config.pad_s
    edges = t0[:, None] + (np.arange(config.lightcurve_bins + 1) - half) * config.bin_s
    for band, keep in (
        (table.lightcurve_low, events.energy <= config.low_energy_max_kev),
        (table.lightcurve_high, events.energy > config.high_energy_min_kev),
    ):
        expected = [np.histogram(events.time[keep], e)[0][:-1] for e in edges]
        assert np.array_equal(band[:, :-1], np.array(expected))  # the last bin: histogram closes it
    assert (table.lightcurve_low[:, half] > table.lightcurve_high[:, half]).all()  # a glitch
    assert (table.lightcurve_low + table.lightcurve_high <= table.lightcurve).all()
