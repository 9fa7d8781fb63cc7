"""The reference algorithm written plainly, step by step as DESIGN.md states it.

It is deliberately slow and obvious (np.histogram per GTI and band, a boolean mask per window,
histogram2d/histogramdd per window): the fast path must reproduce it array for array.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

X_EDGES = [*range(0, 271, 18), 285]
Y_EDGES = [*range(0, 166, 11), 172]
ENERGY_EDGES = [15, 50, 350]


def reference_rows(time, detx, dety, energy, gti) -> list[dict]:
    rows = []
    for start, stop in gti:
        edges = np.arange(start, stop + 0.016 / 2, 0.016)
        h_low, _ = np.histogram(time[energy <= 25.0], bins=edges)
        h_high, _ = np.histogram(time[energy > 50.0], bins=edges)
        with np.errstate(divide="ignore", invalid="ignore"):
            z_low = (h_low - np.mean(h_low)) / np.std(h_low)
            z_high = (h_high - np.mean(h_high)) / np.std(h_high)
        for i in range(len(h_low)):
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = z_low[i] / abs(z_high[i])
            if not (z_low[i] > 10 and ratio > 3):
                continue
            t0 = edges[i]
            t_min, t_max = t0 - 0.024, t0 + 0.016 + 0.024
            inside = (time >= t_min) & (time <= t_max)
            dpi, _, _ = np.histogram2d(
                detx[inside], dety[inside], bins=[np.arange(287) - 0.5, np.arange(174) - 0.5]
            )
            if not dpi.any():
                continue
            lowres, _ = np.histogramdd(
                (detx[inside], dety[inside], energy[inside]),
                bins=[X_EDGES, Y_EDGES, ENERGY_EDGES],
            )
            rows.append(
                {
                    "window_start": t_min,
                    "window_stop": t_max,
                    "snr_low": z_low[i],
                    "snr_ratio": ratio,
                    "n_events": int(inside.sum()),
                    "dpi": dpi,
                    "dpi_lowres": np.swapaxes(lowres, 0, 1),
                }
            )
    return rows


def reference_file(path) -> list[dict]:
    """The old workflow: astropy reads the (gzipped) file, once for EVENTS and once for GTI."""
    events = Table.read(path, hdu="EVENTS")
    gti = Table.read(path, hdu="GTI")
    return reference_rows(
        np.asarray(events["TIME"]),
        np.asarray(events["DETX"]),
        np.asarray(events["DETY"]),
        np.asarray(events["ENERGY"]),
        list(zip(gti["START"], gti["STOP"], strict=True)),
    )


def reference_grb_row(time, detx, dety, energy, trigtime) -> dict:
    """The GRB notebook: events with TRIGTIME <= TIME <= TRIGTIME + 0.064, both resolutions."""
    t_min, t_max = trigtime, trigtime + 0.064
    inside = (time >= t_min) & (time <= t_max)
    dpi, _, _ = np.histogram2d(
        detx[inside], dety[inside], bins=[np.arange(287) - 0.5, np.arange(174) - 0.5]
    )
    lowres, _ = np.histogramdd(
        (detx[inside], dety[inside], energy[inside]), bins=[X_EDGES, Y_EDGES, ENERGY_EDGES]
    )
    return {
        "window_start": t_min,
        "window_stop": t_max,
        "n_events": int(inside.sum()),
        "dpi": dpi,
        "dpi_lowres": np.swapaxes(lowres, 0, 1),
    }


def reference_grb_file(path) -> dict:
    """The GRB notebook on a trigger's event file: astropy reads it, TRIGTIME from EVENTS."""
    events = Table.read(path, hdu="EVENTS")
    return reference_grb_row(
        np.asarray(events["TIME"]),
        np.asarray(events["DETX"]),
        np.asarray(events["DETY"]),
        np.asarray(events["ENERGY"]),
        events.meta["TRIGTIME"],
    )
