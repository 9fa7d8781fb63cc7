"""The synthetic event files must look like real BAT files and carry truthful glitches and GRBs."""

from __future__ import annotations

import gzip
import io
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from batglitch.science.config import N_DETX, N_DETY, DetectionConfig
from batglitch.science.dpi import WindowTable, window_images
from batglitch.science.events import EventList
from batglitch.science.glitches import Windows
from batglitch.science.grb import grb_table
from batglitch.standins.synth import (
    HOT_SET,
    N_DETECTORS,
    SynthSpec,
    dpi_statistics,
    event_file_bytes,
    lowres_statistics,
    synth_events,
    write_event_file,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
X_EDGES = np.arange(N_DETX + 1) - 0.5
Y_EDGES = np.arange(N_DETY + 1) - 0.5
SPEC = SynthSpec(duration=120.0, n_glitches=6, n_grbs=2, seed=11)


def read(data: bytes) -> fits.HDUList:
    return fits.open(io.BytesIO(gzip.decompress(data)))


@pytest.fixture(scope="module")
def made():
    data, truth = event_file_bytes(SPEC)
    with read(data) as hdus:
        headers = [hdu.header.copy() for hdu in hdus]
        table = hdus["EVENTS"].data  # columns as a reader sees them: ENERGY scaled to keV
        events = {name: np.array(table[name]) for name in table.columns.names}
        gti = np.column_stack([hdus["GTI"].data["START"], hdus["GTI"].data["STOP"]])
    return data, truth, headers, events, gti


def flagged_bins(events: np.ndarray, gti: np.ndarray) -> np.ndarray:
    """Start times of the 16 ms bins the reference algorithm flags, written out step by step."""
    time, energy = events["TIME"], events["ENERGY"]
    flagged = []
    for start, stop in gti:
        edges = np.arange(start, stop + 0.016 / 2, 0.016)
        h_low = np.histogram(time[energy <= 25.0], edges)[0]
        h_high = np.histogram(time[energy > 50.0], edges)[0]
        z_low = (h_low - h_low.mean()) / h_low.std()
        z_high = (h_high - h_high.mean()) / h_high.std()
        with np.errstate(divide="ignore", invalid="ignore"):
            hit = (z_low > 10) & (z_low / np.abs(z_high) > 3)
        flagged.extend(edges[:-1][hit])
    return np.array(flagged)


def window_dpis(events: np.ndarray, bin_starts: np.ndarray) -> np.ndarray:
    """DPIs of the 64 ms windows around 16 ms bins starting at bin_starts."""
    lo = np.searchsorted(events["TIME"], bin_starts - 0.024, side="left")
    hi = np.searchsorted(events["TIME"], bin_starts + 0.016 + 0.024, side="right")
    return np.array(
        [
            np.histogram2d(events["DETX"][a:b], events["DETY"][a:b], (X_EDGES, Y_EDGES))[0]
            for a, b in zip(lo, hi, strict=True)
        ]
    )


def test_fits_layout_and_keywords(made):
    _, _, headers, events, _ = made
    _, evt, gti = headers
    assert [h.get("EXTNAME", "PRIMARY") for h in headers] == ["PRIMARY", "EVENTS", "GTI"]
    forms = {evt[f"TTYPE{k}"]: evt[f"TFORM{k}"] for k in range(1, evt["TFIELDS"] + 1)}
    assert forms == {
        "TIME": "1D",
        "DET_ID": "1I",
        "EVENT_FLAGS": "1B",
        "PHA": "1I",
        "PI": "1I",
        "DETX": "1I",
        "DETY": "1I",
        "ENERGY": "1I",
    }
    # the archive's layout (bateconvert with scaled energy): 0.1 keV steps, a few nulls
    assert (evt["TSCAL8"], evt["TNULL8"], evt["TNULL5"]) == (0.1, -32768, -32768)
    assert "TSCAL5" not in evt and "TZERO8" not in evt and "TNULL6" not in evt
    assert 0 < np.count_nonzero(events["ENERGY"] == -3276.8) < 1e-2 * len(events["ENERGY"])
    assert np.array_equal(events["ENERGY"] == -3276.8, events["PI"] == -32768)
    assert evt["TIMEDEL"] == 1e-4
    assert gti["TFORM1"] == gti["TFORM2"] == "1D"
    assert (gti["TTYPE1"], gti["TTYPE2"]) == ("START", "STOP")
    for header in headers:
        assert header["TELESCOP"] == "SWIFT" and header["INSTRUME"] == "BAT"
        assert header["OBS_ID"] == SPEC.obsid
        assert header["TSTART"] == SPEC.tstart
        assert header["TSTOP"] == SPEC.tstart + SPEC.duration
        assert header["MJDREFI"] == 51910 and header["MJDREFF"] == pytest.approx(7.4287037e-4)
        assert header["TIMESYS"] == "TT" and "UTCFINIT" in header
    assert evt["GAINAPP"] is True and evt["GAINMETH"] == "FIXEDDAC"
    assert evt["TUNIT8"] == "keV"
    assert events["TIME"].dtype == np.dtype(">f8")


def test_times_sorted_inside_file_and_some_outside_every_gti(made):
    _, truth, headers, events, gti = made
    time = events["TIME"]
    assert np.all(np.diff(time) >= 0)
    assert headers[1]["TSTART"] <= time[0] and time[-1] <= headers[1]["TSTOP"]
    assert np.array_equal(gti, truth.gti) and gti.shape == (SPEC.n_gti, 2)
    assert np.all(gti[:, 0] < gti[:, 1]) and np.all(gti[1:, 0] > gti[:-1, 1])
    assert gti[0, 0] > SPEC.tstart and gti[-1, 1] < SPEC.tstart + SPEC.duration
    in_gti = ((time[:, None] >= gti[:, 0]) & (time[:, None] <= gti[:, 1])).any(axis=1)
    assert 0 < np.count_nonzero(~in_gti) < 0.2 * time.size


def test_events_only_on_enabled_real_detectors_with_consistent_det_id(made):
    _, truth, _, events, _ = made
    detx, dety = events["DETX"].astype(int), events["DETY"].astype(int)
    assert np.all(detx % 18 < 16) and np.all(dety % 11 < 8)
    assert detx.max() <= 285 and dety.max() <= 172
    assert truth.enabled[detx, dety].all()
    assert truth.enabled.sum() == N_DETECTORS - round(SPEC.disabled_fraction * N_DETECTORS)
    grid_x, grid_y = np.nonzero(truth.enabled)
    assert np.all(grid_x % 18 < 16) and np.all(grid_y % 11 < 8)
    position = detx * N_DETY + dety
    pairs = np.unique(position * N_DETECTORS + events["DET_ID"])
    assert len(np.unique(events["DET_ID"])) == len(np.unique(position)) == len(pairs)


def test_background_rate_is_poisson_at_rate_hz():
    spec = SynthSpec(duration=30.0, n_glitches=2, seed=3)
    events, truth = synth_events(spec)
    expected = spec.rate_hz * spec.duration
    background = len(events) - truth.glitch_counts.sum()
    assert truth.n_events == len(events)
    assert abs(background - expected) < 5 * np.sqrt(expected)


def test_spectrum_falls_with_tails_below_15_and_above_350_kev(made):
    _, _, _, events, _ = made
    energy = events["ENERGY"].astype(float)
    assert 0.3 < np.mean(energy < 15) < 0.5  # ~40%: the real windows' share outside 15-350 keV
    assert 0.005 < np.mean(energy > 350) < 0.1
    edges = np.geomspace(30, 400, 8)
    per_kev = np.histogram(energy, edges)[0] / np.diff(edges)
    assert np.all(np.diff(per_kev) < 0)
    assert np.array_equal(events["PI"], np.rint(energy * 10).astype(int))
    busiest = Counter(events["DET_ID"].tolist()).most_common(1)[0][0]
    mine = events["DET_ID"] == busiest
    assert np.all(np.diff(events["PHA"][mine][np.argsort(events["ENERGY"][mine])]) >= 0)


def test_every_glitch_is_flagged_and_nothing_else(made):
    _, truth, _, events, gti = made
    assert len(truth.glitch_times) == SPEC.n_glitches
    assert np.array_equal(np.sort(flagged_bins(events, gti)), truth.glitch_times)


@pytest.mark.parametrize(
    "spec",
    [
        SynthSpec(duration=12.0, n_gti=1, n_glitches=3, rate_hz=3000.0, seed=21),
        SynthSpec(duration=30.0, n_gti=3, n_glitches=6, n_grbs=1, rate_hz=9000.0, seed=22),
        SynthSpec(duration=20.0, n_gti=2, n_glitches=4, rate_hz=1500.0, gainapp=False, seed=23),
        SynthSpec(duration=25.0, n_gti=4, n_glitches=4, n_grbs=1, disabled_fraction=0.5, seed=24),
    ],
    ids=lambda spec: f"seed{spec.seed}",
)
def test_short_and_many_gtis_still_flag_exactly_the_glitches(spec):
    events, truth = synth_events(spec)
    assert len(truth.glitch_times) == spec.n_glitches
    assert np.array_equal(np.sort(flagged_bins(events, truth.gti)), truth.glitch_times)


def test_grbs_are_hard_whole_plane_bursts_seconds_long_and_not_flagged(made):
    _, truth, _, events, gti = made
    flagged = flagged_bins(events, gti)
    assert len(truth.grb_times) == SPEC.n_grbs
    assert all(not np.any(np.abs(flagged - peak) < 1.0) for peak in truth.grb_times)
    # Background and GRBs come from separate random streams: the difference is the GRB counts.
    quiet = replace(SPEC, n_glitches=0)
    with_grbs, _ = synth_events(quiet)
    without, _ = synth_events(replace(quiet, n_grbs=0))
    energy_with, energy_without = with_grbs["ENERGY"], without["ENERGY"]
    hard = np.count_nonzero(energy_with > 50) - np.count_nonzero(energy_without > 50)
    soft = np.count_nonzero(energy_with <= 25) - np.count_nonzero(energy_without <= 25)
    background_hardness = np.mean(energy_without > 50) / np.mean(energy_without <= 25)
    assert soft > 0 and hard / soft > 1.2 * background_hardness
    edges = np.arange(SPEC.tstart, SPEC.tstart + SPEC.duration + 0.25, 0.25)
    curve = np.histogram(with_grbs["TIME"], edges)[0] - np.histogram(without["TIME"], edges)[0]
    for peak in truth.grb_times:
        near = np.abs(edges[:-1] - peak) < 15
        assert np.count_nonzero(curve[near] > 0.2 * curve[near].max()) >= 4  # >= 1 s above 20%
    images = [
        np.histogram2d(e["DETX"], e["DETY"], (X_EDGES, Y_EDGES))[0] for e in (with_grbs, without)
    ]
    grb_image = images[0] - images[1]
    x, y = np.nonzero(grb_image)
    on_x, on_y = np.nonzero(truth.enabled)
    switched_on = np.unique((on_x // 18) * 16 + on_y // 11)
    assert len(np.unique((x // 18) * 16 + y // 11)) > 0.9 * len(switched_on)  # every sandwich
    assert grb_image.max() < 0.01 * grb_image.sum()  # and no hot spots


def test_glitches_are_short_low_energy_bursts(made):
    _, truth, _, events, _ = made
    time, energy = events["TIME"], events["ENERGY"]
    background_high = np.count_nonzero(energy > 50) / SPEC.duration * 0.016
    for t0, n in zip(truth.glitch_times, truth.glitch_counts, strict=True):
        in_bin = (time >= t0) & (time < t0 + 0.016)
        assert np.count_nonzero(in_bin & (energy <= 25)) >= n
        assert np.count_nonzero(in_bin & (energy > 50)) < background_high + 5 * np.sqrt(
            background_high
        )


def test_same_spec_same_bytes_and_every_target_kind(tmp_path):
    spec = SynthSpec(duration=10.0, n_glitches=2, n_grbs=1, seed=7)
    data, truth = event_file_bytes(spec)
    assert event_file_bytes(spec)[0] == data
    assert data[4:8] == b"\0\0\0\0"  # no gzip timestamp
    path = tmp_path / "sw00012345000bevshpo_uf.evt.gz"
    assert np.array_equal(write_event_file(path, spec).glitch_times, truth.glitch_times)
    assert path.read_bytes() == data
    sink = io.BytesIO()
    write_event_file(sink, spec)
    assert sink.getvalue() == data
    with fits.open(path) as hdus:
        assert len(hdus["EVENTS"].data) == truth.n_events
    other, other_truth = event_file_bytes(SynthSpec(duration=10.0, n_glitches=2, seed=8))
    assert other != data
    assert not np.array_equal(other_truth.glitch_times, truth.glitch_times)


def test_without_gain_correction_energy_is_off_by_a_few_kev():
    base = SynthSpec(duration=10.0, n_glitches=0, seed=5)
    corrected, _ = synth_events(base)
    raw_data, _ = event_file_bytes(SynthSpec(duration=10.0, n_glitches=0, seed=5, gainapp=False))
    with read(raw_data) as hdus:
        assert hdus["EVENTS"].header["GAINAPP"] is False
        assert hdus["EVENTS"].header["GAINMETH"] != "FIXEDDAC"
        table = hdus["EVENTS"].data
        raw = {name: np.array(table[name]) for name in table.columns.names}
    for column in ("TIME", "DET_ID", "PHA"):
        assert np.array_equal(raw[column], corrected[column])
    error = np.abs(raw["ENERGY"].astype(float) - corrected["ENERGY"])
    assert 0.3 < np.median(error) < 5
    assert np.mean(error > 0.05) > 0.9


def test_dpi_statistics_on_known_images():
    peaks = np.array([5, 20, 50])
    dpis = np.zeros((3, N_DETX, N_DETY))
    rng = np.random.default_rng(0)
    for dpi, peak in zip(dpis, peaks, strict=True):
        flat = dpi.reshape(-1)
        flat[rng.choice(flat.size, size=101, replace=False)] = 1
        flat[np.flatnonzero(flat)[0]] = peak
    stats = dpi_statistics(dpis)
    assert np.array_equal(stats["total"], peaks + 100)
    assert np.array_equal(stats["brightest"], peaks)
    assert stats["top10_share"] == pytest.approx((peaks + 9) / (peaks + 100))
    hot = np.zeros((1, N_DETX, N_DETY))
    hot[0, HOT_SET[0][0], HOT_SET[0][1]], hot[0, HOT_SET[1][0], HOT_SET[1][1]] = 4, 3
    hot[0, 200, 100] = 9  # not a glitch detector
    assert dpi_statistics(hot)["hot_set"].tolist() == [7.0]


def test_lowres_statistics_on_known_images():
    lowres = np.zeros((2, 16, 16, 2))
    lowres[0, 0, 0, 0], lowres[0, 3, 4, 1] = 6, 2
    lowres[1, :, :, 0] = 1
    stats = lowres_statistics(lowres)
    assert stats["soft_share"] == pytest.approx([0.75, 1.0])
    assert stats["empty_share"] == pytest.approx([510 / 512, 0.5])


@pytest.mark.parametrize(
    "bad",
    [
        {"obsid": "12345"},
        {"obsid": "0001234500a"},
        {"duration": 0.0},
        {"disabled_fraction": 1.0},
        {"n_glitches": -1},
    ],
)
def test_spec_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        SynthSpec(**bad)


def test_too_many_glitches_for_the_gtis_is_an_error():
    with pytest.raises(ValueError, match="glitches"):
        synth_events(SynthSpec(duration=2.0, n_glitches=20))


@pytest.fixture(scope="module")
def real() -> dict[str, dict[str, np.ndarray]]:
    """Per-window statistics of the real DPIs, by class (derived here: nothing real is copied)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("real reference data (../shared/data) not present")
    with np.load(SHARED_DATA / "real_glitch_grb_dpis.npz") as npz:
        return {
            label: dpi_statistics(npz["original"][npz["original_label"] == label])
            | lowres_statistics(npz["lowres"][npz["lowres_label"] == label])
            for label in ("GLITCH", "GRB")
        }


N_FILES = 16
# Background rates and masks vary between observations; the real windows come from many of them.
REAL_RATE_HZ, REAL_RATE_SPREAD = 5900.0, 0.12
REAL_DISABLED = (0.40, 0.62)  # share of detectors off: the example mask has 0.54


@pytest.fixture(scope="module")
def synthetic() -> dict[str, dict[str, np.ndarray]]:
    """The same statistics of synthetic windows: glitch files and GRB trigger files apart, as in
    the archive, at background rates spread like the real ones (~6-7 kHz)."""
    config = DetectionConfig()
    rng = np.random.default_rng(5)
    rates = REAL_RATE_HZ * np.exp(REAL_RATE_SPREAD * rng.standard_normal(N_FILES))
    disabled = rng.uniform(*REAL_DISABLED, N_FILES)
    tables: dict[str, list] = {"GLITCH": [], "GRB": []}
    for k, (rate, off) in enumerate(zip(rates, disabled, strict=True)):
        grb = k % 2 == 1
        spec = SynthSpec(
            duration=200.0, n_gti=1, rate_hz=float(rate), disabled_fraction=float(off),
            n_glitches=0 if grb else 6, n_grbs=4 if grb else 0, seed=500 + k,
        )  # fmt: skip
        events, truth = synth_events(spec)
        plain = EventList(
            events["TIME"].astype(float), events["DETX"].astype(np.int16),
            events["DETY"].astype(np.int16), events["ENERGY"].astype(np.float32), truth.gti, "synth",
        )  # fmt: skip
        if grb:
            tables["GRB"] += [grb_table(plain, t, config) for t in truth.grb_times]
        else:
            t0 = truth.glitch_times
            nan = np.full(t0.size, np.nan)
            windows = Windows(t0, t0 - config.pad_s, t0 + config.bin_s + config.pad_s, nan, nan)
            tables["GLITCH"].append(window_images(plain, windows, config))
    return {
        label: dpi_statistics(table.dpi) | lowres_statistics(table.dpi_lowres)
        for label, table in ((k, WindowTable.concat(v)) for k, v in tables.items())
    }


# Each statistic's tolerance at the 10th, 50th and 90th percentiles, absolute or (with %) relative
# to the real value. The README's table comes from this comparison.
TOLERANCES = {
    "total": ("15%", "10%", "40%"),
    "brightest": ("2", "2", "40%"),
    "top10_share": ("0.02", "0.02", "0.08"),
    "hot_set": ("10", "10", "15"),
    "soft_share": ("0.08", "0.08", "0.1"),
    "empty_share": ("0.1", "0.06", "0.1"),
}
PERCENTILES = (10, 50, 90)


def allowed(tolerance: str, real_value: float) -> float:
    if tolerance.endswith("%"):
        return float(tolerance[:-1]) / 100 * abs(real_value)
    return float(tolerance)


def comparison_rows(real, synthetic) -> list[tuple[str, str, float, float, bool]]:
    """(class, statistic, real, synthetic, within tolerance) per percentile."""
    rows = []
    for label in ("GLITCH", "GRB"):
        for name, tolerances in TOLERANCES.items():
            theirs = np.nanpercentile(real[label][name], PERCENTILES)
            ours = np.nanpercentile(synthetic[label][name], PERCENTILES)
            for a, b, tol in zip(theirs, ours, tolerances, strict=True):
                rows.append((label, name, float(a), float(b), abs(b - a) <= allowed(tol, a)))
    return rows


def test_synthetic_windows_match_the_real_ones(real, synthetic):
    """Prints the README's table (pytest -s): p10 / p50 / p90, real against synthetic."""
    rows = comparison_rows(real, synthetic)
    print("\n| class | statistic | real p10 / p50 / p90 | synthetic | tolerance |")
    print("|---|---|---|---|---|")
    for k in range(0, len(rows), len(PERCENTILES)):
        group = rows[k : k + len(PERCENTILES)]
        label, name = group[0][:2]
        print(
            f"| {label} | {name} | {' / '.join(f'{r[2]:.3g}' for r in group)} | "
            f"{' / '.join(f'{r[3]:.3g}' for r in group)} | ±{' / '.join(TOLERANCES[name])} |"
        )
    misses = [row for row in rows if not row[-1]]
    assert not misses, misses


def test_glitches_concentrate_on_the_hot_set_and_grbs_do_not(synthetic):
    glitch, grb = synthetic["GLITCH"], synthetic["GRB"]
    assert np.median(glitch["hot_set"]) > 10 * max(np.median(grb["hot_set"]), 1)
    assert np.median(glitch["top10_share"]) > 1.8 * np.median(grb["top10_share"])
    assert np.median(glitch["soft_share"]) > np.median(grb["soft_share"])
