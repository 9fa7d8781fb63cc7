"""Lambda log lines: JSON, with the request id and obsid of the work in hand."""

from __future__ import annotations

import json
import logging

from handler.logs import JsonFormatter, log_context


def formatted(message: str, **context: str | None) -> dict:
    record = logging.LogRecord("batglitch.x", logging.INFO, __file__, 1, message, None, None)
    with log_context(**context):
        return json.loads(JsonFormatter().format(record))


def test_every_line_carries_the_context_it_was_logged_in():
    line = formatted("done", request_id="req-1", obsid="00012345001")
    assert line["message"] == "done" and line["level"] == "INFO" and line["logger"] == "batglitch.x"
    assert (line["request_id"], line["obsid"]) == ("req-1", "00012345001")


def test_context_nests_and_is_restored_and_none_is_left_out():
    with log_context(request_id="req-2"):
        inner = formatted("inner", obsid="00012345002", run_id=None)
        outer = formatted("outer")
    after = formatted("after")
    assert (
        inner["request_id"] == "req-2" and inner["obsid"] == "00012345002" and "run_id" not in inner
    )
    assert outer["request_id"] == "req-2" and "obsid" not in outer
    assert "request_id" not in after
