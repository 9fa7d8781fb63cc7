"""Planning a multi-year range against a Swift API that takes LATENCY_S to answer each request.

Run ``python benchmarks/bench_plan.py``. A six-year range (~10,000 GUANO dumps, the recorded rates
of 2-7 a day) is planned against the fake Swift API with its per-request latency knob at 1 s (old
docs say the real one takes 10-20 s), archived observations listed under a local archive root and
the last few on quick-look only. Two ways:
- old: what the planner did before (swifttools 4.0.5 paging each 7-day window by offset, plus one
  Data request per obsid, 4 at a time). It would take most of an hour here, so it runs on the
  first OLD_SUBSET_DAYS and is extrapolated per window and per obsid (printed as such);
- new: batglitch.pipeline.plan.plan: GUANO windows 4 at a time, one listing per (root, month),
  the Data API only for obsids no listing holds.
Before any figure is printed, both ways must find the same obsids on the subset, and the new plan
every obsid of the range.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

from batglitch.pipeline.plan import PlanOptions, plan
from batglitch.sources.guano import time_windows
from batglitch.sources.retry import RetryPolicy
from batglitch.standins import FakeObservation, FakeSwiftAPI, Knobs, fake_observations

BEGIN, END = datetime(2020, 1, 1), datetime(2026, 1, 1)
N_OBSIDS = 8300  # with 20% of them holding 2-3 dumps: ~10,000 dumps
QUICKLOOK = 40  # the newest observations: not archived yet
LATENCY_S = 1.0
OLD_SUBSET_DAYS = 28
OLD_WINDOW = timedelta(days=7)
OLD_PAGE, OLD_WORKERS = 100, 4


def world() -> list[FakeObservation]:
    observations = fake_observations(BEGIN, END, N_OBSIDS, seed=2, not_archived_fraction=0.0)
    newest = {o.obsid for o in observations[-QUICKLOOK:]}
    return [FakeObservation(o.obsid, o.dumps, archived=o.obsid not in newest) for o in observations]


def archive_root(observations: list[FakeObservation], root: Path) -> Path:
    """The archive's folder per observation (all a listing sees), under its start month."""
    for o in observations:
        if o.archived:
            (root / f"swift/data/obs/{o.month}/{o.obsid}").mkdir(parents=True, exist_ok=True)
    return root


def old_way(api_url: str, begin: datetime, end: datetime) -> set[str]:
    """The planner before: swifttools, offset paging per 7-day window, a Data request per obsid."""
    from swifttools.swift_too import GUANO, Data
    from swifttools.swift_too.base.common import TOOAPIBaseclass as Base

    Base._api_base = api_url
    obsids: set[str] = set()
    for w0, w1 in time_windows(begin, end, OLD_WINDOW):
        offset = 0
        while True:
            page = GUANO(begin=w0, end=w1, limit=OLD_PAGE, offset=offset)
            assert page.status.status == "Accepted", page.status.errors
            obsids |= {e.obs_id for e in page.entries if e.obs_id}
            if len(page.entries) < OLD_PAGE:
                break
            offset += OLD_PAGE

    def data(obsid: str) -> None:
        Data(obs_id=obsid, bat=True, auxil=False, fetch=False)

    with ThreadPoolExecutor(max_workers=OLD_WORKERS) as pool:
        list(pool.map(data, sorted(obsids)))
    return obsids


def new_way(api: FakeSwiftAPI, root: Path, begin: datetime, end: datetime):
    options = PlanOptions(
        api_url=api.url,
        roots=(str(root),),
        quicklook=(api.quicklook_url,),
        policy=RetryPolicy(timeout_s=30.0),
    )
    return plan(begin, end, options)


def measure(api: FakeSwiftAPI, run, archived: set[str]) -> tuple[float, int, int, int]:
    """Wall seconds, Swift API requests, Data requests, and those about archived obsids."""
    before = len(api.requests)
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    data = [q["obs_id"][0] for p, q in api.requests[before:] if p == "/swift/data"]
    return seconds, len(api.requests) - before, len(data), sum(o in archived for o in data)


def main() -> None:
    observations = world()
    dumps = sum(len(o.dumps) for o in observations)
    archived_ids = {o.obsid for o in observations if o.archived}
    subset_end = BEGIN + timedelta(days=OLD_SUBSET_DAYS)
    in_subset = {o.obsid for o in observations if o.dumps[0].trigger_utc < subset_end}
    print(
        f"{BEGIN.date()} .. {END.date()}: {len(observations)} obsids, {dumps} dumps, "
        f"{len(archived_ids)} archived; every Swift API request waits {LATENCY_S:.1f} s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    with TemporaryDirectory() as tmp, FakeSwiftAPI(observations, knobs=Knobs(latency_s=0)) as fast:
        root = archive_root(observations, Path(tmp))
        # correctness first, without latency: the same obsids both ways on the subset
        assert old_way(fast.url, BEGIN, subset_end) == in_subset
        assert {e.obsid for e in new_way(fast, root, BEGIN, subset_end).entries} == in_subset
        with FakeSwiftAPI(observations, knobs=Knobs(latency_s=LATENCY_S)) as api:
            old_s, old_requests, old_data, _ = measure(
                api, lambda: old_way(api.url, BEGIN, subset_end), archived_ids
            )
            result: list = []
            new_s, new_requests, new_data, new_data_archived = measure(
                api, lambda: result.append(new_way(api, root, BEGIN, END)), archived_ids
            )
    [planned] = result
    assert {e.obsid for e in planned.entries} == {o.obsid for o in observations}
    quicklook = [e for e in planned.entries if not e.archived]
    assert len(quicklook) == QUICKLOOK

    windows_all = len(list(time_windows(BEGIN, END, OLD_WINDOW)))
    windows_subset = len(list(time_windows(BEGIN, subset_end, OLD_WINDOW)))
    guano_subset = old_requests - old_data
    # the old way's cost grows with the windows (GUANO pages) and with the obsids (Data)
    old_guano_all = guano_subset * windows_all / windows_subset
    old_data_all = len(observations)
    old_s_all = old_s * (guano_subset / old_requests) * windows_all / windows_subset + old_s * (
        old_data / old_requests
    ) * len(observations) / len(in_subset)
    print(
        f"old way, measured on the first {OLD_SUBSET_DAYS} days ({len(in_subset)} obsids): "
        f"{old_requests} requests ({old_data} Data), {old_s:.1f} s"
    )
    rows = [
        ("old way (extrapolated)", old_guano_all + old_data_all, old_data_all, 1.0, old_s_all),
        (
            "new way (measured)",
            new_requests,
            new_data,
            new_data_archived / len(archived_ids),
            new_s,
        ),
    ]
    print(f"{'6-year plan':<24}{'API requests':>14}{'Data':>8}{'Data/archived':>15}{'wall s':>10}")
    for name, requests, data, per_archived, seconds in rows:
        print(f"{name:<24}{requests:>14.0f}{data:>8}{per_archived:>15.3f}{seconds:>10.1f}")
    print(
        f"new / old: {new_requests / (old_guano_all + old_data_all):.3f} of the requests, "
        f"{new_s / old_s_all:.3f} of the wall time; listings: {planned.listings} "
        f"(root, month) pairs; target: 0 Data requests per archived obsid, under 300 s"
    )


if __name__ == "__main__":
    main()
