"""The baseline's report on an archive: one line per resolution and a picture to look at."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from batglitch.learn.baseline import CLASSES, Evaluation, evaluate
from batglitch.store.reader import RESOLUTIONS, training_set

N_EXAMPLES = 3  # most glitch-like and most GRB-like windows shown


def evaluate_archive(ds: xr.Dataset) -> list[Evaluation]:
    """The baseline cross-validated on each resolution of the archive, grouped by obsid."""
    results = []
    for resolution in RESOLUTIONS:
        data = training_set(ds, resolution)
        results.append(evaluate(data.X, data.y, data.groups, resolution))
    return results


def evaluate_labelled_npz(path: str) -> list[Evaluation]:
    """The baseline on labelled DPIs saved outside an archive: an .npz with ``original`` /
    ``lowres`` image stacks and ``original_label`` / ``lowres_label`` (the layout of the real
    examples in ../shared/data). Without obsids the folds are stratified, not grouped."""
    results = []
    with np.load(path) as npz:
        for resolution in RESOLUTIONS:
            images = npz[resolution]
            X = images.reshape(len(images), -1).astype(np.float32)
            results.append(evaluate(X, npz[f"{resolution}_label"].astype(str), None, resolution))
    return results


def report_archive(ds: xr.Dataset, picture: str) -> list[Evaluation]:
    """Cross-validate the baseline on both resolutions and write the picture."""
    results = evaluate_archive(ds)
    labels = [
        f"{obsid} t={start:.3f}"
        for obsid, start in zip(ds["obsid"].values, ds["window_start"].values, strict=True)
    ]
    write_picture(results, ds["dpi"], labels, picture)
    return results


def write_picture(
    results: Sequence[Evaluation], dpis: np.ndarray, labels: Sequence[str], path: str
) -> None:
    """ROC curves, confusion matrices and the extreme windows of the first result.

    dpis are the (n, 286, 173) full-resolution images in row order (an xarray variable works, only
    the shown rows are read); labels name each row (e.g. obsid and time) for the titles.
    """
    fig = plt.figure(figsize=(14, 7.5))
    grid = fig.add_gridspec(2, 2 * N_EXAMPLES)
    roc = fig.add_subplot(grid[0, : N_EXAMPLES - 1])
    for result in results:
        roc.plot(result.fpr, result.tpr, label=f"{result.resolution} (AUC {result.roc_auc:.3f})")
    roc.plot([0, 1], [0, 1], color="grey", lw=0.6, ls="--")
    roc.set_xlabel("false GRB rate (glitches called GRB)", fontsize=8)
    roc.set_ylabel("true GRB rate", fontsize=8)
    roc.set_title("ROC, out-of-fold (grouped by obsid)", fontsize=9)
    roc.legend(fontsize=8, loc="lower right")
    for k, result in enumerate(results[:2]):
        ax = fig.add_subplot(grid[0, N_EXAMPLES - 1 + 2 * k : N_EXAMPLES + 1 + 2 * k])
        ax.imshow(result.confusion, cmap="Blues")
        for (i, j), n in np.ndenumerate(result.confusion):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=11)
        ax.set_xticks(range(2), [f"called {c}" for c in CLASSES], fontsize=8)
        ax.set_yticks(range(2), [f"is {c}" for c in CLASSES], fontsize=8)
        ax.set_title(f"{result.resolution}: accuracy {result.accuracy:.3f}", fontsize=9)
    first = results[0]
    order = np.argsort(first.scores, kind="stable")
    shown = [*order[:N_EXAMPLES], *order[::-1][:N_EXAMPLES]]
    for k, row in enumerate(shown):
        ax = fig.add_subplot(grid[1, k])
        image = np.asarray(dpis[int(row)], dtype=float)
        x, y = np.nonzero(image)
        ax.scatter(x, y, s=3 * image[x, y], c=image[x, y], cmap="plasma", linewidths=0)
        ax.set_xlim(-1, image.shape[0])
        ax.set_ylim(-1, image.shape[1])
        ax.set_facecolor("#f4f4f4")
        ax.tick_params(labelsize=6)
        kind = "most glitch-like" if k < N_EXAMPLES else "most GRB-like"
        ax.set_title(
            f"{kind}: is {first.y[row]}\n{labels[row]}\n"
            f"score {first.scores[row]:+.2f}, {int(image.sum())} counts",
            fontsize=7,
        )
    fig.suptitle("Baseline glitch-vs-GRB classifier (log1p, scaling, RBF SVM)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
