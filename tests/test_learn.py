"""The learning room: arrays aligned with archive rows, the grouped baseline and its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from batglitch.learn import training_set
from batglitch.learn.baseline import CLASSES, evaluate
from batglitch.learn.report import evaluate_labelled_npz, write_picture

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def toy_archive(n_obsids: int = 12, per_obsid: int = 6, seed: int = 0, labels: bool = True):
    """Windows whose class shows the way real ones do: glitches pile low-energy counts into a few
    pipe-column detectors, GRBs spread counts over the plane; every third obsid is a GRB trigger."""
    rng = np.random.default_rng(seed)
    n = n_obsids * per_obsid
    obsid = np.repeat([f"{k:08d}000" for k in range(n_obsids)], per_obsid)
    label = np.where(np.repeat(np.arange(n_obsids) % 3 == 0, per_obsid), "GRB", "GLITCH")
    dpi = rng.poisson(0.01, (n, 286, 173)).astype(np.uint16)
    lowres = rng.poisson(0.6, (n, 16, 16, 2)).astype(np.uint16)
    glitch = label == "GLITCH"
    dpi[glitch, :4, 20:30] += rng.poisson(2.0, (int(glitch.sum()), 4, 10)).astype(np.uint16)
    lowres[glitch, :, 0, 0] += rng.poisson(4.0, (int(glitch.sum()), 16)).astype(np.uint16)
    grb = ~glitch  # GRBs raise the whole plane, at high energy too
    lowres[grb, :, :, 1] += rng.poisson(1.0, (int(grb.sum()), 16, 16)).astype(np.uint16)
    variables = {
        "dpi": (("window", "detx", "dety"), dpi),
        "dpi_lowres": (("window", "sand_y", "sand_x", "energy_band"), lowres),
        "obsid": ("window", obsid.astype(object)),
        "window_start": ("window", 7.0e8 + np.arange(n, dtype=float)),
        "trigger_type": ("window", np.full(n, "GBM GRB", dtype=object)),
    }
    if labels:
        variables["label"] = ("window", label.astype(object))
    return xr.Dataset(variables)


@pytest.mark.parametrize("resolution, width", [("original", 286 * 173), ("lowres", 512)])
def test_training_set_rows_line_up_with_the_archive(resolution, width):
    ds = toy_archive()
    data = training_set(ds, resolution)
    assert data.X.shape == (ds.sizes["window"], width) and data.X.dtype == np.float32
    name = "dpi" if resolution == "original" else "dpi_lowres"
    assert np.array_equal(data.X[7], ds[name].values[7].ravel())
    assert data.y.tolist() == ds.label.values.tolist()
    assert data.groups.tolist() == ds.obsid.values.tolist()
    assert data.y.dtype.kind == data.groups.dtype.kind == "U"  # plain strings, npz-safe


def test_an_archive_without_labels_is_all_glitches_and_bad_resolutions_are_refused():
    data = training_set(toy_archive(labels=False), "lowres")
    assert set(data.y) == {"GLITCH"}
    # rows published before the label column existed read as its fill value, ""
    ds = toy_archive()
    ds["label"].values[:6] = ""
    assert training_set(ds).y.tolist() == ["GLITCH"] * 6 + ds.label.values[6:].tolist()
    with pytest.raises(ValueError, match="resolution"):
        training_set(toy_archive(), "medium")


def test_the_baseline_separates_the_classes_and_a_shuffle_does_not():
    data = training_set(toy_archive(), "lowres")
    result = evaluate(data.X, data.y, data.groups, "lowres")
    assert result.n_folds == 4  # the GRB windows come from 4 obsids: one per fold
    assert result.accuracy > 0.9 and result.roc_auc > 0.95
    assert result.confusion.sum() == len(data.y)
    assert result.confusion.sum(axis=1).tolist() == [result.n_windows[c] for c in CLASSES]
    # labels shuffled across observations: nothing left to learn
    shuffled = np.random.default_rng(1).permutation(data.y)
    chance = evaluate(data.X, shuffled, data.groups, "lowres")
    assert chance.roc_auc < 0.8


def test_folds_never_split_an_observation():
    """A feature that names the obsid and a label that follows the obsid: a model that saw the
    obsid in training would score perfectly; grouped folds must not let it."""
    n_obsids, per_obsid = 10, 5
    groups = np.repeat(np.arange(n_obsids).astype(str), per_obsid)
    y = np.where(np.random.default_rng(4).random(n_obsids) < 0.5, "GRB", "GLITCH")
    y[:2] = ["GRB", "GLITCH"]
    X = np.eye(n_obsids)[np.repeat(np.arange(n_obsids), per_obsid)] * 5.0
    result = evaluate(X, np.repeat(y, per_obsid), groups, "toy")
    assert result.roc_auc < 0.8


def test_what_cannot_be_cross_validated_is_refused():
    data = training_set(toy_archive(labels=False), "lowres")
    with pytest.raises(ValueError, match="GRB"):
        evaluate(data.X, data.y, data.groups, "lowres")
    data = training_set(toy_archive(), "lowres")
    with pytest.raises(ValueError, match="single observation"):
        evaluate(data.X, data.y, np.full(len(data.y), "00000001000"), "lowres")


def test_the_picture_is_written(tmp_path: Path):
    ds = toy_archive()
    results = [evaluate(*(lambda d: (d.X, d.y, d.groups))(training_set(ds, r)), r)
               for r in ("original", "lowres")]  # fmt: skip
    path = tmp_path / "evaluation.png"
    write_picture(results, ds.dpi, [str(o) for o in ds.obsid.values], str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


@pytest.fixture(scope="module")
def real() -> dict:
    """The baseline on the real labelled DPIs, by resolution (what `evaluate --real` prints)."""
    path = SHARED_DATA / "real_glitch_grb_dpis.npz"
    if not path.is_file():
        pytest.skip("real reference data (../shared/data) not present")
    return {result.resolution: result for result in evaluate_labelled_npz(str(path))}


@pytest.mark.parametrize("resolution", ["original", "lowres"])
def test_the_baseline_on_the_real_labelled_dpis(real, resolution):
    """The real windows carry no obsid: stratified folds. The figures go to the README."""
    result = real[resolution]
    print(f"\nreal {result.line()}")
    assert not result.grouped and sum(result.n_windows.values()) == len(result.y)
    assert result.accuracy > 0.9 and result.roc_auc > 0.93  # support vectors: the hard cases
