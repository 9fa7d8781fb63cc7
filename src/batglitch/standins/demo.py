"""The synthetic world of `make run` and `make run-local`: one definition, so both make the same archive."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from batglitch.standins.grb_catalog import FakeBurst, fake_bursts
from batglitch.standins.heasarc import fill_heasarc
from batglitch.standins.swift_api import FakeObservation, fake_observations

DEMO_RATE_HZ = 6000.0
# The bursts draw from their own stream of the demo's seed: drawn from the seed itself, as the
# dumps are, their trigger times came out next to the dumps' and 14 glitch windows of 10 obsids
# of `make run` fell inside bursts (in_burst), a coincidence no real sky has.
BURST_STREAM = 1


def demo_observations(begin: str, end: str, n: int = 36, seed: int = 1) -> list[FakeObservation]:
    """A month of GUANO dumps with a few of the problems real runs meet: ~3% of the event files
    are corrupt, ~6% of the observations are not archived yet, and every dump kind is there
    (pointed, pointed + slewing, sp only, slewing only), some begun the month before."""
    return fake_observations(
        datetime.fromisoformat(begin),
        datetime.fromisoformat(end),
        n,
        seed=seed,
        corrupt_fraction=0.03,
        not_archived_fraction=0.06,
        slewing_fraction=0.1,
        sp_fraction=0.1,
        slewing_only_fraction=0.06,
        early_start_fraction=0.1,
    )


def demo_bursts(begin: str, end: str, n: int = 36, seed: int = 1) -> list[FakeBurst]:
    """BAT-detected bursts of the range, their trigger files archived: the real rate is ~8 a
    month; as many as GUANO observations here, so that the baseline trains on enough GRB windows
    (with 12 to ~120 glitch windows it ranked them right, ROC AUC 1.0, and called all GLITCH).
    Independent of demo_observations' dumps for the same seed (BURST_STREAM)."""
    stream = np.random.SeedSequence(seed, spawn_key=(BURST_STREAM,))
    return fake_bursts(datetime.fromisoformat(begin), datetime.fromisoformat(end), n, seed=stream)


def fill_demo_heasarc(
    root_url: str,
    observations: list[FakeObservation],
    seed: int = 1,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Synthetic event files with a handful of glitches and one GRB each, in the HEASARC layout,
    at the real background rate (~6 kHz: 64 ms windows of ~380 background counts)."""
    fill_heasarc(
        root_url, observations, storage_options, seed=seed, rate_hz=DEMO_RATE_HZ, n_glitches=4,
        n_grbs=1,
    )  # fmt: skip


def planted_problems(
    observations: Sequence[FakeObservation], results: Sequence[dict[str, Any]]
) -> list[str]:
    """Say which of a run's bad outcomes the demo planted, so a first run does not read as broken."""
    statuses = {r["obsid"]: r["status"] for r in results}
    corrupt = [o.obsid for o in observations if o.corrupt and statuses.get(o.obsid) == "failed"]
    missing = [
        o.obsid for o in observations if not o.archived and statuses.get(o.obsid) == "not_archived"
    ]
    lines = []
    if corrupt:
        lines.append(
            f"demo: failed {', '.join(corrupt)} on purpose: the demo truncates that event file, "
            "as a real run meets the odd bad file; it is reported and skipped, the rest lands"
        )
    if missing:
        lines.append(
            f"demo: not yet archived {', '.join(missing)} on purpose: real observations reach "
            "the archive days after GUANO lists them; a later run processes them"
        )
    return lines
