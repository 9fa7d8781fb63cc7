"""The local process pool: many processes on one archive, and re-runs of overlapping date ranges."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from batglitch import pool
from batglitch.pipeline.plan import PlanOptions, plan
from batglitch.pipeline.report import RunReport
from batglitch.sources.places import Places
from batglitch.standins import FakeSwiftAPI, Fault, fake_observations, fill_heasarc
from batglitch.standins.swift_api import FakeObservation
from batglitch.store.archive import Archive
from batglitch.store.keys import FRAGMENTS, PENDING
from batglitch.store.reader import open_archive, open_provenance

BEGIN, END = datetime(2024, 3, 1), datetime(2024, 4, 1)
PROVENANCE = {"attempt", "completed_at"}  # differ between any two runs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Twelve archived observations over March, some with several dumps; the API stays up."""
    heasarc = tmp_path_factory.mktemp("heasarc")
    observations = fake_observations(
        BEGIN, END, 12, seed=8, multi_dump_fraction=0.25, not_archived_fraction=0.0
    )
    fill_heasarc(str(heasarc), observations, rate_hz=500.0, duration=90.0, n_glitches=2)
    with FakeSwiftAPI(observations) as api:
        yield (
            observations,
            PlanOptions(api_url=api.url, roots=(str(heasarc),), quicklook=(api.quicklook_url,)),
        )


def run(store: str, begin: datetime, end: datetime, options: PlanOptions, **kwargs) -> RunReport:
    day = "%Y-%m-%d"
    return pool.run(
        begin.strftime(day), end.strftime(day), store, progress=False,
        options=options, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def serial(world, tmp_path_factory) -> tuple[str, RunReport]:
    """The whole range in one run on one process: what every other way must reproduce."""
    store = str(tmp_path_factory.mktemp("serial") / "a.zarr")
    return store, run(store, BEGIN, END, world[1], workers=1)


def in_range(obs: FakeObservation, begin: datetime, end: datetime) -> bool:
    return any(begin <= d.trigger_utc < end for d in obs.dumps)


def assert_each_row_once(store: str) -> tuple[xr.Dataset, xr.Dataset]:
    """Rows per obsid == its n_windows, (obsid, window_start) unique, nothing left pending; the
    view and the provenance in sorted order, so that archives published in different orders
    compare equal."""
    ds = open_archive(store)
    archive = Archive(store)
    done = archive.completions()
    rows = Counter(ds.obsid.values)
    assert {o: rows.get(o, 0) for o in done} == {o: c.n_windows for o, c in done.items()}
    assert set(rows) <= set(done)
    keys = list(zip(ds.obsid.values, ds.window_start.values, strict=True))
    assert len(set(keys)) == len(keys) == sum(c.n_windows for c in done.values())
    for prefix in (FRAGMENTS, PENDING):
        assert not [p for p in Path(archive.path(prefix)).rglob("*") if p.is_file()]
    return ds.sortby(["obsid", "window_start"]), open_provenance(store).sortby("obsid")


def assert_same_view(a: tuple[xr.Dataset, xr.Dataset], b: tuple[xr.Dataset, xr.Dataset]) -> None:
    """The same rows and the same provenance (except what differs between any two runs)."""
    for got, expected, changing in ((a[0], b[0], set()), (a[1], b[1], PROVENANCE)):
        assert set(got.variables) == set(expected.variables)
        for name in set(got.variables) - changing:
            equal_nan = got[name].dtype.kind == "f"
            assert np.array_equal(got[name].values, expected[name].values, equal_nan=equal_nan)
    changing = {"published_at", "snapshot_id", "run_id"}
    assert {k: v for k, v in a[0].attrs.items() if k not in changing} == {
        k: v for k, v in b[0].attrs.items() if k not in changing
    }


def test_eight_processes_on_one_archive_equal_one_process(world, serial, tmp_path):
    store = str(tmp_path / "a.zarr")
    report = run(store, BEGIN, END, world[1], workers=8)
    assert (report.planned, report.done, report.workers) == (12, 12, 8)
    summary = [
        [(r["obsid"], r["status"], r["n_windows"]) for r in x.results] for x in (report, serial[1])
    ]
    assert summary[0] == summary[1]
    view = assert_each_row_once(store)
    assert view[0].sizes["window"] == report.windows > 12
    assert_same_view(view, assert_each_row_once(serial[0]))


def test_overlapping_ranges_and_forced_reruns_add_nothing_twice(world, serial, tmp_path):
    observations, options = world
    first = (BEGIN, BEGIN + timedelta(days=18))
    second = (BEGIN + timedelta(days=12), END)
    expected = [{o.obsid for o in observations if in_range(o, *r)} for r in (first, second)]
    overlap = expected[0] & expected[1]
    assert overlap and expected[0] - expected[1] and expected[1] - expected[0]

    store = str(tmp_path / "a.zarr")
    report = run(store, *first, options, workers=1)
    assert (report.planned, report.done) == (len(expected[0]), len(expected[0]))
    report = run(store, *second, options, workers=1)
    assert report.skipped_complete == len(overlap)
    assert report.planned == len(expected[1] - expected[0])
    view = assert_each_row_once(store)
    assert set(view[1].obsid.values) == expected[0] | expected[1]
    assert_same_view(view, assert_each_row_once(serial[0]))

    before = Archive(store).completions()
    report = run(store, *second, options, workers=1, force=True)
    assert (report.planned, report.skipped_complete) == (len(expected[1]), 0)
    after = Archive(store).completions()
    assert all(after[o].attempt > before[o].attempt for o in expected[1])
    assert all(after[o] == before[o] for o in expected[0] - expected[1])
    assert_same_view(view, assert_each_row_once(store))


def test_run_coordinates_come_from_the_guano_dumps(world, serial):
    ds = open_archive(serial[0])
    by_obsid = {o.obsid: o for o in world[0]}
    assert ds.sizes["window"] > 0
    epoch = np.datetime64("2001-01-01T00:00:00", "ns")
    for obsid, met, utc, kind, trigger in zip(
        ds.obsid.values, ds.window_start.values, ds.window_start_utc.values,
        ds.trigger_type.values, ds.trigger_time_utc.values, strict=True,
    ):  # fmt: skip
        first = by_obsid[obsid].dumps[0]  # the event file covers the first dump's data
        expected = epoch + np.timedelta64(round((met + first.utcf) * 1e9), "ns")
        assert abs(utc - expected) <= np.timedelta64(1, "us")
        assert kind == first.triggertype
        assert abs(trigger - np.datetime64(first.trigger_utc, "ns")) <= np.timedelta64(1, "us")


def test_a_killed_pool_process_fails_its_obsid_not_the_run(world, tmp_path):
    entries = plan(BEGIN, END, world[1]).entries[:3]
    store = str(tmp_path / "a.zarr")
    path = "/ql/stuck.evt.gz"
    with FakeSwiftAPI([], faults=[Fault(path=path, delay_s=60.0)]) as slow:
        ql = dataclasses.replace(entries[0].files[0], urls=(f"{slow.url}{path}",), archived=False)
        stuck = dataclasses.replace(entries[0], files=(ql,))
        earlier = set(multiprocessing.active_children())  # not the pool's: leave them be
        with ThreadPoolExecutor(max_workers=1) as runner:
            running = runner.submit(
                pool.process_all,
                [stuck, *entries[1:]],
                store,
                2,
                places=Places.configured(world[1].roots, [slow.quicklook_url]),
                progress=False,
            )
            others = {e.obsid for e in entries[1:]}
            deadline = time.monotonic() + 120
            while not (
                slow.count(path) and {m["obsid"] for m in Archive(store).pending()} >= others
            ):
                assert time.monotonic() < deadline and not running.done()
                time.sleep(0.1)
            # The others are done; the one left is stuck reading. Kill the pool's processes.
            for child in set(multiprocessing.active_children()) - earlier:
                os.kill(child.pid, signal.SIGKILL)
            results, _ = running.result(timeout=60)
    by_obsid = {r.obsid: r for r in results}
    assert [by_obsid[e.obsid].status for e in entries[1:]] == ["done", "done"]
    assert by_obsid[stuck.obsid].status == "failed" and by_obsid[stuck.obsid].retryable


def test_max_windows_stops_starting_obsids_in_trigger_order_and_a_rerun_goes_on(world, tmp_path):
    observations, options = world
    store = str(tmp_path / "a.zarr")
    report = run(store, BEGIN, END, options, workers=1, max_windows=3)
    processed = [r for r in report.results if r["status"] != "deferred"]
    assert report.deferred == len(observations) - len(processed) > 0
    assert report.windows >= 3 and report.windows - processed[-1]["n_windows"] < 3
    first_trigger = {o.obsid: min(d.trigger_utc for d in o.dumps) for o in observations}
    by_trigger = sorted(first_trigger, key=first_trigger.get)
    assert {r["obsid"] for r in processed} == set(by_trigger[: len(processed)])
    assert open_archive(store).sizes["window"] == report.windows
    rest = run(store, BEGIN, END, options, workers=1)
    assert (rest.skipped_complete, rest.planned, rest.deferred) == (
        len(processed),
        report.deferred,
        0,
    )
