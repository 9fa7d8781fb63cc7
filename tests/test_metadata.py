"""Per-window UTC times and the GUANO dump each window belongs to."""

from __future__ import annotations

import numpy as np

from batglitch.science.config import N_DETX, N_DETY
from batglitch.science.dpi import WindowTable
from batglitch.science.metadata import window_metadata


def table(starts: list[float]) -> WindowTable:
    """Rows with only the times set: window_metadata reads nothing else."""
    start = np.array(starts, dtype=np.float64)
    n = len(start)
    return WindowTable(
        window_start=start,
        window_stop=start + 0.064,
        snr_low=np.zeros(n),
        snr_ratio=np.zeros(n),
        n_events=np.zeros(n, np.int64),
        dpi=np.zeros((n, N_DETX, N_DETY), np.uint16),
        dpi_lowres=np.zeros((n, 16, 16, 2), np.uint16),
        lightcurve=np.zeros((n, 64), np.int32),
        lightcurve_low=np.zeros((n, 64), np.int32),
        lightcurve_high=np.zeros((n, 64), np.int32),
    )


def dump(trigger_met: float, kind: str, offset: float = 0.0, duration: float = 200.0) -> dict:
    return {"trigger_met": trigger_met, "triggertype": kind, "offset": offset, "duration": duration}


def test_without_dumps_only_utc_times_are_known():
    meta = window_metadata(table([7.0e8, 7.0e8 + 1.5]), utcf=-25.5)
    assert np.array_equal(meta["window_start_utc"], np.array([7.0e8, 7.0e8 + 1.5]) - 25.5)
    assert list(meta["trigger_type"]) == ["", ""]
    assert np.isnan(meta["trigger_time_utc"]).all()
    assert meta["trigger_type"].dtype.kind == "U"  # plain strings, no object arrays


def test_windows_take_the_dump_whose_data_holds_them():
    # Dump data spans trigger + offset -/+ duration / 2 (the GUANO convention).
    dumps = [dump(1000.0, "GBM"), dump(5000.0, "LVK", offset=30.0, duration=90.0)]
    starts = [950.0, 1099.0, 4990.0, 5070.0]
    meta = window_metadata(table(starts), utcf=-20.0, triggers=dumps)
    assert list(meta["trigger_type"]) == ["GBM", "GBM", "LVK", "LVK"]
    assert np.array_equal(meta["trigger_time_utc"], np.array([1000, 1000, 5000, 5000]) - 20.0)


def test_a_window_outside_every_dump_takes_the_nearest():
    dumps = [dump(1000.0, "GBM", duration=90.0), dump(3000.0, "EP", duration=90.0)]
    meta = window_metadata(table([1500.0, 2500.0, 9000.0]), utcf=0.0, triggers=dumps)
    assert list(meta["trigger_type"]) == ["GBM", "EP", "EP"]


def test_an_early_window_of_a_dump_is_not_given_to_the_previous_dump():
    dumps = [dump(1000.0, "GBM"), dump(1300.0, "FRB")]  # data 900..1100 and 1200..1400
    meta = window_metadata(table([1210.0]), utcf=0.0, triggers=dumps)
    assert list(meta["trigger_type"]) == ["FRB"]


def test_no_windows_gives_empty_columns():
    meta = window_metadata(table([]), utcf=-25.0, triggers=[dump(1000.0, "GBM")])
    assert all(len(v) == 0 for v in meta.values())
