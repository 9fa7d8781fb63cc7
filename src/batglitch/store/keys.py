"""The archive's storage key layout, defined once, and the checks every identifier passes before it
becomes part of a key.

Under the archive URL (a local directory or ``s3://bucket/prefix``):

    repo/                             the published archive: an Icechunk repository (engine.py)
    fragments/<obsid>/<attempt>.npz   one worker attempt's rows, one object
    pending/<obsid>/<attempt>.json    its completion marker, written last; publish consumes both
    manifests/<run_id>.json           a run's manifest (a JSON array, Step Functions reads it)
    runs/<run_id>/plan.json           the run's plan record
    runs/<run_id>/results/<obsid>.json  one worker's result record
    runs/<run_id>/report.json         the run's report

Obsids and run/attempt ids come from FITS headers, manifests and events: a ``../`` in any of them
would write outside the archive, so each key function validates what it is given (DESIGN.md:
obsids are ``\\d{11}``, run ids a fixed pattern).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

from batglitch.errors import BatGlitchError

REPO, FRAGMENTS, PENDING, MANIFESTS, RUNS = "repo", "fragments", "pending", "manifests", "runs"

OBSID = re.compile(r"\d{11}")
# what new_attempt_id makes: UTC time to the microsecond, then 8 random hex digits
RUN_ID = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}")
_STAMP = "%Y%m%dT%H%M%S%fZ"


class InvalidIdentifier(BatGlitchError):
    """An obsid or run id that must not become a storage key."""


def validate_obsid(obsid: object) -> str:
    """The obsid itself, if it is 11 digits (Swift's OBS_ID form); InvalidIdentifier otherwise."""
    if not isinstance(obsid, str) or not OBSID.fullmatch(obsid):
        raise InvalidIdentifier(f"obsid {obsid!r} is not 11 digits")
    return obsid


def validate_run_id(run_id: object) -> str:
    """The run (or attempt) id itself, if new_attempt_id could have made it."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise InvalidIdentifier(f"run id {run_id!r} is not of the form {RUN_ID.pattern}")
    return run_id


def new_attempt_id() -> str:
    """Sortable by time, unique across machines: names runs and worker attempts alike."""
    return f"{dt.datetime.now(dt.UTC).strftime(_STAMP)}-{uuid.uuid4().hex[:8]}"


def attempt_cutoff(age_s: float) -> str:
    """The attempt id prefix of ``age_s`` seconds ago: older ids sort below it."""
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)).strftime(_STAMP)


def fragment_key(obsid: str, attempt: str) -> str:
    return f"{FRAGMENTS}/{validate_obsid(obsid)}/{validate_run_id(attempt)}.npz"


def marker_key(obsid: str, attempt: str) -> str:
    return f"{PENDING}/{validate_obsid(obsid)}/{validate_run_id(attempt)}.json"


def parse_attempt_key(key: str) -> tuple[str, str]:
    """(obsid, attempt) of a fragment or marker key, validated: listings come from the store."""
    obsid, name = key.rstrip("/").split("/")[-2:]
    return validate_obsid(obsid), validate_run_id(name.split(".")[0])


def manifest_key(run_id: str) -> str:
    return f"{MANIFESTS}/{validate_run_id(run_id)}.json"


def plan_key(run_id: str) -> str:
    return f"{RUNS}/{validate_run_id(run_id)}/plan.json"


def result_key(run_id: str, obsid: str) -> str:
    return f"{RUNS}/{validate_run_id(run_id)}/results/{validate_obsid(obsid)}.json"


def results_pattern(run_id: str) -> str:
    return f"{RUNS}/{validate_run_id(run_id)}/results/*.json"


def report_key(run_id: str) -> str:
    return f"{RUNS}/{validate_run_id(run_id)}/report.json"
