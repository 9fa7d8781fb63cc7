"""The job steps every orchestrator shares: plan record, per-obsid result records, finalize report."""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from datetime import datetime

import pytest

from batglitch.errors import EventFileError
from batglitch.pipeline.job import finalize_run, plan_run, process_item, rolling_range, run_results
from batglitch.pipeline.plan import PlanOptions, read_manifest
from batglitch.pipeline.worker import DONE, FAILED, NO_GLITCHES, NOT_ARCHIVED
from batglitch.standins import FakeSwiftAPI, fake_observations, fill_heasarc
from batglitch.store.archive import Archive
from batglitch.store.reader import open_archive

BEGIN, END = "2024-03-01", "2024-03-08"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Six observations, one of them corrupt and one not archived yet; the API stays up."""
    heasarc = tmp_path_factory.mktemp("heasarc")
    observations = fake_observations(
        datetime.fromisoformat(BEGIN), datetime.fromisoformat(END), 6, seed=5,
        not_archived_fraction=1 / 6, corrupt_fraction=1 / 6,
    )  # fmt: skip
    assert not any(o.corrupt and not o.archived for o in observations)
    fill_heasarc(str(heasarc), observations, rate_hz=500.0, duration=90.0, n_glitches=2)
    with FakeSwiftAPI(observations) as api:
        yield (
            {o.obsid: o for o in observations},
            PlanOptions(api_url=api.url, roots=(str(heasarc),), quicklook=(api.quicklook_url,)),
        )


@pytest.mark.parametrize(
    ("fired", "lookback", "expected"),
    [
        ("2024-03-10T00:05:00Z", 3, ("2024-03-07", "2024-03-10")),
        ("2024-03-01T23:59:59Z", 1, ("2024-02-29", "2024-03-01")),  # leap day
        ("2025-01-01T06:00:00", 7, ("2024-12-25", "2025-01-01")),  # naive means UTC
        ("2024-03-10T00:00:00+00:00", 0, ("2024-03-10", "2024-03-10")),
    ],
)
def test_rolling_range(fired, lookback, expected):
    assert rolling_range(fired, lookback) == expected


def test_rolling_range_uses_the_utc_date_of_an_offset_timestamp():
    # 01:00 at UTC+2 is 23:00 UTC on the day before.
    assert rolling_range("2024-03-10T01:00:00+02:00", 1) == ("2024-03-08", "2024-03-09")


def test_a_run_plans_processes_and_reports_every_outcome(world, tmp_path):
    observations, options = world
    store = str(tmp_path / "a.zarr")
    run = plan_run(BEGIN, END, store, options=options)
    entries = read_manifest(run.manifest)
    assert sorted(e.obsid for e in entries) == sorted(observations)
    assert (run.n_obsids, run.skipped_complete) == (6, 0)
    archive = Archive(store)
    assert archive.get_json(f"runs/{run.run_id}/plan.json")["manifest"] == run.manifest

    results = {
        e.obsid: process_item(e, archive, run.run_id, places=options.places) for e in entries
    }
    report = finalize_run(store, run.run_id, workers=1)
    corrupt = next(o for o in observations.values() if o.corrupt)
    unarchived = next(o for o in observations.values() if not o.archived)
    assert results[corrupt.obsid].status == FAILED
    assert results[unarchived.obsid].status == NOT_ARCHIVED
    assert (report.planned, report.done, report.not_archived, report.failed) == (6, 4, 1, 1)
    [failure] = report.failures
    assert failure["obsid"] == corrupt.obsid
    assert corrupt.obsid in failure["error"] and corrupt.filename("po") in failure["error"]
    assert report.windows == sum(r.n_windows for r in results.values())
    assert report.bytes_read == sum(r.bytes_read for r in results.values()) > 0
    assert open_archive(store).sizes["window"] == report.windows
    stored = archive.get_json(f"runs/{run.run_id}/report.json")
    assert (stored["done"], stored["failed"], stored["windows"]) == (4, 1, report.windows)

    # The next run skips what is complete and retries the rest, the unarchived one included.
    again = plan_run(BEGIN, END, store, options=options)
    retried = {e.obsid for e in read_manifest(again.manifest)}
    assert retried == {corrupt.obsid, unarchived.obsid}
    assert again.skipped_complete == 4
    assert plan_run(BEGIN, END, store, force=True, options=options).n_obsids == 6
    assert plan_run(BEGIN, END, store, force=True, limit=2, options=options).n_obsids == 2


def test_an_entry_without_a_result_record_counts_as_failed(world, tmp_path):
    store = str(tmp_path / "a.zarr")
    run = plan_run(BEGIN, END, store, options=world[1])
    entries = read_manifest(run.manifest)
    archive = Archive(store)
    done = [e for e in entries if world[0][e.obsid].archived and not world[0][e.obsid].corrupt]
    process_item(
        done[0], archive, run.run_id, places=world[1].places
    )  # the other workers died without a word

    by_obsid = {r.obsid: r for r in run_results(archive, run.run_id, entries)}
    assert sorted(by_obsid) == sorted(e.obsid for e in entries)
    assert by_obsid[done[0].obsid].status == DONE
    silent = [r for o, r in by_obsid.items() if o != done[0].obsid]
    assert all(r.status == FAILED and "no result recorded" in r.error for r in silent)
    report = finalize_run(store, run.run_id)
    assert (report.planned, report.done, report.failed) == (6, 1, 5)


def test_process_item_records_a_failure_before_raising_it(world, tmp_path):
    store = str(tmp_path / "a.zarr")
    run = plan_run(BEGIN, END, store, options=world[1])
    corrupt = next(e for e in read_manifest(run.manifest) if world[0][e.obsid].corrupt)
    archive = Archive(store)
    with pytest.raises(EventFileError):
        process_item(corrupt, archive, run.run_id, places=world[1].places, raise_errors=True)
    record = archive.get_json(f"runs/{run.run_id}/results/{corrupt.obsid}.json")
    assert record["status"] == FAILED and corrupt.obsid in record["error"]
    assert archive.completed_obsids() == set()


def test_a_week_of_daily_runs_turns_every_quicklook_obsid_into_archived_rows_once(tmp_path):
    """The daily schedule looks back 3 days; archiving takes about a week. Quick-look rows are
    made at once, re-planned by every run whatever its range, and replaced exactly once when
    the archive has the files; a quick-look file that vanished meanwhile is "not archived yet"."""
    start = datetime(2024, 3, 1)
    observations = fake_observations(
        start, datetime(2024, 3, 3), 4, seed=12, not_archived_fraction=1.0, sp_fraction=0.25
    )
    archive_day = {o.obsid: 3 + i for i, o in enumerate(observations)}  # days 3..6
    vanish_day = {o.obsid: archive_day[o.obsid] - 1 for o in observations[-1:]}  # gone a day early
    heasarc, ql, store = tmp_path / "heasarc", tmp_path / "ql", str(tmp_path / "a.zarr")
    archived = [dataclasses.replace(o, archived=True) for o in observations]
    spec = {"rate_hz": 500.0, "duration": 90.0, "n_glitches": 2}
    fill_heasarc(str(tmp_path / "unused"), observations, quicklook_url=str(ql), **spec)
    made: Counter[str] = Counter()  # rows made, per obsid
    with FakeSwiftAPI(observations, quicklook_base=str(ql)) as api:
        options = PlanOptions(api_url=api.url, roots=(str(heasarc),), quicklook=(str(ql),))
        for day in range(1, 8):
            today = [
                a if day >= archive_day[o.obsid] else o
                for o, a in zip(observations, archived, strict=True)
            ]
            for o in observations:
                if day == archive_day[o.obsid]:
                    fill_heasarc(str(heasarc), [dataclasses.replace(o, archived=True)], **spec)
                if day in (archive_day[o.obsid], vanish_day.get(o.obsid)):
                    shutil.rmtree(ql / f"sw{o.obsid}.001", ignore_errors=True)
            api.observations = today
            begin, end = rolling_range(f"2024-03-{day + 1:02d}T00:05:00Z", 3)
            run = plan_run(begin, end, store, options=options)
            for entry in read_manifest(run.manifest):
                result = process_item(entry, Archive(store), run.run_id, places=options.places)
                assert result.status != FAILED, result.error
                made[entry.obsid] += result.status in (DONE, NO_GLITCHES)
            finalize_run(store, run.run_id)
    # once from quick-look as soon as it was seen, once from the archive: never again
    assert made == {o.obsid: 2 for o in observations}
    done = Archive(store).completions()
    assert sorted(done) == sorted(o.obsid for o in observations)
    assert not any(c.from_quicklook for c in done.values())
    ds = open_archive(store)
    for o in observations:
        rows = ds.source_file.values[ds.obsid.values == o.obsid]
        assert len(rows) == done[o.obsid].n_windows > 0
        assert all(str(heasarc) in r for r in rows)  # the archived copy, once
        starts = ds.window_start.values[ds.obsid.values == o.obsid]
        assert len(set(starts.tolist())) == len(starts)  # no window twice
