"""Which time base a GUANO answer spoke, decided per dump against the event file's own MET.

Recorded answers carry UTC; swifttools assumes Swift time (spacecraft clock) and corrects it.
The two differ by UTCF (-28 s in 2022 to -36.5 s in 2025), so a wrong guess moves every trigger
time by that much. UTC = 2001-01-01 + MET + UTCF; Swift time = 2001-01-01 + MET (DESIGN.md).
The event file (TSTART/TSTOP and GTI, in MET) is the ground truth: a dump read in the right base
lies on the file's data; read in the wrong one it sticks out by |UTCF| where the file begins or
ends inside it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from batglitch.sources.guano import Dump

MET_EPOCH = datetime(2001, 1, 1)
UTC, SWIFT = "utc", "swift"
DEFAULT_BASE = UTC  # what the recorded answers carry, used when no file says otherwise


@dataclass(frozen=True)
class FileSpan:
    """What an event file says about its own time coverage (MET s)."""

    tstart: float
    tstop: float
    gti: np.ndarray  # (n, 2): START, STOP
    utcf: float | None  # UTCFINIT of the header


@dataclass(frozen=True)
class Trigger:
    """A dump's trigger in MET and UTC, with how its time base was decided."""

    triggertype: str
    trigger_met: float
    trigger_utc: datetime
    offset: float
    duration: float
    utcf: float
    time_base: str  # "utc" or "swift"
    checked: bool  # decided against an event file (False: from other dumps or the default)


def met_of(t: datetime, base: str, utcf: float) -> float:
    """MET of a datetime read in `base`; rounded to microseconds as the answers are."""
    seconds = (t - MET_EPOCH).total_seconds()
    return round(seconds - utcf if base == UTC else seconds, 6)


def coverage_s(dump: Dump, base: str, utcf: float, span: FileSpan) -> float | None:
    """Seconds of the dump, read in `base`, that the file's GTIs (else TSTART..TSTOP) cover;
    None when the answer has no begin/end. Read in the right base a dump overlaps its file by
    |UTCF| more wherever the file starts or ends inside the dump."""
    if dump.begin is None or dump.end is None:
        return None
    b, e = met_of(dump.begin, base, utcf), met_of(dump.end, base, utcf)
    gti = span.gti if len(span.gti) else np.array([[span.tstart, span.tstop]])
    return float(np.clip(np.minimum(gti[:, 1], e) - np.maximum(gti[:, 0], b), 0, None).sum())


def edge_mismatch_s(dump: Dump, base: str, utcf: float, span: FileSpan) -> float | None:
    """Seconds between the dump's begin and TSTART or its end and TSTOP, read in `base`,
    whichever fits better: a file may hold less or more than its dump, but shares an edge.
    None when, so read, the dump and the file do not overlap (no evidence)."""
    if dump.begin is None or dump.end is None:
        return None
    b, e = met_of(dump.begin, base, utcf), met_of(dump.end, base, utcf)
    if e <= span.tstart or b >= span.tstop:
        return None
    return min(abs(b - span.tstart), abs(e - span.tstop))


def resolve_triggers(dumps: Sequence[Dump], spans: Sequence[FileSpan]) -> list[Trigger]:
    """Every dump's trigger in MET/UTC. A dump takes the base in which a file covers clearly
    more of it, else the one in which it clearly shares an edge with a file ("clearly": by over
    half its UTCF); the others take the base most dumps of the obsid took, else the default."""
    decided: dict[int, str] = {}
    for i, dump in enumerate(dumps):
        for span, (measure, better) in itertools.product(
            spans, ((coverage_s, max), (edge_mismatch_s, min))
        ):
            utcf = _utcf(dump, span)
            scores = {base: measure(dump, base, utcf, span) for base in (UTC, SWIFT)}
            if None not in scores.values() and abs(scores[UTC] - scores[SWIFT]) > abs(utcf) / 2:
                decided[i] = better(scores, key=scores.__getitem__)
                break
    fallback = Counter(decided.values()).most_common(1)[0][0] if decided else DEFAULT_BASE
    triggers = []
    for i, dump in enumerate(dumps):
        base = decided.get(i, fallback)
        utcf = _utcf(dump, spans[0] if spans else None)
        met = met_of(dump.triggertime, base, utcf)
        triggers.append(
            Trigger(
                triggertype=dump.triggertype,
                trigger_met=met,
                trigger_utc=MET_EPOCH + timedelta(seconds=met + utcf),
                offset=dump.offset,
                duration=dump.duration,
                utcf=utcf,
                time_base=base,
                checked=i in decided,
            )
        )
    return triggers


def _utcf(dump: Dump, span: FileSpan | None) -> float:
    """The dump's own UTCF, else the file's UTCFINIT, else 0 (then both bases agree)."""
    if dump.utcf is not None:
        return dump.utcf
    return span.utcf if span is not None and span.utcf is not None else 0.0
