"""The archive store: publish cost against archive size, reading the largest archive, and the
object-store requests of a worker's write and of planning's "what is complete?".

Run ``PYTHONPATH=infra python benchmarks/bench_store.py`` (``make bench`` does). One run:

1. An archive grows to 1,000, 5,000 and 20,000 obsids of ~10 windows. The filler goes through
   the real publish with rows made in memory (BulkArchive below: no fragment objects, single-
   count DPIs), so building 200,000 rows takes minutes, not hours. At each size, 100 new obsids
   of realistic rows are written by workers (write_fragment) and one publish adds them: that
   publish is timed. The straightforward reference is the publish at 1,000 obsids: the figure at
   20,000 is printed as a ratio to it (target: within 1.5x). The archive is copied at each size
   and the timed publishes run on the copies in turns, so load from elsewhere weighs on every
   size alike. Every timed publish is checked to have added exactly its 100 obsids.
2. On the largest archive: open time, and 100 random windows read one by one.
3. Against LocalStack (started if none answers on LOCALSTACK_PORT), through a counting proxy:
   requests for one worker's obsid, and for completions() at 100 and at 2,000 obsids.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from batglitch.standins.counting_proxy import CountingProxy
from batglitch.standins.rows import fragment
from batglitch.store.archive import Archive, completion_marker
from batglitch.store.reader import open_archive
from batglitch.store.schema import check_rows

SIZES = (1_000, 5_000, 20_000)
ADDED, WINDOWS, READS, ROUNDS = 100, 10, 100, 5
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "bench_store"


def obsid(i: int) -> str:
    return f"{i:011d}"


class BulkArchive(Archive):
    """The real publish, fed from memory: pending() invents markers for obsids [start, stop)
    and their rows are made when publish reads them, one obsid at a time."""

    def __init__(self, url: str, options: dict[str, Any] | None, windows: int) -> None:
        super().__init__(url, options)
        self.windows, self.todo = windows, range(0)

    def pending(self) -> list[dict[str, Any]]:
        template = completion_marker(fragment(obsid(0), 0), "", from_quicklook=False)
        return [
            {**template, "obsid": obsid(i), "n_windows": self.windows, "source": "bulk",
             "attempt": f"20000101T000000000000Z-{i % 16**8:08x}"}
            for i in self.todo
        ]  # fmt: skip

    def _read_fragment(self, marker: dict[str, Any]) -> dict[str, np.ndarray]:
        made = fragment(marker["obsid"], self.windows, seed=int(marker["obsid"]), sparse=True)
        rows = check_rows(made.obsid, made.rows)
        order = np.argsort(rows["window_start"], kind="stable")
        return {name: values[order] for name, values in rows.items()}

    def _clear(self, markers: Any) -> None:
        pass  # nothing was stored

    def prune(self, *, grace_s: float) -> int:
        return 0

    def fill(self, start: int, stop: int, batch: int = 1_000) -> None:
        for lo in range(start, stop, batch):
            self.todo = range(lo, min(lo + batch, stop))
            self.publish()


def timed_publish(archive: Archive, first: int) -> float:
    """One publish adding ADDED new obsids (obsids from ``first``), written by workers first."""
    for i in range(first, first + ADDED):
        archive.write_fragment(fragment(obsid(i), WINDOWS, seed=i))
    started = time.perf_counter()
    summary = archive.publish()
    seconds = time.perf_counter() - started
    assert summary.added == ADDED and summary.replaced == 0, summary
    return seconds


def publish_scaling() -> str:
    """Grow one archive, keeping a copy at each size; then time publishes on the copies in turns
    (round 1 on every size, round 2 on every size, ...) so that load from elsewhere on a shared
    machine weighs on every size alike, and take each size's median."""
    shutil.rmtree(OUT, ignore_errors=True)
    url = str(OUT / "archive")
    bulk = BulkArchive(url, None, WINDOWS)
    copies, have, lines = {}, 0, []
    for size in SIZES:
        started = time.perf_counter()
        bulk.fill(have, size)
        have = size
        copies[size] = OUT / f"archive-{size}"
        shutil.copytree(url, copies[size])
        lines.append(f"  {size:>6} obsids filled in {time.perf_counter() - started:5.1f} s")
    rounds: dict[int, list[float]] = {size: [] for size in SIZES}
    for round_ in range(ROUNDS):
        for size in SIZES:  # obsids apart from the filler and from earlier rounds
            first = 10_000_000 + size * 100 + round_ * ADDED
            rounds[size].append(timed_publish(Archive(str(copies[size])), first))
    seconds = {size: float(np.median(times)) for size, times in rounds.items()}
    for size in SIZES:
        lines.append(
            f"  {size:>6} obsids: publish of +{ADDED} obsids {seconds[size]:6.2f} s "
            f"(median of {ROUNDS}, in turns with the other sizes)"
        )
    ratio = seconds[SIZES[-1]] / seconds[SIZES[0]]
    lines.append(
        f"  {SIZES[-1]} vs {SIZES[0]} obsids: {ratio:.2f}x the time (target <= 1.5x): "
        + ("ok" if ratio <= 1.5 else "MISSED")
    )

    started = time.perf_counter()
    ds = open_archive(url)
    opened = time.perf_counter() - started
    rng = np.random.default_rng(0)
    picks = rng.choice(ds.sizes["window"], READS, replace=False)
    started = time.perf_counter()
    for i in picks:
        row = ds.isel(window=int(i))
        assert int(row.dpi.values.sum()) == int(row.n_events.values)
    reads = time.perf_counter() - started
    lines.append(
        f"  largest ({ds.sizes['window']} rows): open {opened:.2f} s; {READS} random windows "
        f"(dpi + n_events each) {reads:.2f} s, {reads / READS * 1e3:.1f} ms per window"
    )
    return "\n".join(lines)


def localstack_endpoint() -> tuple[str, bool]:
    """LocalStack's endpoint, and whether this run started it (and so stops it)."""
    from batglitch_infra.local import LocalAws

    aws = LocalAws(endpoint=f"http://127.0.0.1:{os.environ.get('LOCALSTACK_PORT', '4566')}")
    if aws.healthy():
        return aws.endpoint, False
    subprocess.run(["bash", str(ROOT / "scripts" / "localstack.sh"), "start"], check=True)
    return aws.endpoint, True


def requests_counted() -> str:
    from batglitch_infra.local import LocalAws

    endpoint, started = localstack_endpoint()
    aws = LocalAws(endpoint=endpoint)
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    lines = []
    try:
        with CountingProxy(endpoint) as proxy:
            options = {**aws.storage_options(), "endpoint_url": proxy.url}
            url = f"s3://{bucket}/archive"
            bulk = BulkArchive(url, options, 1)
            bulk.fill(0, 100)
            proxy.reset()
            Archive(url, options).write_fragment(fragment(obsid(10**9), WINDOWS, seed=1))
            lines.append(
                f"  write one obsid ({WINDOWS} windows): {proxy.total} requests "
                f"({dict(proxy.counts)}; target <= 30)"
            )
            for size in (100, 2_000):
                bulk.fill(len(Archive(url, options).completions()), size)
                proxy.reset()
                assert len(Archive(url, options).completions()) == size
                lines.append(f"  completions() at {size:>5} obsids: {proxy.total} requests")
    finally:
        s3 = aws.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=bucket)
        if started:
            subprocess.run(["bash", str(ROOT / "scripts" / "localstack.sh"), "stop"], check=False)
    return "\n".join(lines)


def main() -> None:
    print(f"store benchmark (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print("publish cost against archive size (local Icechunk repository):", flush=True)
    print(publish_scaling(), flush=True)
    print("object-store requests, counted at LocalStack:", flush=True)
    print(requests_counted())


if __name__ == "__main__":
    main()
