"""The HTTP server under the local stand-ins (fake Swift API, Lambda Runtime API)."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class LocalHTTPServer(ThreadingHTTPServer):
    """Threaded, never blocks shutdown on open keep-alive connections, and treats a client that
    hangs up (a runtime being stopped, a timed-out request) as normal rather than printing a
    traceback."""

    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
