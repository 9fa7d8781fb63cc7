"""Event-file reads: error mapping, storage options (the retry policy itself: test_retry.py)."""

from __future__ import annotations

import time

import pytest
from eventfiles import Events, event_hdus, file_bytes
from isal import igzip

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


def test_fetch_reports_stored_size_and_fits_bytes(tmp_path):
    fits_bytes = file_bytes(event_hdus(Events.of([1.0], 0, 0, 20.0, [[0.0, 2.0]])), gz=False)
    path = tmp_path / "f.evt.gz"
    path.write_bytes(igzip.compress(fits_bytes))
    blob = fetch(str(path))
    assert blob.data == fits_bytes and blob.size == path.stat().st_size
