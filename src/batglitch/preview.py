"""A picture of an archive a scientist can check: for a few windows, both DPIs and the light
curves the detection looked at, on colour scales shared across rows."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from batglitch.science.config import N_DETX, N_DETY, DetectionConfig, detector_plane
from batglitch.store.schema import FLAG_DISABLED, FLAG_UNKNOWN, detector_flags

WIDTH_IN, ROW_IN, DPI = 16.0, 3.4, 90  # figure inches and dots per inch: the PNG's pixel size
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9}
# detector_flags in order (unknown, enabled, disabled, gap): detectors white, disabled ones mid
# grey (light enough that dots on them stay visible), the gaps a paler grey
FLAG_COLOURS = ListedColormap(["white", "white", "#b3b3b3", "#e3e3e3"])


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


def _utc(value: np.datetime64 | float) -> str:
    if isinstance(value, np.datetime64) and not np.isnat(value):
        return np.datetime_as_string(value, unit="ms").replace("T", " ") + " UTC"
    return "UTC unknown"


def _title(window: xr.Dataset) -> str:
    kind = str(window["trigger_type"].values) or "no GUANO trigger"
    return (
        f"obsid {window['obsid'].values}  ·  {kind}\n"
        f"{_utc(window['window_start_utc'].values)}  (MET {float(window['window_start']):.3f})"
    )


def write_preview(ds: xr.Dataset, path: str, n: int = 6) -> int:
    """Write a PNG grid (one row per window); returns the number of windows shown."""
    rows = pick_windows(ds, n) if ds.sizes["window"] else np.array([], dtype=int)
    with plt.rc_context(STYLE):
        fig = _figure(ds, rows)
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
    return len(rows)


def _figure(ds: xr.Dataset, rows: np.ndarray) -> Figure:
    n_rows = max(len(rows), 1)
    fig, axes = plt.subplots(
        n_rows, 4, figsize=(WIDTH_IN, ROW_IN * n_rows), squeeze=False, layout="constrained",
        gridspec_kw={"width_ratios": [1.75, 1, 1, 1.6]},
    )  # fmt: skip
    fig.suptitle(
        f"batglitch archive: {ds.sizes['window']} windows; showing {len(rows)} "
        "(the strongest of each observation first)",
        fontsize=12,
    )
    if not len(rows):
        for ax in axes[0]:
            ax.set_axis_off()
        axes[0, 0].text(
            0, 0.5, "This archive has no glitch windows yet: nothing to show.\n"
            "Run `batglitch run` (or `demo`) over a date range to add some.",
            va="center", fontsize=12, transform=axes[0, 0].transAxes,
        )  # fmt: skip
        return fig
    # one colour scale per kind of panel, shared by every row, so rows compare at a glance
    dpi_max = max(int(ds["dpi"][rows].max()), 1)
    lowres_max = max(int(ds["dpi_lowres"][rows].max()), 1)
    plane = detector_plane()
    offsets = np.asarray(ds["lc_bin"].values, dtype=np.float64)  # s from the flagged bin
    config = DetectionConfig()
    for ax_row, i in zip(axes, rows, strict=True):
        window = ds.isel(window=int(i))
        _dpi_panel(fig, ax_row[0], window, plane, dpi_max)
        _lowres_panels(fig, ax_row[1:3], window, lowres_max, config)
        _lightcurve_panel(ax_row[3], window, offsets, config)
    return fig


def _dpi_panel(fig: Figure, ax: Axes, window: xr.Dataset, plane: np.ndarray, vmax: int) -> None:
    if "detector_flags" in window:
        flags = window["detector_flags"].values
    else:  # an archive made before the column: the gaps are known all the same
        flags = detector_flags(plane, None, np.zeros(1))[0]
    ax.imshow(flags.T, origin="lower", cmap=FLAG_COLOURS, vmin=-0.5, vmax=3.5,
              interpolation="nearest", aspect="auto",
              extent=(-0.5, N_DETX - 0.5, -0.5, N_DETY - 0.5))  # fmt: skip
    disabled = int((flags == FLAG_DISABLED).sum())
    known = (flags[plane] != FLAG_UNKNOWN).any()  # gaps are known without any map
    mask = f"{disabled} detectors disabled (grey)" if known else "enable map unknown"
    detx, dety = np.nonzero(window["dpi"].values)
    counts = window["dpi"].values[detx, dety]
    # dots sized by counts: single hot detectors vanish when a 286x173 image is downsampled
    dots = ax.scatter(detx, dety, s=5 + 3 * counts, c=counts, cmap="plasma", vmin=0, vmax=vmax,
                      linewidths=0)  # fmt: skip
    fig.colorbar(dots, ax=ax, label="counts per detector", pad=0.01)
    ax.set_xlim(-0.5, N_DETX - 0.5)
    ax.set_ylim(-0.5, N_DETY - 0.5)
    ax.set_xlabel(f"DETX   ({mask}; gaps pale grey)")  # beside the plane, hiding no detector
    ax.set_ylabel("DETY")
    ax.set_title(f"{_title(window)}\n{int(window['n_events'])} counts in 64 ms, all energies")


def _lowres_panels(
    fig: Figure, axes: np.ndarray, window: xr.Dataset, vmax: int, config: DetectionConfig
) -> None:
    edges = config.lowres_energy_edges
    image = None
    for band, ax in enumerate(axes):
        image = ax.imshow(window["dpi_lowres"].values[..., band], origin="lower", cmap="viridis",
                          vmin=0, vmax=vmax, interpolation="nearest")  # fmt: skip
        ax.set_title(f"{edges[band]:g}-{edges[band + 1]:g} keV, per sandwich")
        ticks = np.arange(0, 16, 5)
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xlabel("sandwich x")
        ax.set_ylabel("sandwich y" if band == 0 else "")
    fig.colorbar(image, ax=list(axes), label="counts per sandwich", pad=0.01, shrink=0.9)


def _lightcurve_panel(
    ax: Axes, window: xr.Dataset, offsets: np.ndarray, config: DetectionConfig
) -> None:
    pad, width = config.pad_s, config.bin_s
    ax.axvspan(-pad, width + pad, color="0.85", label="64 ms window")
    ax.axvspan(0, width, color="tab:red", alpha=0.35, label="flagged 16 ms bin")
    end = offsets[-1] + width
    for name, label, style in (
        ("lightcurve", "all energies", {"color": "0.4", "lw": 0.8}),
        ("lightcurve_low", f"<= {config.low_energy_max_kev:g} keV", {"color": "tab:blue"}),
        ("lightcurve_high", f"> {config.high_energy_min_kev:g} keV", {"color": "tab:orange"}),
    ):
        counts = window[name].values
        ax.stairs(counts, np.append(offsets, end), label=label, **style)
    ax.set_xlim(offsets[0], end)
    ax.set_ylim(0, 1.6 * max(int(window["lightcurve"].max()), 1))  # room for the legend
    ax.set_xlabel("s from the flagged bin's start")
    ax.set_ylabel("counts per 16 ms")
    ax.set_title(
        f"light curves: z_low = {float(window['snr_low']):.1f}, "
        f"z_low/|z_high| = {float(window['snr_ratio']):.1f}"
    )
    ax.legend(loc="upper right", framealpha=0.9)
