"""Per-window descriptive coordinates: UTC times and the GUANO trigger each window belongs to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from batglitch.science.dpi import WindowTable


def window_metadata(
    table: WindowTable, *, utcf: float, triggers: Sequence[dict[str, Any]] = ()
) -> dict[str, np.ndarray]:
    """UTC start time and trigger type/time (and the time base GUANO gave it in, a trigger's
    "time_base") for every window of one observation.

    A window belongs to the GUANO dump whose data, trigger + offset -/+ duration / 2, contains it; when
    none does (hand-ingested files, padding at the edges) the nearest dump is used, and without any
    dump the trigger fields are empty / NaN.
    """
    n = len(table)
    trigger_type = np.full(n, "", dtype=object)
    trigger_met = np.full(n, np.nan)
    time_base = np.full(n, "", dtype=object)
    if triggers and n:
        # GUANO sends null for an unknown offset or duration
        centre_met = np.array([t["trigger_met"] + float(t.get("offset") or 0.0) for t in triggers])
        half = np.array([float(t.get("duration") or 0.0) for t in triggers]) / 2
        begin, end = centre_met - half, centre_met + half
        centre = (table.window_start + table.window_stop) / 2
        distance = np.maximum(begin[None, :] - centre[:, None], centre[:, None] - end[None, :])
        nearest = np.argmin(np.maximum(distance, 0.0), axis=1)
        trigger_type[:] = [str(triggers[i].get("triggertype", "")) for i in nearest]
        trigger_met = np.array([float(triggers[i]["trigger_met"]) for i in nearest])
        time_base[:] = [str(triggers[i].get("time_base", "")) for i in nearest]
    return {
        "window_start_utc": table.window_start + utcf,
        "trigger_type": trigger_type.astype(str),
        "trigger_time_utc": trigger_met + utcf,
        "trigger_time_base": time_base.astype(str),
    }
