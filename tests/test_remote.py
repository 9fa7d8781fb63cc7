"""Retries, timeouts and error mapping of remote reads."""

from __future__ import annotations

import itertools
import time

import pytest

from batglitch.errors import TransientError
from batglitch.sources.fetch import FetchPolicy, _timed, fetch, storage_options_for, with_retries


def test_retries_with_backoff_then_succeeds():
    calls = []

    def flaky():
        calls.append(time.perf_counter())
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    assert with_retries(flaky, "thing", FetchPolicy(attempts=4, backoff_s=0.05)) == "ok"
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert len(calls) == 3 and gaps[1] > gaps[0] >= 0.05  # exponential backoff


def test_gives_up_as_transient_error_naming_the_target():
    def down():
        raise ConnectionError("refused")

    with pytest.raises(TransientError, match=r"reading s3://b/k: refused \(after 2 attempts\)"):
        with_retries(down, "reading s3://b/k", FetchPolicy(attempts=2, backoff_s=0.01))


def test_missing_object_is_not_retried(tmp_path):
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError):
        fetch(str(tmp_path / "absent.evt.gz"), FetchPolicy(attempts=5, backoff_s=1.0))
    assert time.perf_counter() - started < 1.0  # no backoff sleeps


def test_attempt_timeout_is_enforced():
    def hang():
        time.sleep(5)

    policy = FetchPolicy(timeout_s=0.2, attempts=2, backoff_s=0.01)
    started = time.perf_counter()
    with pytest.raises(TransientError, match="no answer within"):
        with_retries(lambda: _timed(hang, 0.2, "u"), "u", policy)
    assert time.perf_counter() - started < 2.0


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
