"""The local Runtime API driven by the real awslambdaric client, plus the protocol edges."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from batglitch.standins.lambda_runtime import (
    LOCAL_FUNCTION_ARN,
    LocalRuntimeAPI,
    awslambdaric_command,
    serve_runtime,
)

pytest.importorskip("awslambdaric")

HANDLERS = """
import os
import time

CALLS = []


def echo(event, context):
    CALLS.append(event)
    return {
        "event": event,
        "calls": len(CALLS),
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
    }


def fail(event, context):
    raise ValueError(f"cannot handle {event['obsid']}")


def slow(event, context):
    time.sleep(event["sleep"])
    return {"slept": event["sleep"]}
"""


@pytest.fixture(scope="module")
def handler_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("handlers")
    (path / "tiny_handlers.py").write_text(textwrap.dedent(HANDLERS))
    return path


def runtime(handler_dir: Path, handler: str, log: Path):
    """awslambdaric for `tiny_handlers.<handler>`, its output in `log`."""
    return serve_runtime(
        awslambdaric_command(f"tiny_handlers.{handler}"),
        env={"PYTHONPATH": str(handler_dir)},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def test_success_then_a_second_invocation_in_the_same_process(handler_dir, tmp_path):
    with runtime(handler_dir, "echo", tmp_path / "log") as api:
        ok, first = api.invoke({"obsid": "00012345001"}, timeout_s=20)
        ok2, second = api.invoke({"obsid": "00012345002"}, timeout_s=20)

    assert ok and ok2
    assert first["event"] == {"obsid": "00012345001"}
    assert second["event"] == {"obsid": "00012345002"}
    assert (first["calls"], second["calls"]) == (1, 2)  # module state survives: one warm runtime
    assert first["request_id"] != second["request_id"]
    uuid.UUID(first["request_id"])
    assert first["arn"] == LOCAL_FUNCTION_ARN
    assert 0 < first["remaining_ms"] <= 20_000
    assert first["trace"].startswith("Root=1-")


def test_raised_exception_becomes_error_type_and_message(handler_dir, tmp_path):
    log = tmp_path / "log"
    with runtime(handler_dir, "fail", log) as api:
        ok, error = api.invoke({"obsid": "00012345001"}, timeout_s=20)
        ok2, error2 = api.invoke({"obsid": "00012345002"}, timeout_s=20)

    assert not ok and not ok2
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "cannot handle 00012345001"
    assert error2["errorMessage"] == "cannot handle 00012345002"
    assert any("tiny_handlers.py" in frame for frame in error["stackTrace"])
    assert "ValueError: cannot handle 00012345001" in log.read_text()


def test_import_failure_is_an_init_error_for_every_invocation(handler_dir, tmp_path):
    with runtime(handler_dir, "missing", tmp_path / "log") as api:
        start = time.monotonic()
        ok, error = api.invoke({}, timeout_s=20)
        assert time.monotonic() - start < 15  # answered by the init error, not the timeout
        assert api.invoke({}, timeout_s=20) == (False, error)

    assert not ok
    assert error["errorType"] == "Runtime.HandlerNotFound"
    assert api.init_error == error


def test_timeout_then_late_answer_is_dropped_and_runtime_serves_on(handler_dir, tmp_path):
    with runtime(handler_dir, "slow", tmp_path / "log") as api:
        ok, error = api.invoke({"sleep": 1.5}, timeout_s=0.5)
        ok2, result = api.invoke({"sleep": 0}, timeout_s=20)

    assert not ok
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"] == "Task timed out after 0.50 seconds"
    assert ok2 and result == {"slept": 0}


def test_runtime_exit_fails_invocations_without_waiting():
    command = [sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(3)"]
    with serve_runtime(command) as api:
        ok, error = api.invoke({}, timeout_s=20)
    assert not ok
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith("exit status 3")


def test_runtime_ignoring_sigterm_is_ended_by_a_failed_poll(handler_dir, tmp_path):
    """PID 1 in a container ignores SIGTERM: leaving the context must still end it promptly."""
    ignore_sigterm = (
        "import runpy, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "sys.argv = ['awslambdaric', 'tiny_handlers.echo']; "
        "runpy.run_module('awslambdaric', run_name='__main__')"
    )
    start = time.monotonic()
    with serve_runtime(
        [sys.executable, "-c", ignore_sigterm],
        env={"PYTHONPATH": str(handler_dir)},
        stdout=(tmp_path / "log").open("w"),
        stderr=subprocess.STDOUT,
        exit_timeout_s=30,
    ) as api:
        assert api.invoke({"n": 1}, timeout_s=20)[0]
    assert time.monotonic() - start < 20  # not the 30 s kill fallback


def _request(address: str, method: str, path: str, body: object = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(address, timeout=10)
    conn.request(method, path, None if body is None else json.dumps(body))
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def test_withdrawn_event_is_never_delivered_and_answers_are_checked():
    prefix = "/2018-06-01/runtime/invocation"
    with LocalRuntimeAPI() as api:
        ok, error = api.invoke({"n": 1}, timeout_s=0.2)  # nobody polls
        assert not ok and error["errorType"] == "Sandbox.Timedout"
        assert error["errorMessage"].startswith("no runtime asked for the event")

        outcome: list[tuple[bool, object]] = []
        caller = threading.Thread(target=lambda: outcome.append(api.invoke({"n": 2}, 10)))
        caller.start()
        status, headers, body = _request(api.address, "GET", f"{prefix}/next")
        assert status == 200
        assert json.loads(body) == {"n": 2}
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        assert int(headers["Lambda-Runtime-Deadline-Ms"]) > time.time() * 1000
        assert headers["Lambda-Runtime-Invoked-Function-Arn"] == LOCAL_FUNCTION_ARN

        assert _request(api.address, "POST", f"{prefix}/{uuid.uuid4()}/response", {})[0] == 400
        assert _request(api.address, "POST", f"{prefix}/{request_id}/response", [7])[0] == 202
        assert _request(api.address, "POST", f"{prefix}/{request_id}/error", {})[0] == 400
        caller.join(10)
        assert outcome == [(True, [7])]


def test_stop_answers_a_blocked_poll_with_500():
    api = LocalRuntimeAPI().start()
    statuses: list[int] = []
    poller = threading.Thread(
        target=lambda: statuses.append(
            _request(api.address, "GET", "/2018-06-01/runtime/invocation/next")[0]
        )
    )
    poller.start()
    deadline = time.monotonic() + 10
    while api.polling == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert api.polling == 1
    api.stop()
    poller.join(10)
    assert statuses == [500]
    with pytest.raises(RuntimeError):
        api.invoke({}, timeout_s=1)
