"""Error types. The split matters to orchestrators: transient errors are retried, others not."""

from __future__ import annotations

from typing import Any


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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while workers ran: they are stopped; what finished stays stored.

    A KeyboardInterrupt, so that no ``except Exception`` on the way up takes it for a failure.
    finished: the results of the obsids that completed (ObsResult); stored: the planned obsids
    whose rows the store holds after the stop (a worker may have stored them as Ctrl-C arrived,
    its result lost), as pipeline.report.stored_obsids counts them.
    """

    def __init__(
        self,
        finished: list[Any],
        not_finished: int,
        *,
        stored: frozenset[str] = frozenset(),
        run_id: str | None = None,
        store: str | None = None,
    ) -> None:
        self.finished, self.not_finished, self.stored = finished, not_finished, stored
        self.run_id, self.store = run_id, store
        super().__init__(f"interrupted: {len(finished)} obsids finished, {not_finished} not")
