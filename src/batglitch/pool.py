"""The embedded default: the job's steps on this machine, workers in a local process pool.

An adapter: it only schedules the core steps (job.plan_run, job.process_item, job.finalize_run)
on local processes and shows progress.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

from batglitch import console
from batglitch.errors import Interrupted
from batglitch.pipeline.job import defer_items, finalize_run, plan_run, process_item
from batglitch.pipeline.plan import ObsEntry, PlanOptions, read_manifest
from batglitch.pipeline.report import RunReport, stored_obsids
from batglitch.pipeline.worker import FAILED, ObsResult, failed
from batglitch.sources.places import Places
from batglitch.store.archive import Archive

logger = logging.getLogger(__name__)
DIED = "the worker process died (killed, or out of memory) while processing this obsid"
PLAN_STAGES = {"guano": ("GUANO windows", "window"), "locate": ("locating event files", "obsid")}

_archive: Archive | None = None


@dataclass(frozen=True)
class Budget:
    """Stop scheduling new obsids once this many windows are archived (the notebook's `total`)."""

    max_windows: int

    def spent(self, results: Sequence[ObsResult]) -> bool:
        return sum(r.n_windows for r in results) >= self.max_windows


def _start_worker(level: int, verbose: bool) -> None:
    """Pool processes leave Ctrl-C to the parent (which stops them) and log like it does.

    They start with SIGINT blocked (see _no_sigint), so a Ctrl-C during their start-up stays
    pending until it is ignored here, instead of a traceback from half-imported workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    console.configure(level, verbose=verbose)


@contextmanager
def _no_sigint() -> Iterator[None]:
    """Hold back SIGINT while pool processes are started: a blocked signal mask is inherited by
    the processes, a Python handler is not. The parent gets its Ctrl-C right afterwards."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _work(entry: ObsEntry, store: str, run_id: str | None, places: Places | None) -> ObsResult:
    """Runs in a pool process; the archive handle is made once per process."""
    global _archive
    if _archive is None or _archive.url != store.rstrip("/"):
        _archive = Archive(store)
    return process_item(entry, _archive, run_id, places=places)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Terminate the workers now: an attempt cut short has no completion marker, so no reader
    ever sees it (Python 3.14 has this as a method; before, the processes are reached directly)."""
    if hasattr(pool, "terminate_workers"):
        pool.terminate_workers()
        return
    for process in list((pool._processes or {}).values()):
        process.terminate()


def process_all(
    entries: Sequence[ObsEntry],
    store: str,
    workers: int,
    *,
    run_id: str | None = None,
    places: Places | None = None,
    progress: bool = True,
    budget: Budget | None = None,
) -> tuple[list[ObsResult], list[ObsEntry]]:
    """Process entries in order on `workers` processes (spawned: no forked network clients).

    Returns the results and the entries never started because the budget was spent. At most
    `workers` entries are in flight, so a process that dies (OOM killer, SIGKILL) costs only
    those: they are reported as retryable failures and a fresh pool goes on with the rest.
    Ctrl-C stops the workers and raises Interrupted.
    """
    results: list[ObsResult] = []
    waiting = list(reversed(entries))

    def more() -> bool:
        return bool(waiting) and not (budget and budget.spent(results))

    context = multiprocessing.get_context("spawn")
    initargs = (console.logger.getEffectiveLevel(), logger.isEnabledFor(logging.DEBUG))
    with console.Progress("obsids", len(entries), "obsid", enabled=progress) as bar:
        try:
            while more() and workers <= 1:
                results.append(_work(waiting.pop(), store, run_id, places))
                bar.update()
            while more():
                with _no_sigint():
                    pool = ProcessPoolExecutor(
                        max_workers=workers, mp_context=context,
                        initializer=_start_worker, initargs=initargs,
                    )  # fmt: skip
                try:
                    _drain(pool, waiting, more, results, bar, store, run_id, places, workers)
                except KeyboardInterrupt:
                    _stop(pool)
                    raise
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
        except KeyboardInterrupt:
            stored = stored_obsids(Archive(store), entries, since=run_id)
            raise Interrupted(results, len(entries) - len(results), stored=stored) from None
    return sorted(results, key=lambda r: r.obsid), list(reversed(waiting))


def _drain(
    pool: ProcessPoolExecutor,
    waiting: list[ObsEntry],
    more: Callable[[], bool],
    results: list[ObsResult],
    bar: console.Progress,
    store: str,
    run_id: str | None,
    places: Places | None,
    workers: int,
) -> None:
    """Keep `workers` entries in flight until none are left or the pool breaks."""
    running: dict[Future[ObsResult], ObsEntry] = {}
    broken = False
    while (more() and not broken) or running:
        while more() and not broken and len(running) < workers:
            entry = waiting.pop()
            with _no_sigint():  # submit starts the pool's processes as they are needed
                running[pool.submit(_work, entry, store, run_id, places)] = entry
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


def run(
    begin: str,
    end: str,
    store: str,
    *,
    workers: int = 2,
    limit: int | None = None,
    max_windows: int | None = None,
    force: bool = False,
    progress: bool = True,
    options: PlanOptions | None = None,
) -> RunReport:
    """The whole job on one machine. Re-running a range only processes what is not complete.

    max_windows: stop scheduling obsids (taken in trigger order) once that many windows are
    archived; the rest are recorded as deferred and a later run picks them up.
    """
    logger.info("planning %s .. %s from GUANO into %s", begin, end, store)
    bars: dict[str, console.Progress] = {}

    def planning(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for earlier in bars.values():  # stages follow each other: one display at a time
                earlier.close()
            desc, unit = PLAN_STAGES.get(stage, (stage, "it"))
            bars[stage] = console.Progress(desc, total, unit, enabled=progress)
        bars[stage].update_to(done, total)

    options = dataclasses.replace(options or PlanOptions(), progress=planning)
    try:
        run_plan = plan_run(begin, end, store, force=force, limit=limit, options=options)
    finally:
        for bar in bars.values():
            bar.close()
    logger.info(
        "run %s: %d obsids to process, %d already complete; %d worker(s)",
        run_plan.run_id, run_plan.n_obsids, run_plan.skipped_complete, workers,
    )  # fmt: skip
    archive = Archive(store)
    entries = read_manifest(run_plan.manifest, archive.storage_options)
    budget = Budget(max_windows) if max_windows is not None else None
    try:
        results, deferred = process_all(
            entries,
            store,
            workers,
            run_id=run_plan.run_id,
            places=options.places,  # read only where the plan was made to read
            progress=progress,
            budget=budget,
        )
    except Interrupted as stop:
        raise Interrupted(
            stop.finished, stop.not_finished, stored=stop.stored, run_id=run_plan.run_id,
            store=archive.url,
        ) from None  # fmt: skip
    if deferred:
        windows = sum(r.n_windows for r in results)
        logger.info(
            "--max-windows %d reached with %d windows: %d obsids deferred to a later run",
            max_windows, windows, len(deferred),
        )  # fmt: skip
        defer_items(deferred, archive, run_plan.run_id, f"--max-windows {max_windows} reached")
    logger.info("publishing the run's fragments into %s", archive.url)
    return finalize_run(store, run_plan.run_id, workers=workers)
