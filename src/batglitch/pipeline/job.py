"""The three steps of a run, shared by every orchestrator (local pool, Step Functions, Batch).

plan_run writes the manifest and the run's plan record; each worker writes one result record;
finalize_run publishes one version and reports from what is stored, so it needs nothing but
the archive URL and the run id, whichever machine ran the workers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batglitch.pipeline.plan import (
    ObsEntry,
    PlanOptions,
    plan,
    read_manifest,
    write_manifest,
)
from batglitch.pipeline.report import RunReport, summarize
from batglitch.pipeline.worker import DEFERRED, FAILED, ObsResult, failed, process_entry
from batglitch.sources.places import Places
from batglitch.store.archive import Archive, utc_now
from batglitch.store.keys import (
    manifest_key,
    new_attempt_id,
    plan_key,
    report_key,
    result_key,
    results_pattern,
)
from batglitch.store.schema import Completion

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    store: str
    begin: str
    end: str
    manifest: str  # URL of the manifest (a JSON array of ObsEntry objects)
    n_obsids: int
    skipped_complete: int
    slewing_only: tuple[str, ...] = ()  # obsids with only slewing data, not read without it
    waiting_quicklook: int = 0  # done from quick-look, archived files not there yet

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rolling_range(scheduled_time: str, lookback_days: int) -> tuple[str, str]:
    """[day - lookback, day) for a schedule firing at scheduled_time (UTC dates, ISO)."""
    moment = dt.datetime.fromisoformat(scheduled_time.replace("Z", "+00:00"))
    day = (moment.astimezone(dt.UTC) if moment.tzinfo else moment).date()
    return (day - dt.timedelta(days=lookback_days)).isoformat(), day.isoformat()


def completions(archive: Archive) -> dict[str, Completion]:
    """Every obsid the archive holds or is about to: published (the per-obsid table, a few
    requests) and pending (finished before a run stopped short of its publish: the next
    publish takes it in; listing them costs what is pending, not the archive)."""
    done = archive.completions()
    for marker in sorted(archive.pending(), key=lambda m: m["attempt"]):
        done[marker["obsid"]] = Completion.from_record(marker)
    return done


def plan_run(
    begin: str,
    end: str,
    store: str,
    *,
    force: bool = False,
    limit: int | None = None,
    options: PlanOptions | None = None,
) -> RunPlan:
    """List the range's obsids (and quick-look ones waiting for the archive), leave out those
    already complete (unless forced), write the manifest."""
    archive = Archive(store)
    run_id = new_attempt_id()
    planned = plan(begin, end, options, completions(archive), force=force)
    entries = planned.entries[:limit]
    manifest = f"{archive.url}/{manifest_key(run_id)}"  # a JSON array: Step Functions reads it
    write_manifest(entries, manifest, archive.storage_options)
    run = RunPlan(
        run_id=run_id,
        store=archive.url,
        begin=str(begin),
        end=str(end),
        manifest=manifest,
        n_obsids=len(entries),
        skipped_complete=len(planned.selection.complete) + len(planned.waiting),
        slewing_only=planned.selection.slewing_only,
        waiting_quicklook=len(planned.waiting),
    )
    archive.put_json(plan_key(run_id), {**run.to_dict(), "planned_at": time.time()})
    return run


def process_item(
    entry: ObsEntry,
    archive: Archive,
    run_id: str | None,
    *,
    places: Places | None = None,
    raise_errors: bool = False,
) -> ObsResult:
    """Process one obsid and, inside a run, leave its result record for finalize_run.

    places: where its event files may be read from (default: the configured ones).

    A failure becomes a FAILED result; with raise_errors the exception is re-raised after it is
    recorded, so an orchestrator that retries by error type (Step Functions) sees its class.
    """
    started = time.perf_counter()
    try:
        result = process_entry(entry, archive, places=places)
    except Exception as exc:  # one bad observation must never end a run
        result = failed(entry.obsid, exc, started)
        try:
            _record(archive, run_id, result)
        except Exception:  # the original error matters more (its class drives retries)
            logger.exception("obsid %s: could not record its failure", entry.obsid)
        if raise_errors:
            raise
        return result
    _record(archive, run_id, result)
    return result


def defer_items(entries: Sequence[ObsEntry], archive: Archive, run_id: str, reason: str) -> None:
    """Record entries a run chose not to start, so its report counts them as deferred, not as
    workers that died; they have no completion marker, so the next plan picks them up."""
    for entry in entries:
        _record(archive, run_id, ObsResult(entry.obsid, DEFERRED, error=reason))


def _record(archive: Archive, run_id: str | None, result: ObsResult) -> None:
    if run_id:
        archive.put_json(result_key(run_id, result.obsid), result.to_dict())


def run_results(archive: Archive, run_id: str, entries: Sequence[ObsEntry]) -> list[ObsResult]:
    """Every manifest entry's result; an entry whose worker died without a record counts as failed."""
    paths = archive.glob(results_pattern(run_id))
    stored = {}
    for raw in archive.fs.cat(paths).values() if paths else ():
        record = ObsResult(**json.loads(raw))
        stored[record.obsid] = record
    results = []
    for entry in entries:
        missing = ObsResult(
            entry.obsid, FAILED, error="no result recorded: the worker died or timed out"
        )
        results.append(stored.get(entry.obsid, missing))
    return results


def finalize_run(store: str, run_id: str, *, workers: int = 0) -> RunReport:
    """Publish what the workers completed as one version tagged with the run id, its summary in
    the commit, then store the run's report."""
    archive = Archive(store)
    info = archive.get_json(plan_key(run_id))
    entries = read_manifest(info["manifest"], archive.storage_options)
    report = summarize(
        run_results(archive, run_id, entries),
        run_id=run_id,
        store=archive.url,
        begin=info["begin"],
        end=info["end"],
        skipped_complete=info["skipped_complete"],
        seconds=time.time() - info["planned_at"],
        workers=workers,
        slewing_only=info.get("slewing_only", ()),
        waiting_quicklook=info.get("waiting_quicklook", 0),
        labels={e.obsid: e.label for e in entries},
    )
    summary = {k: v for k, v in report.to_dict().items() if k != "results"}  # failures stay
    archive.publish(run_id=run_id, summary=summary)
    archive.put_json(report_key(run_id), {**report.to_dict(), "finalized_at": utc_now()})
    return report
