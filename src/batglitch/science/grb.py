"""The GRB class: the window of a BAT-triggered burst, as the authors' GRB notebook cut it.

Events with TRIGTIME <= TIME <= TRIGTIME + 0.064 of the trigger's event file (TRIGTIME from the
EVENTS header), binned at both resolutions exactly like a glitch window (DESIGN.md, GRB class).
"""

from __future__ import annotations

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
