"""Run summaries: counts by status, throughput, and the failures worth a look."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batglitch.errors import Interrupted
from batglitch.pipeline.plan import ObsEntry
from batglitch.pipeline.worker import (
    DEFERRED,
    DONE,
    FAILED,
    NO_GLITCHES,
    NOT_ARCHIVED,
    ObsResult,
)
from batglitch.science.grb import GLITCH, GRB
from batglitch.store.archive import Archive

# what a planned entry of each label archives, as the summary names it
ARCHIVED_AS = {GLITCH: "with glitch windows", GRB: "with a GRB window"}


@dataclass(frozen=True)
class RunReport:
    run_id: str
    store: str
    begin: str
    end: str
    planned: int
    skipped_complete: int
    done: int
    no_glitches: int
    not_archived: int
    failed: int
    windows: int
    bytes_read: int
    seconds: float
    workers: int
    deferred: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    slewing_only: list[str] = field(default_factory=list)  # dumps with only slewing files
    waiting_quicklook: int = 0  # done from quick-look, archived files not there yet
    # per label (GLITCH, GRB): {"obsids": archived with windows, "windows": how many}
    by_label: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def obsids_per_s(self) -> float:
        return self.planned / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "obsids_per_s": self.obsids_per_s}

    def table(self) -> str:
        """The summary a person reads at the end of a run."""
        mb = self.bytes_read / 1e6
        # what this run skipped sits beside what it processed, not under it: on a re-run the
        # skipped count is the large one
        rows = [
            ("date range", f"{self.begin} .. {self.end}"),
            ("obsids already complete", f"{self.skipped_complete} (skipped)"),
            ("obsids in this run", f"{self.planned}"),
            *(
                (f"  {ARCHIVED_AS[label]}", f"{n['obsids']} ({_windows(n['windows'])})")
                for label, n in self.by_label.items()
            ),
            ("  searched, no windows", f"{self.no_glitches}"),
            ("  not yet archived", f"{self.not_archived} (a later run retries them)"),
            ("  failed", f"{self.failed}"),
        ]
        if self.waiting_quicklook:
            waiting = f"{self.waiting_quicklook} complete from quick-look, redone once archived"
            rows.insert(2, ("  of them", waiting))
        if self.deferred:
            rows.append(("  deferred", f"{self.deferred} (window budget spent; a later run)"))
        rows += [
            ("windows written by it", f"{self.windows}"),
            ("event data read", f"{mb:.1f} MB"),
            ("wall time", f"{self.seconds:.1f} s with {self.workers} worker(s)"),
            (
                "throughput",
                f"{self.obsids_per_s:.2f} obsids/s, {mb / max(self.seconds, 1e-9):.1f} MB/s",
            ),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        lines += [f"FAILED {f['obsid']}: {f['error']}" for f in self.failures]
        if self.slewing_only:
            names = ", ".join(self.slewing_only)
            lines.append(f"NOT READ (only slewing data; plan with --slewing): {names}")
        return "\n".join(lines)


def _windows(n: int) -> str:
    return f"{n} window" if n == 1 else f"{n} windows"


def summarize(
    results: Sequence[ObsResult],
    *,
    run_id: str,
    store: str,
    begin: str,
    end: str,
    skipped_complete: int,
    seconds: float,
    workers: int,
    slewing_only: Sequence[str] = (),
    waiting_quicklook: int = 0,
    labels: Mapping[str, str] | None = None,
) -> RunReport:
    """labels: each obsid's planned label (ObsEntry.label; GLITCH when not given), so that a
    GRB obsid's window is not counted as glitch windows."""
    by_status = {
        s: [r for r in results if r.status == s]
        for s in (DONE, NO_GLITCHES, NOT_ARCHIVED, FAILED, DEFERRED)
    }
    by_label = {label: {"obsids": 0, "windows": 0} for label in ARCHIVED_AS}
    for r in by_status[DONE]:
        counts = by_label[(labels or {}).get(r.obsid, GLITCH)]
        counts["obsids"] += 1
        counts["windows"] += r.n_windows
    return RunReport(
        run_id=run_id,
        store=store,
        begin=begin,
        end=end,
        planned=len(results),
        skipped_complete=skipped_complete,
        done=len(by_status[DONE]),
        no_glitches=len(by_status[NO_GLITCHES]),
        not_archived=len(by_status[NOT_ARCHIVED]),
        failed=len(by_status[FAILED]),
        deferred=len(by_status[DEFERRED]),
        windows=sum(r.n_windows for r in results),
        bytes_read=sum(r.bytes_read for r in results),
        seconds=seconds,
        workers=workers,
        failures=[r.to_dict() for r in by_status[FAILED]],
        results=[r.to_dict() for r in results],
        slewing_only=list(slewing_only),
        waiting_quicklook=waiting_quicklook,
        by_label=by_label,
    )


KEPT = (DONE, NO_GLITCHES)  # statuses whose rows were written: the next run skips them


def stored_obsids(
    archive: Archive, entries: Iterable[ObsEntry], since: str | None = None
) -> frozenset[str]:
    """Obsids of ``entries`` with a completion marker of an attempt after ``since`` (the run id):
    rows stored and waiting for publish, which the next plan counts as done. Read from the store
    because a worker can store its rows as Ctrl-C arrives and never hand its result back."""
    planned = {e.obsid for e in entries}
    return frozenset(
        m["obsid"]
        for m in archive.pending()
        if m["obsid"] in planned and (since is None or m["attempt"] > since)
    )


def interrupted(stop: Interrupted) -> str:
    """What Ctrl-C kept and how to go on, the same from every adapter: only obsids whose rows
    were stored are kept; failed and not-yet-archived ones are planned again."""
    kept = stop.stored | {r.obsid for r in stop.finished if r.status in KEPT}
    other = {r.obsid for r in stop.finished} - kept
    left = len(stop.finished) + stop.not_finished - len(kept) - len(other)
    publish = (
        f"`batglitch finalize --store {stop.store} --run-id {stop.run_id}` publishes them, or "
        if stop.run_id
        else ""
    )
    return (
        f"interrupted: workers stopped; {len(kept)} obsids finished and are kept, "
        f"{len(other)} failed or not archived yet, "
        f"{left} not processed; nothing new is published yet: {publish}"
        "run the same command again to go on (finished obsids are skipped)"
    )
