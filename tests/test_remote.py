"""Event-file reads: error mapping, storage options (the retry policy itself: test_retry.py)."""

from __future__ import annotations

import time

import pytest

from batglitch.sources.fetch import fetch, storage_options_for
from batglitch.sources.retry import RetryPolicy


def test_missing_object_is_not_retried(tmp_path):
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError):
        fetch(str(tmp_path / "absent.evt.gz"), RetryPolicy(attempts=5, backoff_s=1.0))
    assert time.perf_counter() - started < 1.0  # no backoff sleeps


def test_public_bucket_is_read_anonymously_and_others_signed(monkeypatch):
    monkeypatch.delenv("BATGLITCH_S3_ANON", raising=False)
    assert storage_options_for("s3://nasa-heasarc/swift/x")["anon"] is True
    assert storage_options_for("s3://my-archive/x")["anon"] is False
    assert storage_options_for("/local/path") == {}


def test_fetch_reports_size_and_bytes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 10)
    blob = fetch(str(path))
    assert blob.data == b"abc" * 10 and blob.size == 30
