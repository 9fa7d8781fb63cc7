"""Structured JSON logs: every line carries the request id and, while one is processed, the obsid."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "log_context", default=None
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **(_context.get() or {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _StdoutHandler(logging.StreamHandler):
    """Writes to sys.stdout as it is at each record, not as it was when logging was set up (a
    runtime or a test may replace it after the handler module is imported)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def configure(level: int = logging.INFO) -> None:
    """Replace the runtime's plain handler with one JSON handler on stdout (idempotent).

    The package logger's own level is reset too: the CLI sets it (-q), and in a process that ran
    the CLI before (tests, a warm container) that level would silently drop the handlers' lines."""
    root = logging.getLogger()
    root.handlers = [_StdoutHandler()]
    root.handlers[0].setFormatter(JsonFormatter())
    root.setLevel(level)
    logging.getLogger("batglitch").setLevel(logging.NOTSET)
    for chatty in ("httpx", "botocore", "aiobotocore"):  # a line per request or credential lookup
        logging.getLogger(chatty).setLevel(logging.WARNING)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)
