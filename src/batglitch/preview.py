"""A picture of an archive: for a few windows, both DPIs and the 16 ms light curve around them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr


def pick_windows(ds: xr.Dataset, n: int) -> np.ndarray:
    """The strongest window of each of the first observations, then the next strongest overall."""
    snr = ds["snr_low"].values
    obsids = np.asarray(ds["obsid"].values, dtype=object)
    order = np.argsort(-snr, kind="stable")
    seen: set[str] = set()
    strongest_per_obsid = []
    for i in order:
        if obsids[i] not in seen:
            seen.add(obsids[i])
            strongest_per_obsid.append(i)
    chosen = list(dict.fromkeys([*strongest_per_obsid, *order]))[:n]
    return np.array(sorted(chosen), dtype=int)


def write_preview(ds: xr.Dataset, path: str, n: int = 6) -> int:
    """Write a PNG grid (one row per window); returns the number of windows shown."""
    rows = pick_windows(ds, n) if ds.sizes["window"] else np.array([], dtype=int)
    fig, axes = plt.subplots(
        max(len(rows), 1), 4, figsize=(15, 2.6 * max(len(rows), 1)), squeeze=False,
        gridspec_kw={"width_ratios": [1.7, 1, 1, 1.6]},
    )  # fmt: skip
    if not len(rows):
        axes[0, 0].text(0.5, 0.5, "archive has no windows", ha="center", va="center")
    offsets = ds["lc_time_offset"].values if "lc_time_offset" in ds else None
    for ax_row, i in zip(axes, rows, strict=False):
        window = ds.isel(window=int(i))
        title = f"{window.obsid.values} t={float(window.window_start):.3f}"
        detx, dety = np.nonzero(window.dpi.values)
        counts = window.dpi.values[detx, dety]
        # dots sized by counts: single hot detectors vanish when a 286x173 image is downsampled
        ax_row[0].scatter(detx, dety, s=4 * counts, c=counts, cmap="plasma", linewidths=0)
        ax_row[0].set_xlim(-1, 286)
        ax_row[0].set_ylim(-1, 173)
        ax_row[0].set_facecolor("#f4f4f4")
        ax_row[0].set_title(
            f"{title}\nDPI (DETX x DETY), {int(window.n_events)} counts", fontsize=8
        )
        for band, ax in enumerate(ax_row[1:3]):
            ax.imshow(window.dpi_lowres.values[..., band], origin="lower", cmap="viridis")
            ax.set_title(["15-50 keV", "50-350 keV"][band] + " sandwiches", fontsize=8)
        lc = window.lightcurve.values
        x = offsets if offsets is not None else np.arange(len(lc))
        ax_row[3].step(x, lc, where="post", color="k", lw=0.8)
        ax_row[3].axvspan(0, 0.016, color="tab:red", alpha=0.3, label="flagged 16 ms bin")
        ax_row[3].set_title(f"16 ms light curve, z_low={float(window.snr_low):.1f}", fontsize=8)
        ax_row[3].set_xlabel("s from flagged bin", fontsize=7)
        ax_row[3].legend(fontsize=6, loc="upper right")
        for ax in ax_row:
            ax.tick_params(labelsize=6)
    fig.suptitle(
        f"batglitch archive: {ds.sizes['window']} windows, showing {len(rows)}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return len(rows)
