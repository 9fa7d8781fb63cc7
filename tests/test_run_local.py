"""`make run-local`: the state machine on LocalStack, driven by the handlers under awslambdaric.

One deployment serves the module (runtimes take seconds to start): a first execution over ~20
synthetic obsids (one corrupt file, one obsid not archived yet) that must build the same archive
as the local pool, an overlapping second execution, and a scheduled one.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime

import numpy as np
import pytest
from batglitch_infra import local
from batglitch_infra.settings import Settings

from batglitch import pool
from batglitch.pipeline.plan import PlanOptions, read_manifest
from batglitch.standins import FakeObservation, FakeSwiftAPI, fake_observations, fill_heasarc
from batglitch.store.archive import Archive
from batglitch.store.reader import open_archive, open_provenance

BEGIN, END = datetime(2024, 3, 1), datetime(2024, 3, 19)
FIRST = ("2024-03-01", "2024-03-11")
SECOND = ("2024-03-06", "2024-03-16")
# Scheduler fires at 06:30 on 2024-03-19; plan must cover [day - 3 days, day).
SCHEDULED_AT, ROLLING = "2024-03-19T06:30:00Z", ("2024-03-16", "2024-03-19")
SETTINGS = Settings(
    lookback_days=3,
    tolerated_failure_percentage=10.0,
    plan_timeout_s=120,
    process_timeout_s=120,
    finalize_timeout_s=120,
)
RUN_TIMEOUT_S = 240
# Where a file came from differs by design between the two runs (local tree vs LocalStack S3).
PROVENANCE = {"source", "etag", "attempt", "completed_at"}


def in_range(obs: FakeObservation, begin: str, end: str) -> bool:
    b, e = datetime.fromisoformat(begin), datetime.fromisoformat(end)
    return any(b <= d.trigger_utc < e for d in obs.dumps)


def obsids_in(world: local.World, begin: str, end: str) -> set[str]:
    return {o.obsid for o in world.observations if in_range(o, begin, end)}


def archive_of(pipeline: local.Pipeline) -> Archive:
    """The archive as a fresh reader sees it: s3fs would otherwise answer listings from the
    cache of the filesystem instance it shares with every earlier Archive in this process."""
    options = {**pipeline.aws.storage_options(), "use_listings_cache": False}
    return Archive(pipeline.deployment.store, options)


def heasarc_key(url: str) -> str:
    """The HEASARC-relative part of an event-file location, whatever the root."""
    return "swift/data/obs/" + url.split("swift/data/obs/", 1)[1]


@pytest.fixture(scope="module")
def world() -> local.World:
    """36 small observations over 18 days; in FIRST, one file is corrupt and one not archived."""
    observations = fake_observations(BEGIN, END, 36, seed=29, not_archived_fraction=0.0)
    only_first = [
        i for i, o in enumerate(observations) if in_range(o, *FIRST) and not in_range(o, *SECOND)
    ]
    corrupt, unarchived = only_first[0], only_first[1]
    observations[corrupt] = dataclasses.replace(observations[corrupt], corrupt=True)
    observations[unarchived] = dataclasses.replace(observations[unarchived], archived=False)

    def fill(root: str, options: dict | None) -> None:
        fill_heasarc(
            root, observations, options, rate_hz=1500.0, duration=30.0, seed=3, n_glitches=2
        )

    return local.World(tuple(observations), fill)


@pytest.fixture(scope="module")
def pipeline(localstack, world, tmp_path_factory):
    aws = localstack  # the fixture's handle is the adapter's LocalAws
    name = f"batglitch-test-{uuid.uuid4().hex[:8]}"
    try:
        with local.local_pipeline(
            aws,
            world,
            workdir=tmp_path_factory.mktemp("run-local"),
            settings=SETTINGS,
            workers=2,
            name=name,
            bucket=name,
        ) as running:
            yield running
    finally:
        _remove(aws, name, world)


def _remove(aws: local.LocalAws, name: str, world: local.World) -> None:
    """Delete what this module deployed, and its synthetic files in the shared HEASARC bucket."""
    scheduler, sfn, iam, s3 = (aws.client(s) for s in ("scheduler", "stepfunctions", "iam", "s3"))
    scheduler.delete_schedule(Name=f"{name}-daily")
    for machine in sfn.list_state_machines()["stateMachines"]:
        if machine["name"] == name:
            sfn.delete_state_machine(stateMachineArn=machine["stateMachineArn"])
    for role in (f"{name}-states", f"{name}-scheduler"):
        iam.delete_role(RoleName=role)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=name)
    keys = [{"Key": o.key(k)} for o in world.observations if o.archived for k in o.bat_kinds]
    s3.delete_objects(Bucket=local.HEASARC_BUCKET, Delete={"Objects": keys})


@pytest.fixture(scope="module")
def first(pipeline, localstack):
    """The first execution and a snapshot of the archive right after it."""
    store = pipeline.deployment.store
    outcome = pipeline.execute({"begin": FIRST[0], "end": FIRST[1], "store": store}, RUN_TIMEOUT_S)
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    snapshot = open_archive(store, storage_options=localstack.storage_options()).load()
    return outcome, snapshot


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """The same world through the local pool (the `make run` path) into a local directory."""
    tmp = tmp_path_factory.mktemp("reference")
    world.fill(str(tmp / "heasarc"), None)
    store = str(tmp / "archive")
    with FakeSwiftAPI(world.observations) as api:
        report = pool.run(
            *FIRST,
            store,
            workers=1,
            progress=False,
            options=PlanOptions(
                api_url=api.url, roots=(str(tmp / "heasarc"),), quicklook=(api.quicklook_url,)
            ),
        )
    return report, open_archive(store).load()


def test_execution_reports_the_bad_obsid_and_builds_the_pool_archive(
    world, pipeline, first, reference
):
    outcome, got = first
    summary = outcome.output
    corrupt = next(o for o in world.observations if o.corrupt)
    unarchived = next(o for o in world.observations if not o.archived)
    in_first = obsids_in(world, *FIRST)
    assert 18 <= len(in_first) <= 24 and {corrupt.obsid, unarchived.obsid} <= in_first
    assert (summary["planned"], summary["skipped_complete"]) == (len(in_first), 0)
    assert (summary["failed"], summary["not_archived"]) == (1, 1)
    (failure,) = summary["failures"]
    assert failure["obsid"] == corrupt.obsid
    assert corrupt.filename("po") in failure["error"]
    archive = archive_of(pipeline)
    assert archive.completed_obsids() == in_first - {corrupt.obsid, unarchived.obsid}

    ref_report, ref = reference
    for key in (
        "planned",
        "done",
        "no_glitches",
        "not_archived",
        "failed",
        "windows",
        "bytes_read",
        "by_label",
    ):
        assert summary[key] == getattr(ref_report, key), key
    assert got.sizes["window"] == ref.sizes["window"] > 0
    assert set(got.variables) == set(ref.variables)
    for name in sorted(set(ref.variables) - {"source_file"}):
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
    # the provenance of the first execution's own version, by its run id
    got_from = open_provenance(
        archive.url, summary["run_id"], storage_options=archive.storage_options
    ).sortby("obsid")
    ref_from = open_provenance(ref_report.store).sortby("obsid")
    assert set(got_from.variables) == set(ref_from.variables)
    for name in sorted(set(ref_from.variables) - PROVENANCE):
        np.testing.assert_array_equal(got_from[name].values, ref_from[name].values, err_msg=name)
    for urls, ref_urls in ((got.source_file, ref.source_file), (got_from.source, ref_from.source)):
        assert [heasarc_key(u) for u in urls.values] == [heasarc_key(u) for u in ref_urls.values]
    assert all(u.startswith(f"s3://{local.HEASARC_BUCKET}/") for u in got.source_file.values)
    assert got.attrs["algorithm"] == ref.attrs["algorithm"]


def test_failure_threshold_reaches_the_map_run_and_the_report(pipeline, first):
    """AWS fails the map (States.ExceedToleratedFailureThreshold) when more than
    ToleratedFailurePercentage of its items fail; LocalStack 2026.3.0 parses the field and ignores
    it (measured: 2 of 10 items failing at 0, 10 or 30 % still SUCCEEDED). Not tested here: the
    threshold's effect. What is real here and tested: the deployed definition and the map run
    carry the threshold, the map run counts the failed items that finalize reports, and the run
    report applies AWS's rule to those counts."""
    outcome, _ = first
    sfn = pipeline.aws.client("stepfunctions")
    definition = sfn.describe_state_machine(stateMachineArn=pipeline.deployment.state_machine_arn)
    process_map = json.loads(definition["definition"])["States"]["ProcessObsids"]
    tolerated = SETTINGS.tolerated_failure_percentage
    assert process_map["ToleratedFailurePercentage"] == tolerated
    assert outcome.map_run["toleratedFailurePercentage"] == tolerated
    counts = outcome.map_run["itemCounts"]
    assert (counts["failed"], counts["total"]) == (1, outcome.output["planned"])
    assert counts["succeeded"] == counts["total"] - counts["failed"]
    _, ok = local.report(outcome, pipeline)
    assert ok  # 1 of ~20 is within 10 %
    stricter = dataclasses.replace(pipeline, settings=Settings(tolerated_failure_percentage=1.0))
    text, ok = local.report(outcome, stricter)
    assert not ok and "ExceedToleratedFailureThreshold" in text


@pytest.fixture(scope="module")
def second(world, pipeline, first):
    """An execution over a range overlapping the first one, and the markers before it."""
    archive = archive_of(pipeline)
    before = archive.completions()
    outcome = pipeline.execute(
        {"begin": SECOND[0], "end": SECOND[1], "store": pipeline.deployment.store}, RUN_TIMEOUT_S
    )
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    plan = archive.get_json(f"runs/{outcome.output['run_id']}/plan.json")
    planned = {e.obsid for e in read_manifest(plan["manifest"], archive.storage_options)}
    return outcome, before, planned


def test_overlapping_execution_adds_nothing_twice(world, pipeline, first, second):
    _, first_ds = first
    outcome, before, planned = second
    complete = set(before)
    in_second = obsids_in(world, *SECOND)
    assert complete & in_second and in_second - complete  # a real overlap, and new obsids
    assert outcome.output["skipped_complete"] == len(in_second & complete)
    assert planned == in_second - complete

    archive = archive_of(pipeline)
    after = archive.completions()
    assert all(after[o] == before[o] for o in complete)  # complete obsids were not re-run
    bad = {o.obsid for o in world.observations if o.corrupt or not o.archived}
    assert set(after) == complete | (planned - bad)
    ds = open_archive(pipeline.deployment.store, storage_options=archive.storage_options)
    rows = list(zip(ds.obsid.values.tolist(), ds.window_start.values.tolist(), strict=True))
    assert len(rows) == len(set(rows))
    first_rows = zip(
        first_ds.obsid.values.tolist(), first_ds.window_start.values.tolist(), strict=True
    )
    assert set(first_rows) <= set(rows)


def test_view_after_a_second_execution_has_its_obsids(pipeline, second):
    archive = archive_of(pipeline)
    provenance = open_provenance(pipeline.deployment.store, storage_options=archive.storage_options)
    assert set(provenance.obsid.values) == set(archive.completions())
    assert archive.versions()[0].run_id == second[0].output["run_id"]


def test_scheduled_execution_plans_the_rolling_range(world, pipeline):
    """LocalStack's EventBridge Scheduler stores schedules but never fires them (measured: rate,
    cron and at() schedules silent for 150 s; its provider has no timer). So this is the closest
    faithful trigger: the schedule exactly as deployed (get_schedule), its target input with the
    scheduled time filled in as Scheduler does, started on its target state machine. Everything
    from that input on (plan deriving the range, the map, finalize) is the real path."""
    schedule = pipeline.aws.client("scheduler").get_schedule(Name=pipeline.deployment.schedule_name)
    assert schedule["ScheduleExpression"] == SETTINGS.schedule
    assert schedule["State"] == "ENABLED"
    assert schedule["Target"]["Arn"] == pipeline.deployment.state_machine_arn
    payload = pipeline.scheduled_input(SCHEDULED_AT)
    assert payload == {
        "scheduled_time": SCHEDULED_AT,
        "lookback_days": SETTINGS.lookback_days,
        "grbs": True,
    }

    archive = archive_of(pipeline)
    complete = archive.completed_obsids()
    outcome = pipeline.execute(payload, RUN_TIMEOUT_S)
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    summary = outcome.output
    assert (summary["begin"], summary["end"]) == ROLLING
    assert summary["store"] == pipeline.deployment.store  # from the functions' environment
    in_rolling = obsids_in(world, *ROLLING)
    plan = archive.get_json(f"runs/{summary['run_id']}/plan.json")
    planned = {e.obsid for e in read_manifest(plan["manifest"], archive.storage_options)}
    assert planned and planned == in_rolling - complete
    assert summary["skipped_complete"] == len(in_rolling & complete)
    assert archive.completed_obsids() >= planned


@pytest.mark.parametrize(
    ("failed", "total", "percent", "exceeded"),
    [(0, 0, 0.0, False), (1, 20, 5.0, False), (2, 20, 5.0, True), (1, 20, 0.0, True)],
)
def test_exceeds_tolerance_follows_aws(failed, total, percent, exceeded):
    """The map fails only when the failed share is strictly above the tolerated percentage."""
    assert local.exceeds_tolerance(failed, total, percent) is exceeded
