"""The GRB class: the window of a BAT-triggered burst, as the authors' GRB notebook cut it.

Events with TRIGTIME <= TIME <= TRIGTIME + 0.064 of the trigger's event file (TRIGTIME from the
EVENTS header), binned at both resolutions exactly like a glitch window (DESIGN.md, GRB class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from batglitch.errors import EventFileError
from batglitch.science.config import DetectionConfig
from batglitch.science.dpi import WindowTable, window_images
from batglitch.science.events import EventList
from batglitch.science.glitches import Windows, time_sorted

GLITCH, GRB = "GLITCH", "GRB"  # the two classes of the training set


def trigger_time(events: EventList) -> float:
    """TRIGTIME of a BAT trigger's event file, in MET seconds."""
    value = events.header.get("TRIGTIME")
    if not isinstance(value, int | float) or not np.isfinite(value):
        raise EventFileError(events.source, f"no usable TRIGTIME ({value!r})", events.obsid)
    return float(value)


def grb_table(
    events: EventList, trigtime: float | None = None, config: DetectionConfig | None = None
) -> WindowTable:
    """The one GRB window of a trigger's event file (none when it holds no events); trigtime
    defaults to the file's TRIGTIME. snr_low and snr_ratio are NaN: nothing was flagged."""
    config = config or DetectionConfig()
    start = np.array([trigger_time(events) if trigtime is None else float(trigtime)])
    nan = np.full(1, np.nan)
    windows = Windows(
        t0=start, start=start, stop=start + config.grb_window_s, snr_low=nan, snr_ratio=nan
    )
    return window_images(time_sorted(events), windows, config)


def burst_columns(
    window_start: np.ndarray,
    window_stop: np.ndarray,
    label: str,
    bursts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, np.ndarray]:
    """label, burst_name, trigger_id and in_burst of each window of one observation.

    bursts: catalogued bursts as dicts with name, trigger_id, begin and end (MET s: the span in
    which a glitch candidate is suspect of being that burst). A GRB window belongs to its
    trigger's burst (the first); a GLITCH window overlapping a burst's span names it and is
    flagged in_burst, the earliest burst winning where spans overlap.
    """
    n = len(window_start)
    name = np.full(n, "", dtype=object)
    trigger_id = np.full(n, -1, dtype=np.int64)
    in_burst = np.zeros(n, dtype=bool)
    if label == GRB:
        if bursts:
            name[:], trigger_id[:], in_burst[:] = bursts[0]["name"], bursts[0]["trigger_id"], True
    elif label == GLITCH:
        for burst in reversed(bursts):
            hit = (window_stop >= burst["begin"]) & (window_start <= burst["end"])
            name[hit], trigger_id[hit], in_burst[hit] = burst["name"], burst["trigger_id"], True
    else:
        raise ValueError(f"label must be {GLITCH} or {GRB}, not {label!r}")
    return {
        "label": np.full(n, label),
        "burst_name": name.astype(str),
        "trigger_id": trigger_id,
        "in_burst": in_burst,
    }
