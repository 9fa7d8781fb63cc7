"""The three Lambda functions of the state machine: plan, process (one obsid), finalize.

Each parses its event, calls one core step of batglitch.pipeline.job and returns small JSON. Exceptions
keep their class names (TransientError, EventFileError): Step Functions
retries the first and counts the others against the map's tolerated-failure threshold.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from batglitch.pipeline import job
from batglitch.pipeline.plan import ObsEntry, PlanOptions
from batglitch.store.archive import Archive
from handler.logs import configure, log_context

configure()
logger = logging.getLogger("batglitch.handler")
MAX_FAILURES_RETURNED = 20  # state payloads are limited to 256 KB; the full report is in S3


def _request_id(context: Any) -> str | None:
    return getattr(context, "aws_request_id", None)


def _store(event: dict[str, Any]) -> str:
    return event.get("store") or os.environ["BATGLITCH_STORE"]


def _bucket_key(url: str) -> dict[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return {"bucket": bucket, "key": key}


def plan(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """{begin, end} or {scheduled_time, lookback_days} (+ store, force, limit, slewing, grbs)
    -> plan. grbs: also the BAT GRB catalogue's trigger windows (env BATGLITCH_GRB_API_URL)."""
    with log_context(request_id=_request_id(context)):
        if event.get("scheduled_time"):
            begin, end = job.rolling_range(
                event["scheduled_time"], int(event.get("lookback_days", 3))
            )
        else:
            begin, end = event["begin"], event["end"]
        run = job.plan_run(
            begin, end, _store(event), force=bool(event.get("force")), limit=event.get("limit"),
            options=PlanOptions(
                slewing=bool(event.get("slewing")), grbs=bool(event.get("grbs"))
            ),
        )  # fmt: skip
        logger.info("planned %d obsids for %s..%s, run %s", run.n_obsids, begin, end, run.run_id)
        # the Distributed Map's ItemReader takes the manifest as bucket + key
        return {
            **run.to_dict(),
            "manifest": _bucket_key(run.manifest),
            "manifest_url": run.manifest,
        }


def process(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """One manifest item (ObsEntry fields) plus store and run_id -> the obsid's result."""
    entry = ObsEntry.from_dict(event)
    with log_context(request_id=_request_id(context), obsid=entry.obsid):
        result = job.process_item(
            entry, Archive(_store(event)), event.get("run_id"), raise_errors=True
        )
        logger.info("%s: %s, %d windows", entry.obsid, result.status, result.n_windows)
        return result.to_dict()


def finalize(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """{store, run_id} -> run summary (the full report is written next to the archive)."""
    with log_context(request_id=_request_id(context), run_id=event.get("run_id")):
        report = job.finalize_run(_store(event), event["run_id"])
        logger.info("run %s: %d windows, %d failed", report.run_id, report.windows, report.failed)
        summary = report.to_dict()
        summary.pop("results")
        summary["failures"] = summary["failures"][:MAX_FAILURES_RETURNED]
        return summary
