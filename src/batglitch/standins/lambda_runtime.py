"""A local AWS Lambda Runtime API, so handlers run under the real awslambdaric without Docker.

Lambda's own emulator needs a container engine and LocalStack cannot execute functions here, yet the
handlers must be exercised through the same client that runs them in AWS (event decoding, error
shapes, logging). This module serves the four endpoints that client uses on 127.0.0.1, queues
events from `LocalRuntimeAPI.invoke`, and hands back what the runtime answered:

    with serve_runtime(awslambdaric_command("handler.app.plan")) as api:
        ok, result = api.invoke({"begin": "2024-03-01"}, timeout_s=60)

The runtime may be any process that honours AWS_LAMBDA_RUNTIME_API, e.g. a container run with
host networking. `python -m batglitch.standins.lambda_runtime --event JSON -- CMD...` does the same from a
shell and prints one JSON line per event.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from batglitch.standins.localhttp import LocalHTTPServer

RUNTIME_API_ENV = "AWS_LAMBDA_RUNTIME_API"
LOCAL_FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:batglitch-local"
_PREFIX = "/2018-06-01/runtime"
_TERM_GRACE_S = 2.0


@dataclass(eq=False)
class _Invocation:
    """One event on its way through the runtime: queued -> delivered -> answered."""

    request_id: str
    body: bytes
    deadline_ms: int
    delivered: bool = False
    answered: bool = False
    outcome: tuple[bool, Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def settle(self, ok: bool, result: Any) -> None:
        """Record the first outcome only: a late answer must not overwrite a timeout."""
        if self.outcome is None:
            self.outcome = (ok, result)
            self.done.set()


def _error(error_type: str, message: str) -> dict[str, Any]:
    """An error in the shape awslambdaric reports handler failures, so callers see one shape."""
    return {"errorType": error_type, "errorMessage": message}


def _decode(body: bytes) -> Any:
    """Runtime answers are JSON for dict handlers; keep anything else as text rather than fail."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


class LocalRuntimeAPI:
    """The Lambda Runtime API for one function, served on 127.0.0.1 (port 0 picks a free one)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, function_arn: str = LOCAL_FUNCTION_ARN
    ) -> None:
        self.function_arn = function_arn
        self._bind = (host, port)
        self._cond = threading.Condition()
        self._queue: deque[_Invocation] = deque()
        self._invocations: dict[str, _Invocation] = {}
        self._failure: dict[str, Any] | None = None
        self._init_error: dict[str, Any] | None = None
        self._stopping = False
        self._polling = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """host:port, the value of AWS_LAMBDA_RUNTIME_API for the runtime process."""
        if self._server is None:
            raise RuntimeError("runtime API is not started")
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def init_error(self) -> dict[str, Any] | None:
        """What the runtime posted to /runtime/init/error (e.g. the handler failed to import)."""
        return self._init_error

    @property
    def polling(self) -> int:
        """Runtimes blocked on /invocation/next: a runtime that polls has finished its init."""
        with self._cond:
            return self._polling

    def start(self) -> LocalRuntimeAPI:
        self._server = _Server(self._bind, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for one poll interval
            name="lambda-runtime-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Fail what is pending and answer blocked polls with 500, so the runtime client exits.

        A container's PID 1 ignores SIGTERM, so a failed poll is the reliable way to end it.
        """
        with self._cond:
            self._stopping = True
            self._fail_all(_error("Runtime.Stopped", "the local runtime API was stopped"))
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> LocalRuntimeAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def invoke(self, payload: Any, timeout_s: float = 60.0) -> tuple[bool, Any]:
        """Queue `payload` as an event and wait at most `timeout_s` for the runtime's answer.

        Returns (True, decoded response) or (False, error dict with errorType/errorMessage), like
        a synchronous Lambda invoke: a handler exception, an init error, the runtime exiting and a
        timeout are all function errors, not exceptions here.
        """
        deadline_ms = int((time.time() + timeout_s) * 1000)
        inv = _Invocation(str(uuid.uuid4()), json.dumps(payload).encode(), deadline_ms)
        with self._cond:
            if self._server is None or self._stopping:
                raise RuntimeError("runtime API is not running")
            if self._failure is not None:
                return False, self._failure
            self._invocations[inv.request_id] = inv
            self._queue.append(inv)
            self._cond.notify_all()
        if not inv.done.wait(timeout_s):
            with self._cond:
                if inv in self._queue:
                    self._queue.remove(inv)
                    message = f"no runtime asked for the event within {timeout_s:.2f} seconds"
                else:
                    message = f"Task timed out after {timeout_s:.2f} seconds"
                inv.settle(False, _error("Sandbox.Timedout", message))
        assert inv.outcome is not None
        return inv.outcome

    def runtime_exited(self, returncode: int) -> None:
        """Fail pending and later invocations as Lambda does when the runtime process dies."""
        error = _error("Runtime.ExitError", f"Runtime exited with error: exit status {returncode}")
        with self._cond:
            if self._failure is None and not self._stopping:
                self._fail_all(error)

    # --- called from the HTTP handler threads ---

    def _fail_all(self, error: dict[str, Any]) -> None:
        self._failure = error
        self._queue.clear()
        for inv in self._invocations.values():
            inv.settle(False, error)

    def _next(self) -> _Invocation | None:
        """Block until an event is queued; None when stopping."""
        with self._cond:
            self._polling += 1
            while not self._queue and not self._stopping:
                self._cond.wait()
            self._polling -= 1
            if self._stopping:
                return None
            inv = self._queue.popleft()
            inv.delivered = True
            return inv

    def _answer(self, request_id: str, ok: bool, result: Any) -> bool:
        """Accept one answer per delivered event (a late one after a timeout is dropped)."""
        with self._cond:
            inv = self._invocations.get(request_id)
            if inv is None or not inv.delivered or inv.answered:
                return False
            inv.answered = True
            inv.settle(ok, result)
            return True

    def _init_failed(self, error: dict[str, Any]) -> None:
        with self._cond:
            self._init_error = error
            self._fail_all(error)


class _Server(LocalHTTPServer):
    def __init__(self, address: tuple[str, int], api: LocalRuntimeAPI) -> None:
        super().__init__(address, _Handler)
        self.api = api


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the runtime client keeps its connection alive
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the runtime's own log is what matters."""

    def _reply(self, status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path != f"{_PREFIX}/invocation/next":
            self._reply(HTTPStatus.NOT_FOUND, _error("NotFound", self.path))
            return
        inv = self.server.api._next()
        if inv is None:
            self.close_connection = True
            self._reply(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                _error("Runtime.Stopped", "the local runtime API is shutting down"),
                {"Connection": "close"},
            )
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Lambda-Runtime-Aws-Request-Id", inv.request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(inv.deadline_ms))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", self.server.api.function_arn)
        self.send_header("Lambda-Runtime-Trace-Id", _trace_id())
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(inv.body)))
        self.end_headers()
        self.wfile.write(inv.body)

    def do_POST(self) -> None:
        body = _decode(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        api = self.server.api
        if self.path == f"{_PREFIX}/init/error":
            api._init_failed(body if isinstance(body, dict) else _error("Runtime.Unknown", body))
            self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})
            return
        parts = self.path.removeprefix(f"{_PREFIX}/invocation/").split("/")
        if not self.path.startswith(f"{_PREFIX}/invocation/") or len(parts) != 2:
            self._reply(HTTPStatus.NOT_FOUND, _error("NotFound", self.path))
            return
        request_id, kind = parts
        if kind not in ("response", "error"):
            self._reply(HTTPStatus.NOT_FOUND, _error("NotFound", self.path))
            return
        if api._answer(request_id, kind == "response", body):
            self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})
        else:
            message = f"request id {request_id} is unknown, not delivered or already answered"
            self._reply(HTTPStatus.BAD_REQUEST, _error("InvalidRequestID", message))


def _trace_id() -> str:
    """An X-Ray trace header in the format Lambda sends (the client copies it to the env)."""
    return (
        f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
        f"Parent={secrets.token_hex(8)};Sampled=0"
    )


def awslambdaric_command(handler: str, python: str = sys.executable) -> list[str]:
    """The command Lambda's Python base image runs: the runtime client polling for `handler`."""
    return [python, "-m", "awslambdaric", handler]


@contextmanager
def serve_runtime(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: Any = None,
    stderr: Any = None,
    exit_timeout_s: float = 10.0,
) -> Iterator[LocalRuntimeAPI]:
    """Start a runtime API and `command` with AWS_LAMBDA_RUNTIME_API pointing at it.

    `env` is added to this process's environment. On exit the runtime gets SIGTERM (a quiet end;
    a container engine needs a moment to pass it on), then the API stops, failing its poll, which
    ends a runtime that ignores SIGTERM (PID 1 in a container); one still alive after
    `exit_timeout_s` is killed.
    """
    api = LocalRuntimeAPI().start()
    child_env = {**os.environ, **(env or {}), RUNTIME_API_ENV: api.address}
    try:
        proc = subprocess.Popen(list(command), env=child_env, cwd=cwd, stdout=stdout, stderr=stderr)
    except BaseException:
        api.stop()
        raise
    watcher = threading.Thread(target=lambda: api.runtime_exited(proc.wait()), daemon=True)
    watcher.start()
    try:
        yield api
    finally:
        if proc.poll() is None:
            proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_TERM_GRACE_S)
        api.stop()
        try:
            proc.wait(timeout=exit_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Invoke events against a runtime command; one JSON line per event on stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m batglitch.standins.lambda_runtime",
        description="Run a Lambda runtime command against a local Runtime API and invoke events. "
        "The command gets AWS_LAMBDA_RUNTIME_API in its environment; its output goes to stderr.",
    )
    parser.add_argument("--event", action="append", required=True, help="event JSON (repeatable)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per event")
    parser.add_argument("--handler", help="run `python -m awslambdaric HANDLER` with this Python")
    parser.add_argument("command", nargs="*", help="runtime command (after --)")
    args = parser.parse_args(argv)
    if bool(args.handler) == bool(args.command):
        parser.error("give exactly one of --handler or a command after --")
    command = awslambdaric_command(args.handler) if args.handler else args.command
    events = [json.loads(event) for event in args.event]

    all_ok = True
    with serve_runtime(command, stdout=sys.stderr) as api:
        for event in events:
            ok, result = api.invoke(event, timeout_s=args.timeout)
            print(json.dumps({"ok": ok, "result": result}), flush=True)
            all_ok = all_ok and ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
