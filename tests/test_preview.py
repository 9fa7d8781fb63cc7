"""The preview PNG: which windows it shows, and that it is a real picture of the right size."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from matplotlib.image import imread

from batglitch.preview import (
    DPI,
    FLAG_COLOURS,
    ROW_IN,
    WIDTH_IN,
    _figure,
    pick_windows,
    write_preview,
)
from batglitch.science.config import detector_plane
from batglitch.store.schema import FLAG_DISABLED, detector_flags

WIDTH_PX = round(WIDTH_IN * DPI)
ROW_PX = ROW_IN * DPI


def dataset(obsids: list[str], snr: list[float], seed: int = 0) -> xr.Dataset:
    """A training view as finalize writes it, reduced to what a preview reads."""
    rng = np.random.default_rng(seed)
    n = len(obsids)
    dpi = np.zeros((n, 286, 173), np.uint16)
    for i in range(n):
        dpi[i, rng.integers(0, 286, 40), rng.integers(0, 173, 40)] = rng.integers(1, 12, 40)
    return xr.Dataset(
        {
            "dpi": (("window", "detx", "dety"), dpi),
            "dpi_lowres": (
                ("window", "sand_y", "sand_x", "energy_band"),
                rng.poisson(3, (n, 16, 16, 2)).astype(np.uint16),
            ),
            **{
                name: (("window", "lc_bin"), rng.poisson(rate, (n, 64)).astype(np.int32))
                for name, rate in (
                    ("lightcurve", 30),
                    ("lightcurve_low", 20),
                    ("lightcurve_high", 5),
                )
            },
        },
        coords={
            "lc_bin": (np.arange(64) - 32) * 0.016,
            "obsid": ("window", np.array(obsids)),
            "window_start": ("window", 7.0e8 + np.arange(n, dtype=np.float64)),
            "window_start_utc": (
                "window",
                np.datetime64("2023-03-07T05:46:40", "ns") + np.arange(n) * 10**9,
            ),
            "trigger_type": ("window", np.array(["GBM GRB"] * n, dtype=object)),
            "snr_low": ("window", np.array(snr, dtype=np.float64)),
            "snr_ratio": ("window", np.full(n, 4.0)),
            "n_events": ("window", dpi.sum(axis=(1, 2), dtype=np.int64)),
        },
    )


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (3, [1, 3, 4]),  # the strongest window of each observation first
        (4, [0, 1, 3, 4]),  # then the strongest of the rest
        (9, [0, 1, 2, 3, 4]),  # never more than there are
    ],
)
def test_pick_windows(n, expected):
    ds = dataset(["A", "A", "B", "B", "C"], [5.0, 9.0, 1.0, 2.0, 7.0])
    assert pick_windows(ds, n).tolist() == expected


def test_preview_is_a_png_with_one_row_per_window(tmp_path):
    path = tmp_path / "preview.png"
    assert write_preview(dataset(["A", "B", "C"], [12.0, 30.0, 11.0]), str(path), n=2) == 2
    image = imread(path)
    assert image.shape == (round(2 * ROW_PX), WIDTH_PX, 4)
    assert image[..., :3].std() > 0.05  # a drawing, not a blank canvas


def test_preview_of_an_empty_archive_says_so(tmp_path):
    path = tmp_path / "empty.png"
    assert write_preview(dataset([], []), str(path)) == 0
    assert imread(path).shape == (round(ROW_PX), WIDTH_PX, 4)


def test_a_single_hot_detector_shows(tmp_path):
    """The reason for dots: one hot detector must not vanish in a downsampled image."""
    quiet = dataset(["A"], [12.0])
    quiet["dpi"][:] = 0
    quiet["dpi"][0, 5, 5] = 9  # the same colour scale in both pictures
    hot = quiet.copy(deep=True)
    hot["dpi"][0, 150, 90] = 9
    paths = [tmp_path / "quiet.png", tmp_path / "hot.png"]
    for ds, path in zip((quiet, hot), paths, strict=True):
        write_preview(ds, str(path), n=1)
    quiet_image, hot_image = (imread(p)[..., :3] for p in paths)
    left = slice(0, WIDTH_PX // 3)  # the DPI panel
    rows, cols = np.nonzero(np.abs(hot_image[:, left] - quiet_image[:, left]).max(axis=2) > 0.2)
    away = cols > WIDTH_PX // 12  # the DPI's far left holds the dot both pictures share
    rows, cols = rows[away], cols[away]
    assert len(rows) >= 9  # more than a pixel's worth
    assert np.ptp(rows) < 20 and np.ptp(cols) < 20  # in one spot: the dot, nothing else


def test_disabled_detectors_are_drawn_from_the_rows_flags(tmp_path):
    """A sandwich disabled in detector_flags turns its patch of the DPI panel grey; with the map
    unknown (or an archive made before the column) the same patch stays white."""
    old = dataset(["A"], [12.0])
    old["dpi"][:] = 0
    unknown = old.copy()
    unknown["detector_flags"] = (
        ("window", "detx", "dety"),
        detector_flags(detector_plane(), None, np.zeros(1)),
    )
    enabled = detector_plane()
    enabled[144:160, 88:96] = False  # sandwich (x 8, y 8) off
    masked = old.copy()
    masked["detector_flags"] = (
        ("window", "detx", "dety"),
        detector_flags(detector_plane(), enabled[None], np.zeros(1)),
    )
    grey = np.array(FLAG_COLOURS(FLAG_DISABLED)[:3])
    shares, labels = [], []
    for name, ds in (("old", old), ("unknown", unknown), ("masked", masked)):
        write_preview(ds, str(tmp_path / f"{name}.png"), n=1)
        panel = imread(tmp_path / f"{name}.png")[:, : WIDTH_PX // 3, :3]
        shares.append(int((np.abs(panel - grey).max(axis=2) < 0.02).sum()))
        labels.append(_figure(ds, np.array([0])).axes[0].get_xlabel())
    assert shares[0] == shares[1]  # no column and an unknown map draw alike
    assert shares[2] - shares[1] > 100  # a patch of the panel, not a pixel of text
    assert "enable map unknown" in labels[0] and "enable map unknown" in labels[1]
    assert f"{16 * 8} detectors disabled" in labels[2]
