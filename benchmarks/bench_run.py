"""Throughput of a whole run (plan, process, finalize) on the local pool, with 1 and with 2 workers.

Run ``python benchmarks/bench_run.py``. It is ``batglitch run`` against local stand-ins: the fake
Swift API answers the planner through the real swifttools client and a fake HEASARC tree holds
realistic event files (200 s at a few kHz, ~10 MB gzipped each, as GUANO dumps are). The tree is
made once and kept under out/bench/; every measurement starts from a fresh archive. Both runs must
produce the same windows before any number is printed.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from datetime import datetime
from pathlib import Path

from batglitch import pool
from batglitch.pipeline.job import finalize_run, plan_run
from batglitch.pipeline.plan import PlanOptions, read_manifest
from batglitch.pipeline.report import RunReport
from batglitch.standins import FakeSwiftAPI, fake_observations, fill_heasarc

N_OBSIDS = 50
BEGIN, END = datetime(2024, 3, 1), datetime(2024, 4, 1)
RATE_HZ, DURATION_S, SEED = 3000.0, 200.0, 12
WORKER_COUNTS = (1, 2)
CACHE = Path(__file__).resolve().parents[1] / "out" / "bench"
HEASARC = CACHE / f"heasarc_{N_OBSIDS}obs_{DURATION_S:.0f}s_{RATE_HZ:.0f}hz_s{SEED}"


def observations():
    """The same fake catalog every time (it is a function of the seed)."""
    return fake_observations(
        BEGIN, END, N_OBSIDS, seed=SEED, not_archived_fraction=0.0, multi_dump_fraction=0.2
    )


def heasarc_tree() -> Path:
    """The fake archive, written once; a stamp marks it complete so a killed fill is redone."""
    stamp = HEASARC / ".complete"
    if not stamp.exists():
        shutil.rmtree(HEASARC, ignore_errors=True)
        print(f"writing {N_OBSIDS} event files to {HEASARC} (once) ...", flush=True)
        fill_heasarc(
            str(HEASARC), observations(), rate_hz=RATE_HZ, duration=DURATION_S, seed=SEED,
            n_glitches=6,
        )  # fmt: skip
        stamp.touch()
    return HEASARC


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_run(api_url: str, workers: int) -> tuple[RunReport, dict[str, float]]:
    """pool.run step by step (same calls), timing each step."""
    store = str(CACHE / f"run-archive-{workers}w.zarr")
    shutil.rmtree(store, ignore_errors=True)
    options = PlanOptions(api_url=api_url, roots=(str(heasarc_tree()),))
    seconds = {}
    started = time.perf_counter()
    run = plan_run(BEGIN.date().isoformat(), END.date().isoformat(), store, options=options)
    seconds["plan"] = time.perf_counter() - started
    entries = read_manifest(run.manifest)
    cpu_before = cpu_seconds()
    pool.process_all(
        entries, store, workers, run_id=run.run_id, places=options.places, progress=False
    )
    seconds["process"] = time.perf_counter() - started - seconds["plan"]
    seconds["process_cpu"] = cpu_seconds() - cpu_before
    report = finalize_run(store, run.run_id, workers=workers)
    seconds["total"] = time.perf_counter() - started
    seconds["finalize"] = seconds["total"] - seconds["plan"] - seconds["process"]
    return report, seconds


def main() -> None:
    heasarc_tree()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} before the runs (shared machine)")
    runs = {}
    with FakeSwiftAPI(observations()) as api:
        for workers in WORKER_COUNTS:
            runs[workers] = timed_run(api.url, workers)
    reports = [r for r, _ in runs.values()]
    if {(r.planned, r.done, r.windows, r.bytes_read) for r in reports} != {
        (N_OBSIDS, N_OBSIDS, reports[0].windows, reports[0].bytes_read)
    }:
        raise SystemExit(f"runs disagree or failed: {[r.to_dict() for r in reports]}")
    print(f"{N_OBSIDS} obsids, {reports[0].windows} windows, "
          f"{reports[0].bytes_read / 1e6:.0f} MB of gzipped event files")  # fmt: skip
    print(f"{'workers':>7}  {'plan s':>6}  {'process s':>9}  {'(cpu s)':>7}  {'finalize s':>10}"
          f"  {'total s':>7}  {'obsids/s':>8}  {'MB/s':>6}")  # fmt: skip
    for workers, (report, t) in runs.items():
        rate, mb_s = report.planned / t["total"], report.bytes_read / 1e6 / t["total"]
        print(f"{workers:>7}  {t['plan']:6.1f}  {t['process']:9.1f}  {t['process_cpu']:7.1f}"
              f"  {t['finalize']:10.1f}  {t['total']:7.1f}  {rate:8.2f}  {mb_s:6.1f}")  # fmt: skip
    one, two = (runs[w][1] for w in WORKER_COUNTS)
    print(f"speed-up {WORKER_COUNTS[1]} vs {WORKER_COUNTS[0]} worker(s): "
          f"{one['total'] / two['total']:.2f}x whole run, "
          f"{one['process'] / two['process']:.2f}x processing step")  # fmt: skip


if __name__ == "__main__":
    main()
