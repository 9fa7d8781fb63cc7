"""The job steps every orchestrator shares: plan record, per-obsid result records, finalize report."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime

import pytest

from batglitch.errors import EventFileError
from batglitch.pipeline.job import finalize_run, plan_run, process_item, rolling_range, run_results
from batglitch.pipeline.worker import DONE, FAILED, NOT_ARCHIVED
from batglitch.sources.catalog import read_manifest
from batglitch.sources.places import Places
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
            {"api_url": api.url, "roots": [str(heasarc)], "quicklook": [api.quicklook_url]},
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
    run = plan_run(BEGIN, END, store, plan_options=options)
    entries = read_manifest(run.manifest)
    assert sorted(e.obsid for e in entries) == sorted(observations)
    assert (run.n_obsids, run.skipped_complete) == (6, 0)
    archive = Archive(store)
    assert archive.get_json(f"runs/{run.run_id}/plan.json")["manifest"] == run.manifest

    results = {
        e.obsid: process_item(e, archive, run.run_id, places=Places.of_plan(options))
        for e in entries
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
    again = plan_run(BEGIN, END, store, plan_options=options)
    retried = {e.obsid for e in read_manifest(again.manifest)}
    assert retried == {corrupt.obsid, unarchived.obsid}
    assert again.skipped_complete == 4
    assert plan_run(BEGIN, END, store, force=True, plan_options=options).n_obsids == 6
    assert plan_run(BEGIN, END, store, force=True, limit=2, plan_options=options).n_obsids == 2


def test_an_entry_without_a_result_record_counts_as_failed(world, tmp_path):
    store = str(tmp_path / "a.zarr")
    run = plan_run(BEGIN, END, store, plan_options=world[1])
    entries = read_manifest(run.manifest)
    archive = Archive(store)
    done = [e for e in entries if world[0][e.obsid].archived and not world[0][e.obsid].corrupt]
    process_item(
        done[0], archive, run.run_id, places=Places.of_plan(world[1])
    )  # the other workers died without a word

    by_obsid = {r.obsid: r for r in run_results(archive, run.run_id, run.manifest)}
    assert sorted(by_obsid) == sorted(e.obsid for e in entries)
    assert by_obsid[done[0].obsid].status == DONE
    silent = [r for o, r in by_obsid.items() if o != done[0].obsid]
    assert all(r.status == FAILED and "no result recorded" in r.error for r in silent)
    report = finalize_run(store, run.run_id)
    assert (report.planned, report.done, report.failed) == (6, 1, 5)


def test_process_item_records_a_failure_before_raising_it(world, tmp_path):
    store = str(tmp_path / "a.zarr")
    run = plan_run(BEGIN, END, store, plan_options=world[1])
    corrupt = next(e for e in read_manifest(run.manifest) if world[0][e.obsid].corrupt)
    archive = Archive(store)
    with pytest.raises(EventFileError):
        process_item(
            corrupt, archive, run.run_id, places=Places.of_plan(world[1]), raise_errors=True
        )
    record = archive.get_json(f"runs/{run.run_id}/results/{corrupt.obsid}.json")
    assert record["status"] == FAILED and corrupt.obsid in record["error"]
    assert archive.completed_obsids() == set()


def test_rows_from_quicklook_are_redone_once_the_observation_is_archived(tmp_path):
    """Quick-look data is provisional: not replanned while it is all there is, redone after."""
    begin, end = datetime.fromisoformat(BEGIN), datetime.fromisoformat(END)
    [pending] = fake_observations(begin, end, 1, seed=9, not_archived_fraction=1.0)
    archived = dataclasses.replace(pending, archived=True)
    heasarc, quicklook = tmp_path / "heasarc", tmp_path / "ql"
    fill_heasarc(str(heasarc), [archived], rate_hz=500.0, duration=90.0, n_glitches=2)
    event_file = heasarc / archived.key("po")
    (quicklook / pending.obsid / "bat/event").mkdir(parents=True)
    shutil.copy(event_file, quicklook / pending.obsid / "bat/event" / event_file.name)
    store = str(tmp_path / "a.zarr")

    def run(observation) -> tuple[int, int, dict]:
        with FakeSwiftAPI([observation], quicklook_base=str(quicklook)) as api:
            options = {
                "api_url": api.url,
                "roots": [str(heasarc)],
                "quicklook": [api.quicklook_url],
            }
            planned = plan_run(BEGIN, END, store, plan_options=options)
            for entry in read_manifest(planned.manifest):
                process_item(entry, Archive(store), planned.run_id, places=Places.of_plan(options))
        finalize_run(store, planned.run_id)
        return planned.n_obsids, planned.skipped_complete, Archive(store).completions()

    n, skipped, done = run(pending)  # from quick-look: processed, marked as such
    assert (n, skipped) == (1, 0) and done[pending.obsid].from_quicklook is True
    first = done[pending.obsid].attempt
    n, skipped, done = run(pending)  # still only quick-look: not redone
    assert (n, skipped) == (0, 1) and done[pending.obsid].attempt == first
    n, skipped, done = run(archived)  # archived now: redone from the archive proper
    assert (n, skipped) == (1, 0) and done[pending.obsid].from_quicklook is False
    n, skipped, _ = run(archived)  # final: skipped without a lookup
    assert (n, skipped) == (0, 1)
    assert open_archive(store).sizes["window"] == done[pending.obsid].n_windows > 0
