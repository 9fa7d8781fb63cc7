"""`make run-local`: the deployed pipeline, end to end, on LocalStack instead of AWS.

An adapter like the CDK stack, and built like it: the archive bucket, the state machine from the
same definition (infra/statemachine.asl.json, rendered with the same substitutions) and the daily
schedule with the same input. LocalStack cannot run Lambda functions here (no container engine),
so the three Task resources are Step Functions *activities*, served by the very handler code under
the real awslambdaric client (batglitch.standins.lambda_runtime): a poller thread per runtime claims an
activity task, invokes the runtime with the task input and reports its answer or its error type,
which the definition's Retry rules match as they match a Lambda error. The execution drives the
run; nothing here decides what to process.

The world around it is synthetic, as for `make run`: a fake Swift API in this process and the
HEASARC layout in a LocalStack bucket named like the public one, so workers read their event
files from `s3://nasa-heasarc` exactly as in AWS.

    PYTHONPATH=infra python -m batglitch_infra.local --begin 2024-03-01 --end 2024-03-31

Known LocalStack gaps (measured): EventBridge Scheduler stores schedules but never fires them, and
a Distributed Map ignores ToleratedFailurePercentage, so the run reports what AWS would do with
the failure share instead of failing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from batglitch.pipeline.report import RunReport
from batglitch.sources.grbs import GRB_API_URL_ENV
from batglitch.standins import FakeObservation, FakeSwiftAPI, demo_observations, fill_demo_heasarc
from batglitch.standins.demo import demo_bursts
from batglitch.standins.grb_catalog import FakeBurst, FakeGRBCatalog
from batglitch.standins.lambda_runtime import LocalRuntimeAPI, awslambdaric_command, serve_runtime
from batglitch_infra.asl import render, substitutions
from batglitch_infra.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# the port scripts/localstack.sh started it on (LOCALSTACK_PORT, as `make run-local` passes it)
LOCALSTACK_URL = f"http://127.0.0.1:{os.environ.get('LOCALSTACK_PORT', '4566')}"
HEASARC_BUCKET = "nasa-heasarc"
HANDLERS = ("plan", "process", "finalize")
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
# LocalStack answers get_activity_task after up to 60 s; a shorter read timeout loses tasks.
POLL_READ_TIMEOUT_S = 70
# send_task_failure limits: error name 256 characters, cause 32768.
MAX_ERROR, MAX_CAUSE = 256, 32768

Log = Callable[[str], None]


@dataclass(frozen=True)
class LocalAws:
    """Where LocalStack answers, as each client library wants it (credentials are its dummies)."""

    endpoint: str = LOCALSTACK_URL
    region: str = "us-east-1"

    def client(self, service: str, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(**config) if config else None,
        )

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options for s3:// URLs in this process."""
        return {
            "key": "test",
            "secret": "test",
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": self.region},
        }

    def env(self) -> dict[str, str]:
        """Variables that send botocore, and so s3fs (measured), in a child process here."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/_localstack/health", timeout=3) as r:
                return r.status == 200
        except OSError:
            return False


@dataclass(frozen=True)
class World:
    """The synthetic Swift API catalogue, the BAT GRB catalogue (their trigger files are among
    the observations) and how to write its HEASARC tree under a root URL."""

    observations: tuple[FakeObservation, ...]
    fill: Callable[[str, dict[str, Any] | None], object]
    bursts: tuple[FakeBurst, ...] = ()


def demo_world(begin: str, end: str, n: int = 36, seed: int = 1) -> World:
    """The world of `make run` (batglitch.standins.demo), so both targets build the same archive."""
    bursts = tuple(demo_bursts(begin, end, seed=seed))
    observations = (*demo_observations(begin, end, n, seed), *(b.observation() for b in bursts))
    return World(
        observations,
        lambda root, options: fill_demo_heasarc(root, list(observations), seed, options),
        bursts,
    )


def schedule_input(settings: Settings) -> dict[str, Any]:
    """The schedule's target input, as the stack sets it: plan derives begin/end from it."""
    return {"scheduled_time": SCHEDULED_TIME, "lookback_days": settings.lookback_days, "grbs": True}


def exceeds_tolerance(failed: int, total: int, percent: float) -> bool:
    """Whether a Distributed Map on AWS fails with States.ExceedToleratedFailureThreshold."""
    return total > 0 and 100.0 * failed / total > percent


@dataclass(frozen=True)
class Deployment:
    """What deploy() created; activities are per deployment, the rest is reused by name."""

    bucket: str
    state_machine_arn: str
    activities: dict[str, str]
    schedule_name: str

    @property
    def store(self) -> str:
        return f"s3://{self.bucket}/archive"


def _role(iam: Any, name: str, service: str) -> str:
    """A role the service may assume (LocalStack does not enforce IAM; AWS would need it)."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }
    try:
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    except ClientError as err:
        if err.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
        role = iam.get_role(RoleName=name)
    return role["Role"]["Arn"]


def deploy(aws: LocalAws, settings: Settings, *, name: str, bucket: str) -> Deployment:
    """Create or update the stack's resources that LocalStack emulates, under `name`.

    Activity names are fresh every time: a task left on an activity by an earlier run (a worker
    that died mid-poll) would otherwise be handed to this run's workers, or hang its map run.
    """
    aws.client("s3").create_bucket(Bucket=bucket)
    iam, sfn = aws.client("iam"), aws.client("stepfunctions")
    tag = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    activities = {h: sfn.create_activity(name=f"{name}-{h}-{tag}")["activityArn"] for h in HANDLERS}
    definition = json.dumps(
        render(
            substitutions(
                settings,
                plan=activities["plan"],
                process=activities["process"],
                finalize=activities["finalize"],
                bucket=bucket,
            )
        )
    )
    machine_role = _role(iam, f"{name}-states", "states.amazonaws.com")
    try:
        machine = sfn.create_state_machine(
            name=name, definition=definition, roleArn=machine_role, type="STANDARD"
        )["stateMachineArn"]
    except sfn.exceptions.StateMachineAlreadyExists:
        machine = next(
            m["stateMachineArn"]
            for page in sfn.get_paginator("list_state_machines").paginate()
            for m in page["stateMachines"]
            if m["name"] == name
        )
        sfn.update_state_machine(
            stateMachineArn=machine, definition=definition, roleArn=machine_role
        )
    schedule_name = f"{name}-daily"
    schedule = {
        "Name": schedule_name,
        "ScheduleExpression": settings.schedule,
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED" if settings.schedule_enabled else "DISABLED",
        "Target": {
            "Arn": machine,
            "RoleArn": _role(iam, f"{name}-scheduler", "scheduler.amazonaws.com"),
            "Input": json.dumps(schedule_input(settings)),
            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 6 * 3600},
        },
    }
    scheduler = aws.client("scheduler")
    try:
        scheduler.create_schedule(**schedule)
    except scheduler.exceptions.ConflictException:
        scheduler.update_schedule(**schedule)
    return Deployment(bucket, machine, activities, schedule_name)


@dataclass
class ActivityWorker:
    """One poller thread: activity task -> runtime invocation -> task success or failure."""

    aws: LocalAws
    activity_arn: str
    api: LocalRuntimeAPI
    timeout_s: float
    name: str
    log: Log = print
    _stop: threading.Event = field(init=False, default_factory=threading.Event)

    def start(self) -> ActivityWorker:
        self._sfn = self.aws.client(
            "stepfunctions", read_timeout=POLL_READ_TIMEOUT_S, retries={"mode": "standard"}
        )
        threading.Thread(target=self._loop, name=self.name, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop polling. Not joined: LocalStack holds an idle poll for up to 60 s, and the
        thread ends by itself once it returns; a task it claims then fails as Runtime.Stopped."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                task = self._sfn.get_activity_task(
                    activityArn=self.activity_arn, workerName=self.name
                )
            except Exception as exc:  # LocalStack restarting: keep serving, slowly
                if self._stop.is_set():  # stopped while polling: LocalStack may be gone, fine
                    return
                self.log(f"{self.name}: poll failed ({exc}); retrying")
                self._stop.wait(2.0)
                continue
            if task.get("taskToken"):
                self._serve(task["taskToken"], json.loads(task["input"]))

    def _serve(self, token: str, payload: Any) -> None:
        try:
            ok, result = self.api.invoke(payload, timeout_s=self.timeout_s)
        except RuntimeError as exc:  # the runtime API is already stopped
            ok, result = False, {"errorType": "Runtime.Stopped", "errorMessage": str(exc)}
        try:
            if ok:
                self._sfn.send_task_success(taskToken=token, output=json.dumps(result))
            else:
                self._sfn.send_task_failure(
                    taskToken=token,
                    error=str(result.get("errorType", "Runtime.Unknown"))[:MAX_ERROR],
                    cause=str(result.get("errorMessage", ""))[:MAX_CAUSE],
                )
        except ClientError as exc:  # e.g. the task timed out meanwhile: the state machine decides
            self.log(f"{self.name}: could not report a task ({exc})")


@contextlib.contextmanager
def serve_activities(
    aws: LocalAws,
    deployment: Deployment,
    settings: Settings,
    *,
    env: dict[str, str],
    workers: int,
    logdir: Path,
    log: Log = print,
) -> Iterator[list[ActivityWorker]]:
    """One awslambdaric runtime per poller: one for plan, `workers` for process, one for finalize.

    Each invocation may run as long as the function's Lambda timeout; the runtimes' output
    (the handlers' JSON logs) goes to logdir/<handler>-<n>.log.
    """
    logdir.mkdir(parents=True, exist_ok=True)
    pollers = []
    with contextlib.ExitStack() as stack:
        for handler in HANDLERS:
            for n in range(workers if handler == "process" else 1):
                out = stack.enter_context((logdir / f"{handler}-{n}.log").open("ab"))
                api = stack.enter_context(
                    serve_runtime(
                        awslambdaric_command(f"handler.app.{handler}"),
                        env=env,
                        cwd=REPO,
                        stdout=out,
                        stderr=out,
                    )
                )
                poller = ActivityWorker(
                    aws,
                    deployment.activities[handler],
                    api,
                    settings.timeout_s(handler),
                    f"{handler}-{n}",
                    log,
                ).start()
                # LIFO: pollers stop, then the API fails the runtime's poll so it exits on its
                # own before serve_runtime signals it (no reply into a closed socket)
                stack.callback(api.stop)
                stack.callback(poller.stop)
                pollers.append(poller)
        yield pollers


@dataclass(frozen=True)
class Outcome:
    """How one execution ended, with its output and its map run's last item counts."""

    execution_arn: str
    status: str
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    seconds: float
    map_run: dict[str, Any] | None


def _map_run(sfn: Any, execution_arn: str) -> dict[str, Any] | None:
    runs = sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]
    return sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"]) if runs else None


def _progress(status: str, map_run: dict[str, Any] | None) -> str:
    if status != "RUNNING":
        return f"execution {status}"
    if map_run is None:
        return "planning"
    c = map_run["itemCounts"]
    done = c["succeeded"] + c["failed"] + c["timedOut"] + c["aborted"]
    line = (
        f"map run {map_run['status']}: {done}/{c['total']} obsids "
        f"({c['succeeded']} succeeded, {c['failed']} failed, {c['running']} running)"
    )
    return line if map_run["status"] == "RUNNING" else f"{line}; finalizing"


def execute(
    aws: LocalAws,
    deployment: Deployment,
    payload: dict[str, Any],
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    log: Log = print,
) -> Outcome:
    """Start one execution and follow it until it ends; one past `timeout_s` is stopped."""
    sfn = aws.client("stepfunctions")
    started = time.monotonic()
    arn = sfn.start_execution(
        stateMachineArn=deployment.state_machine_arn,
        name=f"local-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
        input=json.dumps(payload),
    )["executionArn"]
    log(f"execution {arn.rsplit(':', 1)[-1]} started with {json.dumps(payload)}")
    shown = None
    while True:
        described = sfn.describe_execution(executionArn=arn)
        map_run = _map_run(sfn, arn)
        line = _progress(described["status"], map_run)
        if line != shown:
            log(f"  [{time.monotonic() - started:6.1f} s] {line}")
            shown = line
        if described["status"] != "RUNNING":
            break
        if time.monotonic() - started > timeout_s:
            sfn.stop_execution(
                executionArn=arn, error="LocalTimeout", cause=f"not done after {timeout_s:.0f} s"
            )
            log(f"  stopped: not done after {timeout_s:.0f} s (raise --timeout?)")
            described = sfn.describe_execution(executionArn=arn)
            break
        time.sleep(poll_s)
    output = described.get("output")
    return Outcome(
        execution_arn=arn,
        status=described["status"],
        output=json.loads(output) if output else None,
        error=described.get("error"),
        cause=described.get("cause"),
        seconds=time.monotonic() - started,
        map_run=map_run,
    )


@dataclass
class Pipeline:
    """A deployed state machine with its workers and fake Swift API running."""

    aws: LocalAws
    deployment: Deployment
    settings: Settings
    api_url: str
    workers: int
    log: Log = print

    def execute(self, payload: dict[str, Any], timeout_s: float = 900.0) -> Outcome:
        return execute(self.aws, self.deployment, payload, timeout_s=timeout_s, log=self.log)

    def scheduled_input(self, scheduled_time: str) -> dict[str, Any]:
        """The stored schedule's target input as Scheduler delivers it at `scheduled_time`.

        LocalStack keeps schedules but never fires them (measured), so this is the firing.
        """
        target = self.aws.client("scheduler").get_schedule(Name=self.deployment.schedule_name)
        return json.loads(target["Target"]["Input"].replace(SCHEDULED_TIME, scheduled_time))


@contextlib.contextmanager
def local_pipeline(
    aws: LocalAws,
    world: World,
    *,
    workdir: Path,
    settings: Settings | None = None,
    workers: int = 2,
    name: str = "batglitch-local",
    bucket: str = "batglitch-local",
    log: Log = print,
) -> Iterator[Pipeline]:
    """Fill the fake HEASARC bucket, deploy, start the fake Swift API and the workers.

    On exit it stops what it started (workers, runtimes, fake API) and deletes this deployment's
    activities; LocalStack, the buckets, the state machine and the schedule stay.
    """
    settings = settings or Settings()
    log(f"writing {len(world.observations)} synthetic observations to s3://{HEASARC_BUCKET}")
    # s3fs would create it with a LocationConstraint, which us-east-1 rejects
    aws.client("s3").create_bucket(Bucket=HEASARC_BUCKET)
    world.fill(f"s3://{HEASARC_BUCKET}", aws.storage_options())
    deployment = deploy(aws, settings, name=name, bucket=bucket)
    log(f"state machine {deployment.state_machine_arn}")
    try:
        with FakeSwiftAPI(world.observations) as api, FakeGRBCatalog(world.bursts) as grbs:
            home = workdir / "home"  # swifttools writes its cache under $HOME
            home.mkdir(parents=True, exist_ok=True)
            env = {
                **aws.env(),
                "HOME": str(home),
                "SWIFT_TOO_API_URL": api.url,
                GRB_API_URL_ENV: grbs.url,
                "BATGLITCH_STORE": deployment.store,  # what the stack gives its functions
                # The public bucket only: the second default root is the internet HTTPS archive.
                "BATGLITCH_ARCHIVE_ROOTS": f"s3://{HEASARC_BUCKET}",
                "BATGLITCH_QUICKLOOK_URL": api.quicklook_url,
                "PYTHONPATH": str(REPO),
                "NO_PROXY": "127.0.0.1,localhost",
            }
            log(f"starting {workers + 2} handler runtimes (logs: {workdir / 'logs'})")
            with serve_activities(
                aws,
                deployment,
                settings,
                env=env,
                workers=workers,
                logdir=workdir / "logs",
                log=log,
            ):
                yield Pipeline(aws, deployment, settings, api.url, workers, log)
    finally:
        sfn = aws.client("stepfunctions")
        for arn in deployment.activities.values():
            sfn.delete_activity(activityArn=arn)


def report(outcome: Outcome, pipeline: Pipeline) -> tuple[str, bool]:
    """The run summary a person reads, and whether the run counts as a success."""
    lines, ok = [], outcome.status == "SUCCEEDED"
    summary = outcome.output or {}
    if not ok:
        lines.append(f"execution {outcome.status}: {outcome.error}: {outcome.cause}")
    elif "plan" in summary:  # the Choice skipped the map: nothing new to process
        plan = summary["plan"]
        lines.append(
            f"nothing to process in {plan['begin']} .. {plan['end']}: "
            f"{plan['skipped_complete']} obsids already complete"
        )
    else:
        known = {f.name for f in fields(RunReport)}
        values = {k: v for k, v in summary.items() if k in known}
        # the finalize function cannot know how many process runtimes served the map
        lines.append(RunReport(**{**values, "workers": pipeline.workers}).table())
    counts = (outcome.map_run or {}).get("itemCounts")
    tolerated = pipeline.settings.tolerated_failure_percentage
    if counts and exceeds_tolerance(counts["failed"], counts["total"], tolerated):
        ok = False
        lines.append(
            f"{counts['failed']} of {counts['total']} obsids failed, more than the tolerated "
            f"{tolerated}%: on AWS the map, and so this execution, would FAIL "
            "(States.ExceedToleratedFailureThreshold); LocalStack ignores the threshold"
        )
    options = pipeline.aws.storage_options()
    lines += [
        f"archive: {pipeline.deployment.store} (LocalStack {pipeline.aws.endpoint})",
        "open it with:",
        f"  batglitch.open_archive({pipeline.deployment.store!r}, storage_options={options!r})",
    ]
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m batglitch_infra.local",
        description="Run the state machine end to end on LocalStack on a synthetic month of GUANO "
        "dumps (the world of `make run`); LocalStack must be running (scripts/localstack.sh start).",
    )
    p.add_argument("--begin", required=True, help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--end", required=True, help="day after the last, YYYY-MM-DD")
    p.add_argument("--obsids", type=int, default=36, help="synthetic observations in the range")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="process runtimes (activity pollers)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before the run is stopped")
    p.add_argument("--endpoint", default=LOCALSTACK_URL, help="LocalStack gateway")
    p.add_argument("--name", default="batglitch-local", help="state machine and resource names")
    p.add_argument("--bucket", default="batglitch-local", help="archive bucket")
    p.add_argument("--workdir", type=Path, default=REPO / "out" / "run-local")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be >= 1")
    aws = LocalAws(args.endpoint)
    if not aws.healthy():
        print(f"LocalStack does not answer at {aws.endpoint}: run scripts/localstack.sh start")
        return 2
    started = time.monotonic()
    world = demo_world(args.begin, args.end, args.obsids, args.seed)
    with local_pipeline(
        aws,
        world,
        workdir=args.workdir,
        workers=args.workers,
        name=args.name,
        bucket=args.bucket,
    ) as pipeline:
        outcome = pipeline.execute(
            {
                "begin": args.begin,
                "end": args.end,
                "store": pipeline.deployment.store,
                "grbs": True,
            },
            timeout_s=args.timeout,
        )
        text, ok = report(outcome, pipeline)
    print(text)
    print(f"run-local: {time.monotonic() - started:.1f} s wall")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
