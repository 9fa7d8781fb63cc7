"""The embedded default: the job's steps on this machine, workers in a local process pool.

An adapter: it only schedules the core steps (job.plan_run, job.process_item, job.finalize_run)
on local processes and shows progress.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

from batglitch.pipeline.job import finalize_run, plan_run, process_item
from batglitch.pipeline.report import RunReport
from batglitch.pipeline.worker import FAILED, ObsResult, failed
from batglitch.sources.catalog import ObsEntry, read_manifest
from batglitch.store.archive import Archive

DIED = "the worker process died (killed, or out of memory) while processing this obsid"

_archive: Archive | None = None


def _work(entry: ObsEntry, store: str, run_id: str | None) -> ObsResult:
    """Runs in a pool process; the archive handle is made once per process."""
    global _archive
    if _archive is None or _archive.url != store.rstrip("/"):
        _archive = Archive(store)
    return process_item(entry, _archive, run_id)


def process_all(
    entries: Sequence[ObsEntry],
    store: str,
    workers: int,
    *,
    run_id: str | None = None,
    progress: bool = True,
) -> list[ObsResult]:
    """Process every entry on `workers` processes (spawned: no forked network clients).

    At most `workers` entries are in flight, so a process that dies (OOM killer, SIGKILL) costs
    only those: they are reported as retryable failures and a fresh pool goes on with the rest.
    """
    bar = tqdm(total=len(entries), desc="obsids", unit="obsid", disable=not progress)
    results: list[ObsResult] = []
    waiting = list(reversed(entries))
    while waiting and workers <= 1:
        results.append(_work(waiting.pop(), store, run_id))
        bar.update()
    context = multiprocessing.get_context("spawn")
    while waiting:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            running: dict[Future[ObsResult], ObsEntry] = {}
            broken = False
            while (waiting and not broken) or running:
                while waiting and not broken and len(running) < workers:
                    entry = waiting.pop()
                    running[pool.submit(_work, entry, store, run_id)] = entry
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    entry = running.pop(future)
                    try:
                        results.append(future.result())
                    except BrokenProcessPool:
                        broken = True
                        results.append(ObsResult(entry.obsid, FAILED, error=DIED, retryable=True))
                    except Exception as exc:  # e.g. the archive unreachable: this obsid only
                        results.append(failed(entry.obsid, exc, 0.0))
                    bar.update()
    bar.close()
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
    log(f"planning {begin} .. {end} from GUANO into {store}")
    bars: dict[str, tqdm] = {}

    def planning(stage: str, done: int, total: int) -> None:
        label = {"guano": "GUANO windows", "data": "locating event files"}.get(stage, stage)
        bar = bars.setdefault(stage, tqdm(total=total, desc=label, disable=not progress))
        bar.update(done - bar.n)

    options = {"progress": planning, **(plan_options or {})}
    run_plan = plan_run(begin, end, store, force=force, limit=limit, plan_options=options)
    for bar in bars.values():
        bar.close()
    log(
        f"run {run_plan.run_id}: {run_plan.n_obsids} obsids to process, "
        f"{run_plan.skipped_complete} already complete; {workers} worker(s)"
    )
    entries = read_manifest(run_plan.manifest, Archive(store).storage_options)
    process_all(entries, store, workers, run_id=run_plan.run_id, progress=progress)
    return finalize_run(store, run_plan.run_id, workers=workers)
