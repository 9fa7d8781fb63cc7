"""The Lambda handlers, in-process and under the real awslambdaric client, on fake services."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from batglitch.errors import EventFileError
from batglitch.pipeline.plan import read_manifest
from batglitch.standins import FakeSwiftAPI, fake_observations, fill_heasarc
from batglitch.standins.lambda_runtime import awslambdaric_command, serve_runtime
from batglitch.store.archive import Archive
from batglitch.store.reader import open_archive

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = datetime(2024, 3, 1), datetime(2024, 3, 6)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """Fake Swift API + fake HEASARC tree: 6 obsids, one corrupt, one not yet archived."""
    root = tmp_path_factory.mktemp("heasarc")
    observations = fake_observations(
        BEGIN, END, 6, seed=11, corrupt_fraction=1 / 6, not_archived_fraction=1 / 6
    )
    fill_heasarc(str(root), observations, rate_hz=1500.0, duration=40.0, n_glitches=2)
    with FakeSwiftAPI(observations) as api:
        env = {
            "SWIFT_TOO_API_URL": api.url,
            "BATGLITCH_ARCHIVE_ROOTS": str(root),
            "BATGLITCH_QUICKLOOK_URL": api.quicklook_url,
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        yield {"observations": observations, "env": env}
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Context:
    aws_request_id = "req-test-1"


def items(run: dict) -> list[dict]:
    """What the Distributed Map's ItemSelector hands to process: entry + store + run_id."""
    entries = read_manifest(run["manifest_url"])
    return [{**e.to_dict(), "store": run["store"], "run_id": run["run_id"]} for e in entries]


def test_plan_process_finalize_in_process(services, tmp_path, capsys):
    from handler import app

    store = str(tmp_path / "archive")
    run = app.plan({"begin": "2024-03-01", "end": "2024-03-06", "store": store}, Context())
    assert run["n_obsids"] == 6
    assert run["manifest"]["key"].endswith(f"manifests/{run['run_id']}.json")
    corrupt = {o.obsid for o in services["observations"] if o.corrupt}
    statuses, raised = {}, {}
    for item in items(run):
        try:
            statuses[item["obsid"]] = app.process(item, Context())["status"]
        except EventFileError as exc:
            raised[item["obsid"]] = str(exc)
    assert set(raised) == corrupt
    assert all(obsid in msg and ".evt.gz" in msg for obsid, msg in raised.items())
    assert sorted(statuses.values()).count("not_archived") == 1
    summary = app.finalize({"store": store, "run_id": run["run_id"]}, Context())
    assert summary["failed"] == 1 and summary["not_archived"] == 1
    assert summary["failures"][0]["obsid"] in corrupt
    assert "results" not in summary  # the full report stays in S3, not in the state payload
    ds = open_archive(store)
    assert ds.sizes["window"] == summary["windows"] > 0
    assert Archive(store).versions()[0].run_id == run["run_id"]
    assert set(ds.obsid.values.tolist()) <= set(statuses)
    logged = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    assert any(line.get("obsid") and line.get("request_id") == "req-test-1" for line in logged)


def test_scheduled_plan_covers_the_rolling_range(services, tmp_path):
    from handler import app

    store = str(tmp_path / "archive")
    run = app.plan({"scheduled_time": "2024-03-05T06:00:00Z", "lookback_days": 4, "store": store})
    assert (run["begin"], run["end"]) == ("2024-03-01", "2024-03-05")
    dumps = [d for o in services["observations"] for d in o.dumps]
    in_range = {
        o.obsid
        for o in services["observations"]
        if any(datetime(2024, 3, 1) <= d.trigger_utc < datetime(2024, 3, 5) for d in o.dumps)
    }
    assert dumps and {e.obsid for e in read_manifest(run["manifest_url"])} == in_range


def test_process_under_awslambdaric(services, tmp_path):
    """The same handler through the real runtime client: results and typed errors as on AWS."""
    from handler import app

    store = str(tmp_path / "archive")
    run = app.plan({"begin": "2024-03-01", "end": "2024-03-06", "store": store})
    corrupt = {o.obsid for o in services["observations"] if o.corrupt}
    log = tmp_path / "runtime.log"
    with (
        log.open("w") as out,
        serve_runtime(
            awslambdaric_command("handler.app.process"),
            env={**services["env"], "PYTHONPATH": str(REPO)},
            cwd=REPO,
            stdout=out,
            stderr=out,
        ) as api,
    ):
        answers = {item["obsid"]: api.invoke(item, timeout_s=120) for item in items(run)}
    for obsid, (ok, result) in answers.items():
        if obsid in corrupt:
            assert not ok and result["errorType"] == "EventFileError", result
            assert obsid in result["errorMessage"]
        else:
            assert ok, result
            assert result["status"] in ("done", "no_glitches", "not_archived")
    lines = [json.loads(s) for s in log.read_text().splitlines() if s.startswith("{")]
    assert {line["obsid"] for line in lines if "obsid" in line} >= set(answers) - corrupt
