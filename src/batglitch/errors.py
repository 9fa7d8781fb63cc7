"""Error types. The split matters to orchestrators: transient errors are retried, others not."""

from __future__ import annotations


class BatGlitchError(Exception):
    """Base class for every error this package raises on purpose."""


class EventFileError(BatGlitchError):
    """An event file that cannot be used as it is (corrupt, incomplete, wrong content).

    Permanent: retrying gives the same answer. The message names the file and, when known,
    the obsid.
    """

    def __init__(self, source: str, problem: str, obsid: str | None = None) -> None:
        self.source = source
        self.problem = problem
        self.obsid = obsid
        where = f"obsid {obsid}, {source}" if obsid else source
        super().__init__(f"{where}: {problem}")


class TransientError(BatGlitchError):
    """A remote service failed in a way a later retry may fix (timeouts, 5xx, throttling)."""
