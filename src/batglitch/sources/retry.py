"""The one retry policy for every remote call: Swift API requests, archive listings, event files.

Built on tenacity rather than hand-written loops. What is retried and how:
- permanent answers fail at once: a missing or forbidden object, a 4xx other than 408/425/429,
  a request the Swift API refused (PermanentError), a client library that is not installed
  (ImportError: the CLI names the extra; a retry cannot install it);
- everything else (timeouts, resets, 5xx, 429, a malformed answer) is tried again after an
  exponential backoff with full jitter, or after the server's Retry-After when it sent one
  (429/503), capped at max_wait_s;
- when the attempts run out, TransientError names what was tried, so orchestrators retry later.
Attempt timeouts are the clients' own (socket and HTTP timeouts set from RetryPolicy.timeout_s),
never a watchdog thread that could outlive its call.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import tenacity

from batglitch.errors import BatGlitchError, EventFileError, TransientError

# 408 Request Timeout, 425 Too Early and 429 Too Many Requests are worth another try.
RETRYABLE_4XX = frozenset({408, 425, 429})
PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class PermanentError(BatGlitchError):
    """A remote answer that a retry would repeat (a 4xx, a refused request)."""


class HTTPStatusError(Exception):
    """An HTTP answer other than 2xx, with what the retry policy needs from it."""

    def __init__(self, url: str, status: int, retry_after: str | None = None) -> None:
        self.url, self.status, self.retry_after = url, status, retry_after
        super().__init__(f"HTTP {status} from {url}")


@dataclass(frozen=True)
class RetryPolicy:
    """attempts in all (1 = no retry); waits start near backoff_s and double, with full jitter."""

    attempts: int = 4
    backoff_s: float = 1.0
    max_wait_s: float = 60.0
    timeout_s: float = 60.0  # per attempt, enforced by the client that makes the request


def is_permanent(exc: BaseException) -> bool:
    # EventFileError: a bad file, over a size cap, a refused place; retrying reads the same bytes
    if isinstance(exc, (PermanentError, EventFileError, ImportError, *PERMANENT_OS_ERRORS)):
        return True
    status = _status(exc)
    return status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX


def retry_after_s(exc: BaseException, now: datetime | None = None) -> float | None:
    """Seconds the server asked to wait (Retry-After as seconds or as an HTTP date), if any."""
    value = getattr(exc, "retry_after", None)
    if value is None:
        headers = getattr(exc, "headers", None) or getattr(
            getattr(exc, "response", None), "headers", None
        )
        value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def wait_s(policy: RetryPolicy, attempt: int, exc: BaseException | None) -> float:
    """How long to wait after failed attempt number `attempt` (1-based)."""
    asked = retry_after_s(exc) if exc is not None else None
    if asked is not None:
        return min(asked, policy.max_wait_s)
    return random.uniform(0.0, min(policy.max_wait_s, policy.backoff_s * 2 ** (attempt - 1)))


def call[T](
    action: Callable[[], T],
    what: str,
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """action() under the policy; permanent errors propagate as they are, the last transient one
    as TransientError naming `what`."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        retry=tenacity.retry_if_exception(lambda e: not is_permanent(e)),
        wait=lambda state: wait_s(
            policy, state.attempt_number, state.outcome.exception() if state.outcome else None
        ),
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(action)
    except BaseException as exc:
        if is_permanent(exc) or not isinstance(exc, Exception) or isinstance(exc, TransientError):
            raise
        n = retrying.statistics.get("attempt_number", policy.attempts)
        raise TransientError(f"{what}: {exc} (after {n} attempts)") from exc


def _status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (ours, httpx's or aiohttp's), if any."""
    for holder in (exc, getattr(exc, "response", None)):
        for name in ("status", "status_code"):
            value = getattr(holder, name, None)
            if isinstance(value, int):
                return value
    return None
