"""The embedded default: plan, process with a local process pool, finalize, report.

An adapter: it only schedules core calls (catalog.plan, worker.process_safely, Archive.finalize)
on local processes and shows progress.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from tqdm import tqdm

from batglitch.archive import Archive, new_attempt_id
from batglitch.catalog import ObsEntry, plan, write_manifest
from batglitch.report import RunReport, summarize
from batglitch.worker import ObsResult, process_safely

_archive: Archive | None = None


def _work(entry: ObsEntry, store: str) -> ObsResult:
    """Runs in a pool process; the archive handle is made once per process."""
    global _archive
    if _archive is None or _archive.url != store.rstrip("/"):
        _archive = Archive(store)
    return process_safely(entry, _archive)


def process_all(
    entries: Sequence[ObsEntry], store: str, workers: int, *, progress: bool = True
) -> list[ObsResult]:
    """Process every entry on `workers` processes (spawned: no forked network clients)."""
    if workers <= 1:
        results_iter = (_work(e, store) for e in entries)
        return list(tqdm(results_iter, total=len(entries), desc="obsids", disable=not progress))
    results = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_work, e, store) for e in entries]
        for future in tqdm(
            as_completed(futures), total=len(futures), desc="obsids", disable=not progress
        ):
            results.append(future.result())
    return sorted(results, key=lambda r: r.obsid)


def run(
    begin: str,
    end: str,
    store: str,
    *,
    workers: int = 2,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
    plan_options: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> RunReport:
    """The whole job on one machine. Re-running a range only processes what is not complete."""
    started = time.perf_counter()
    archive = Archive(store)
    run_id = new_attempt_id()
    complete = set() if force else archive.completed_obsids()
    log(f"planning {begin} .. {end} (GUANO); {len(complete)} obsids already complete in {store}")
    planned = plan(begin, end, **(plan_options or {}))
    entries = [e for e in planned if e.obsid not in complete]
    skipped = len(planned) - len(entries)
    if limit is not None:
        entries = entries[:limit]
    write_manifest(entries, f"{archive.url}/manifests/{run_id}.jsonl", archive.storage_options)
    log(f"processing {len(entries)} obsids with {workers} worker(s)")
    results = process_all(entries, store, workers, progress=progress)
    summary = archive.finalize()
    log(f"finalized: {summary.n_windows} windows from {summary.n_obsids} complete obsids")
    report = summarize(
        results,
        run_id=run_id,
        store=store,
        begin=str(begin),
        end=str(end),
        skipped_complete=skipped,
        seconds=time.perf_counter() - started,
        workers=workers,
    )
    archive.put_json(f"runs/{run_id}.json", report.to_dict())
    return report
