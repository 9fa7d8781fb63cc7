"""The store benchmark at toy sizes: its filler goes through the real publish, so a change to the
marker or the provenance table must keep it working (make bench is not part of make test)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_store


def test_publish_scaling_runs_at_toy_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_store, "OUT", tmp_path)
    monkeypatch.setattr(bench_store, "SIZES", (20, 60))
    monkeypatch.setattr(bench_store, "ROUNDS", 1)
    monkeypatch.setattr(bench_store, "ADDED", 5)
    report = bench_store.publish_scaling()  # asserts every timed publish added its obsids
    assert "60 vs 20 obsids" in report
    archive = bench_store.Archive(str(tmp_path / "archive-60"))
    assert len(archive.completions()) == 60 + 5  # the filler, then one timed publish


def test_filler_rows_read_back(tmp_path):
    size = 3
    bulk = bench_store.BulkArchive(str(tmp_path / "archive"), None, bench_store.WINDOWS)
    bulk.fill(0, size)
    ds = bench_store.open_archive(str(tmp_path / "archive"))
    assert ds.sizes["window"] == size * bench_store.WINDOWS
    assert (ds.dpi.sum(dim=("detx", "dety")) == ds.n_events).all()
