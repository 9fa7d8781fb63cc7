"""The one retry policy: what is retried, how long it waits, what it raises in the end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest

from batglitch.errors import TransientError
from batglitch.sources.retry import (
    HTTPStatusError,
    PermanentError,
    RetryPolicy,
    call,
    is_permanent,
    retry_after_s,
    wait_s,
)

POLICY = RetryPolicy(attempts=4, backoff_s=1.0, max_wait_s=30.0)


def failing(*errors: BaseException, result: str = "ok"):
    """An action that raises the given errors in turn, then returns result; counts its calls."""
    calls: list[int] = []

    def action() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return action, calls


def test_transient_failures_are_retried_with_jittered_exponential_waits():
    action, calls = failing(ConnectionError("reset"), HTTPStatusError("u", 503), TimeoutError())
    waits: list[float] = []
    assert call(action, "thing", POLICY, sleep=waits.append) == "ok"
    assert len(calls) == 4 and len(waits) == 3
    # full jitter: each wait lies in [0, backoff * 2**(n-1)]
    assert all(0 <= w <= 2**i for i, w in enumerate(waits))


def test_jitter_spreads_waits_and_caps_them():
    capped = RetryPolicy(backoff_s=1.0, max_wait_s=5.0)
    waits = [wait_s(capped, 10, ConnectionError()) for _ in range(200)]
    assert max(waits) <= 5.0 and len(set(waits)) > 100 and max(waits) > 2.5


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError("k"),
        PermissionError("k"),
        HTTPStatusError("u", 404),
        HTTPStatusError("u", 400),
        PermanentError("refused: bad parameter"),
        ModuleNotFoundError("No module named 'swifttools'", name="swifttools"),
    ],
    ids=["missing", "forbidden", "404", "400", "refused", "not-installed"],
)
def test_permanent_answers_are_not_retried(error):
    action, calls = failing(error)
    waits: list[float] = []
    with pytest.raises(type(error)):
        call(action, "thing", POLICY, sleep=waits.append)
    assert len(calls) == 1 and waits == []


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_throttling_and_server_errors_are_transient(status):
    assert not is_permanent(HTTPStatusError("u", status))


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_honoured_and_capped(status):
    action, _ = failing(HTTPStatusError("u", status, "7"), HTTPStatusError("u", status, "3600"))
    waits: list[float] = []
    call(action, "thing", POLICY, sleep=waits.append)
    assert waits == [7.0, POLICY.max_wait_s]


def test_retry_after_as_an_http_date():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=12), usegmt=True)
    assert retry_after_s(HTTPStatusError("u", 503, later), now) == pytest.approx(12.0)
    assert retry_after_s(HTTPStatusError("u", 503, "not a date"), now) is None
    assert retry_after_s(ConnectionError()) is None


def test_gives_up_as_transient_error_naming_the_target():
    action, calls = failing(*[ConnectionError("refused")] * 5)
    with pytest.raises(TransientError, match=r"reading s3://b/k: refused \(after 2 attempts\)"):
        call(action, "reading s3://b/k", RetryPolicy(attempts=2), sleep=lambda s: None)
    assert len(calls) == 2


def test_status_of_other_clients_errors_is_read():
    """fsspec's HTTP filesystem raises aiohttp's error for statuses other than 404."""
    throttled = aiohttp.ClientResponseError(None, (), status=429, headers={"Retry-After": "2"})
    assert not is_permanent(throttled) and retry_after_s(throttled) == 2.0
    assert is_permanent(aiohttp.ClientResponseError(None, (), status=403))
