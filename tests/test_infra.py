"""Offline checks of the CDK app and the state-machine definition.

Both stack variants (Lambda only, built from an image asset; with Batch, from an existing ECR
image) are synthesized once per module, with cdk-nag's AWS Solutions checks as a validation
plugin, and then inspected as CloudFormation templates. Nothing here needs AWS, Docker or network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The CDK app is not part of the installed package.
import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template
from batglitch_infra import asl
from batglitch_infra.settings import Settings
from batglitch_infra.stack import HANDLERS, HEASARC_ARN, STORE_KEY, BatglitchStack
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import lint

IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/batglitch:v1"
DIGEST = "sha256:" + "ab" * 32
ENVIRONMENT = cdk.Environment(account="123456789012", region="us-east-1")
SETTINGS = {
    "lambda": Settings(
        alarm_email="ops@example.org", process_memory_mb=2560, base_image=f"python:3.12@{DIGEST}"
    ),
    "batch": Settings(
        image_uri=IMAGE_URI,
        batch=True,
        max_concurrency=7,
        tolerated_failure_percentage=12.5,
        schedule="rate(1 day)",
        lookback_days=5,
    ),
}
TRANSIENT = [
    "TransientError",
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.SdkClientException",
    "States.Timeout",
]
PERMANENT = ["EventFileError"]
# Never in the image build context, wherever they sit.
LOCAL_STATE = [".venv", ".localstack", "out", "cdk.out", ".git", "infra/cdk.out"]


@dataclass
class Synth:
    outdir: Path
    stacks: dict[str, BatglitchStack]
    templates: dict[str, dict[str, Any]]
    error: Exception | None  # what app.synth() raised: cdk-nag findings fail the synth

    def template(self, variant: str) -> Template:
        return Template.from_json(self.templates[variant])

    def resources(self, variant: str, kind: str) -> dict[str, dict[str, Any]]:
        return {
            name: resource
            for name, resource in self.templates[variant]["Resources"].items()
            if resource["Type"] == kind
        }


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    context = tmp_path_factory.mktemp("image-context")
    (context / "Dockerfile").write_text("FROM scratch\n")
    (context / "src").mkdir()
    (context / "src" / "keep.py").write_text("")
    for name in LOCAL_STATE:
        (context / name).mkdir(parents=True)
        (context / name / "decoy").write_text("must not reach the image")
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(outdir=str(outdir))
    stacks = {
        "lambda": BatglitchStack(
            app, "BatglitchLambda", settings=SETTINGS["lambda"], image_context=context
        ),
        # with an account and region, as `cdk deploy` with credentials synthesizes it
        "batch": BatglitchStack(app, "BatglitchBatch", settings=SETTINGS["batch"], env=ENVIRONMENT),
    }
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
        error = None
    except Exception as exc:  # reported by test_cdk_nag_passes; templates are written anyway
        error = exc
    templates = {
        variant: json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
        for variant, stack in stacks.items()
    }
    return Synth(outdir, stacks, templates, error)


def _logical_ids(synth: Synth, variant: str, kind: str) -> list[str]:
    return sorted(synth.resources(variant, kind))


def _function_by_handler(synth: Synth, variant: str) -> dict[str, str]:
    """handler name (plan/process/finalize) -> logical id of the function whose CMD runs it."""
    by_cmd = {
        resource["Properties"]["ImageConfig"]["Command"][0]: name
        for name, resource in synth.resources(variant, "AWS::Lambda::Function").items()
    }
    return {handler: by_cmd[cmd] for handler, cmd in HANDLERS.items()}


def _archive_bucket(synth: Synth, variant: str) -> str:
    (name,) = [
        name
        for name, resource in synth.resources(variant, "AWS::S3::Bucket").items()
        if "LoggingConfiguration" in resource["Properties"]
    ]
    return name


def _statements(synth: Synth, variant: str) -> list[tuple[str, dict[str, Any]]]:
    """(role logical id, statement) for every identity policy statement of the template."""
    found = []
    for resource in synth.resources(variant, "AWS::IAM::Policy").values():
        for role in resource["Properties"]["Roles"]:
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                found.append((role["Ref"], statement))
    return found


def _image_uri(value: dict[str, Any]) -> str:
    """An image URI as CloudFormation builds it, with the partition's URL suffix filled in."""
    url_suffix = {"Ref": "AWS::URLSuffix"}
    return "".join("amazonaws.com" if p == url_suffix else p for p in value["Fn::Join"][1])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _render(settings: Settings) -> dict[str, Any]:
    return asl.render(
        asl.substitutions(
            settings,
            plan="arn:aws:lambda:us-east-1:123456789012:function:plan",
            process="arn:aws:lambda:us-east-1:123456789012:function:process",
            finalize="arn:aws:lambda:us-east-1:123456789012:function:finalize",
            bucket="archive-bucket",
        )
    )


def _first_retrier(retry: list[dict[str, Any]], error: str) -> dict[str, Any] | None:
    """The retrier Step Functions applies to `error`: the first whose ErrorEquals matches."""
    for retrier in retry:
        if error in retrier["ErrorEquals"] or "States.ALL" in retrier["ErrorEquals"]:
            return retrier
    return None


# --- cdk-nag and cfn-lint ----------------------------------------------------------------------


def test_cdk_nag_passes(synth: Synth) -> None:
    """Both ways: without an environment (tokens for region and account) and with one."""
    assert cdk.Token.is_unresolved(synth.stacks["lambda"].account)
    assert synth.stacks["batch"].account == ENVIRONMENT.account
    assert synth.error is None, f"synth failed (cdk-nag findings are printed above): {synth.error}"
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    violations = [v for plugin in report["pluginReports"] for v in plugin["violations"]]
    assert violations == []  # warnings included


def test_every_acknowledgement_names_a_rule_and_a_reason(synth: Synth) -> None:
    acknowledged = {}
    for stack in synth.stacks.values():
        for construct in stack.node.find_all():
            for entry in construct.node.metadata:
                if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                    acknowledged.update(
                        (rule, reason)
                        for rule, reason in entry.data.items()
                        if "AwsSolutions" in rule
                    )
    assert acknowledged
    for rule, reason in acknowledged.items():
        assert rule.startswith("Annotation::AwsSolutions-IAM5["), rule  # wildcard resources only
        assert len(reason.split()) >= 6, (rule, reason)


@pytest.mark.parametrize("variant", sorted(SETTINGS))
def test_cfn_lint_finds_no_errors(synth: Synth, variant: str) -> None:
    matches = lint(json.dumps(synth.templates[variant]), regions=["us-east-1"])
    assert [m for m in matches if m.rule.id.startswith("E")] == []
    # The only warnings allowed: CDK's explicit DependsOn next to a GetAtt on the same role, and
    # (with an account and region) the VPC's availability zones, which CDK resolves at synth.
    allowed = {"W3005", "W3010"} if variant == "batch" else {"W3005"}
    assert {m.rule.id for m in matches} <= allowed


# --- storage -----------------------------------------------------------------------------------


def test_archive_bucket_is_private_encrypted_tls_only_and_logged(synth: Synth) -> None:
    template = synth.template("lambda")
    bucket = _archive_bucket(synth, "lambda")
    resource = synth.templates["lambda"]["Resources"][bucket]
    assert resource["DeletionPolicy"] == "Retain"
    properties = resource["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    log_target = properties["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    assert log_target != bucket
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_scratch_prefixes_expire_and_nothing_else(synth: Synth) -> None:
    bucket = _archive_bucket(synth, "lambda")
    rules = synth.templates["lambda"]["Resources"][bucket]["Properties"]["LifecycleConfiguration"]
    expiring = {
        rule["Prefix"]: rule["ExpirationInDays"]
        for rule in rules["Rules"]
        if "ExpirationInDays" in rule
    }
    days = SETTINGS["lambda"].scratch_expiry_days
    # the plan's manifests inside the store, the Map's result files at the root; never the store
    assert expiring == {"archive/manifests/": days, "runs/": days}


@pytest.mark.parametrize("variant", sorted(SETTINGS))
def test_archive_keeps_old_versions_for_a_while(synth: Synth, variant: str) -> None:
    """Any bad write or delete is recoverable; old versions expire so the bill stays bounded."""
    bucket = synth.templates[variant]["Resources"][_archive_bucket(synth, variant)]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (old,) = [
        r for r in bucket["LifecycleConfiguration"]["Rules"] if "NoncurrentVersionExpiration" in r
    ]
    assert 1 <= old["NoncurrentVersionExpiration"]["NoncurrentDays"] <= 90
    assert old["ExpiredObjectDeleteMarker"] is True and "Prefix" not in old


# --- compute -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(SETTINGS))
def test_three_functions_one_image_handler_cmds_and_sizes(synth: Synth, variant: str) -> None:
    settings = SETTINGS[variant]
    functions = synth.resources(variant, "AWS::Lambda::Function")
    assert len(functions) == 3
    assert len({json.dumps(f["Properties"]["Code"]["ImageUri"]) for f in functions.values()}) == 1
    for handler, name in _function_by_handler(synth, variant).items():
        properties = functions[name]["Properties"]
        assert properties["PackageType"] == "Image"
        assert properties["MemorySize"] == settings.memory_mb(handler)
        assert properties["Timeout"] == settings.timeout_s(handler)
        assert properties["Environment"]["Variables"]["BATGLITCH_STORE"]["Fn::Join"][1][-1] == (
            "/archive"
        )
        assert properties["TracingConfig"] == {"Mode": "Active"}
        log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert synth.templates[variant]["Resources"][log_group]["Properties"]["RetentionInDays"]


def test_existing_ecr_image_is_used_as_given(synth: Synth) -> None:
    for function in synth.resources("batch", "AWS::Lambda::Function").values():
        assert _image_uri(function["Properties"]["Code"]["ImageUri"]) == IMAGE_URI
    manifest = json.loads((synth.outdir / "BatglitchBatch.assets.json").read_text())
    assert manifest.get("dockerImages", {}) == {}  # nothing to build


def test_the_image_base_is_pinned_by_digest_when_asked(synth: Synth) -> None:
    (assets,) = synth.outdir.glob(f"{synth.stacks['lambda'].artifact_id}.assets.json")
    (image,) = json.loads(assets.read_text())["dockerImages"].values()
    assert image["source"]["dockerBuildArgs"] == {"BASE_IMAGE": f"python:3.12@{DIGEST}"}
    dockerfile = (Path(__file__).resolve().parents[1] / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=" in dockerfile and "@sha256:<digest>" in dockerfile  # documented


def test_image_asset_leaves_local_state_out(synth: Synth) -> None:
    manifest = json.loads((synth.outdir / "BatglitchLambda.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    staged = synth.outdir / image["source"]["directory"]
    assert (staged / "Dockerfile").is_file()
    assert (staged / "src" / "keep.py").is_file()
    for name in LOCAL_STATE:
        assert not (staged / name).exists(), name


def test_every_log_group_has_retention(synth: Synth) -> None:
    for variant in SETTINGS:
        groups = synth.resources(variant, "AWS::Logs::LogGroup")
        assert len(groups) >= 4
        for group in groups.values():
            assert group["Properties"]["RetentionInDays"] > 0


# --- orchestration -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(SETTINGS))
def test_state_machine_is_the_asl_file_with_substitutions(synth: Synth, variant: str) -> None:
    settings = SETTINGS[variant]
    (machine,) = synth.resources(variant, "AWS::StepFunctions::StateMachine").values()
    properties = machine["Properties"]
    key = properties["DefinitionS3Location"]["Key"]
    assert (synth.outdir / f"asset.{key}").read_text() == asl.DEFINITION_PATH.read_text()
    values = properties["DefinitionSubstitutions"]
    assert set(values) == asl.placeholders()
    functions = _function_by_handler(synth, variant)
    for handler, name in functions.items():
        assert values[f"{handler.title()}FunctionArn"] == {"Fn::GetAtt": [name, "Arn"]}
        timeout = int(values[f"{handler.title()}TimeoutSeconds"])
        assert timeout > settings.timeout_s(handler)  # Lambda's own timeout fires first
    assert values["ArchiveBucket"] == {"Ref": _archive_bucket(synth, variant)}
    assert int(values["MaxConcurrency"]) == settings.max_concurrency
    assert float(values["ToleratedFailurePercentage"]) == settings.tolerated_failure_percentage
    assert properties["TracingConfiguration"] == {"Enabled": True}
    assert properties["LoggingConfiguration"]["Level"] == "ALL"


def test_schedule_passes_scheduled_time_and_lookback(synth: Synth) -> None:
    for variant, settings in SETTINGS.items():
        (schedule,) = synth.resources(variant, "AWS::Scheduler::Schedule").values()
        properties = schedule["Properties"]
        assert properties["ScheduleExpression"] == settings.schedule
        assert properties["State"] == "ENABLED"
        target = properties["Target"]
        (machine,) = _logical_ids(synth, variant, "AWS::StepFunctions::StateMachine")
        assert target["Arn"] == {"Ref": machine}
        assert json.loads(target["Input"]) == {
            "scheduled_time": "<aws.scheduler.scheduled-time>",
            "lookback_days": settings.lookback_days,
            "grbs": True,
        }
        role = target["RoleArn"]["Fn::GetAtt"][0]
        trust = synth.templates[variant]["Resources"][role]["Properties"]
        (principal,) = trust["AssumeRolePolicyDocument"]["Statement"]
        assert principal["Principal"] == {"Service": "scheduler.amazonaws.com"}
        granted = [s for r, s in _statements(synth, variant) if r == role]
        assert granted == [
            {"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": machine}}
        ]


def test_failed_and_timed_out_executions_alarm_to_sns(synth: Synth) -> None:
    for variant in SETTINGS:
        alarms = synth.resources(variant, "AWS::CloudWatch::Alarm").values()
        (machine,) = _logical_ids(synth, variant, "AWS::StepFunctions::StateMachine")
        (topic,) = _logical_ids(synth, variant, "AWS::SNS::Topic")
        assert {a["Properties"]["MetricName"] for a in alarms} == {
            "ExecutionsFailed",
            "ExecutionsTimedOut",
        }
        for alarm in alarms:
            properties = alarm["Properties"]
            assert properties["Namespace"] == "AWS/States"
            assert properties["Dimensions"] == [
                {"Name": "StateMachineArn", "Value": {"Ref": machine}}
            ]
            assert properties["AlarmActions"] == [{"Ref": topic}]
            assert properties["Threshold"] == 1
    subscriptions = synth.resources("lambda", "AWS::SNS::Subscription").values()
    assert [s["Properties"]["Endpoint"] for s in subscriptions] == ["ops@example.org"]
    assert synth.resources("batch", "AWS::SNS::Subscription") == {}


# --- IAM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(SETTINGS))
def test_no_wildcard_grants_and_no_managed_policies(synth: Synth, variant: str) -> None:
    for role, statement in _statements(synth, variant):
        actions = _as_list(statement["Action"])
        resources = _as_list(statement["Resource"])
        if statement["Effect"] == "Deny":  # finalize's guard on the workers' keys, nothing else
            assert actions == ["s3:PutObject"], (role, statement)
            continue
        assert not any(a == "*" or a.endswith(":*") for a in actions), (role, statement)
        if any(a.startswith("s3:") for a in actions):
            assert "*" not in resources, (role, statement)
    for role in synth.resources(variant, "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]


@pytest.mark.parametrize("variant", sorted(SETTINGS))
def test_heasarc_is_read_only_and_only_for_processing(synth: Synth, variant: str) -> None:
    readers = set()
    for role, statement in _statements(synth, variant):
        resources = _as_list(statement["Resource"])
        if any(isinstance(r, str) and r.startswith(HEASARC_ARN) for r in resources):
            assert set(_as_list(statement["Action"])) <= {"s3:GetObject", "s3:ListBucket"}
            assert set(resources) <= {HEASARC_ARN, f"{HEASARC_ARN}/*"}
            readers.add(role)
    process_role = synth.resources(variant, "AWS::Lambda::Function")[
        _function_by_handler(synth, variant)["process"]
    ]["Properties"]["Role"]["Fn::GetAtt"][0]
    expected = {process_role}
    if variant == "batch":
        (job,) = synth.resources("batch", "AWS::Batch::JobDefinition").values()
        expected.add(job["Properties"]["ContainerProperties"]["JobRoleArn"]["Fn::GetAtt"][0])
    assert readers == expected


def _writes(synth: Synth, variant: str) -> dict[str, dict[str, set[str]]]:
    """role logical id -> effect:action -> key patterns in the archive bucket it is granted on."""
    bucket = _archive_bucket(synth, variant)
    found: dict[str, dict[str, set[str]]] = {}
    for role, statement in _statements(synth, variant):
        for action in _as_list(statement["Action"]):
            if action not in ("s3:PutObject", "s3:DeleteObject"):
                continue
            for resource in _as_list(statement["Resource"]):
                head, suffix = resource["Fn::Join"][1]
                assert head == {"Fn::GetAtt": [bucket, "Arn"]}, (role, statement)
                key = f"{statement['Effect']}:{action}"
                found.setdefault(role, {}).setdefault(key, set()).add(suffix.lstrip("/"))
    return found


def _role_of(synth: Synth, variant: str, handler: str) -> str:
    functions = synth.resources(variant, "AWS::Lambda::Function")
    return functions[_function_by_handler(synth, variant)[handler]]["Properties"]["Role"][
        "Fn::GetAtt"
    ][0]


@pytest.mark.parametrize("variant", sorted(SETTINGS))
def test_each_step_writes_only_its_own_prefixes(synth: Synth, variant: str) -> None:
    """The key layout of store/keys.py: plan puts manifests and plan records, process puts
    fragments, markers and result records (never the Icechunk repository), finalize puts the
    repository and the report and deletes what it published, but may never put a worker's keys;
    nobody else deletes."""
    writes = _writes(synth, variant)
    store = f"{STORE_KEY}/"
    assert writes[_role_of(synth, variant, "plan")] == {
        "Allow:s3:PutObject": {f"{store}manifests/*", f"{store}runs/*/plan.json"}
    }
    process = {
        "Allow:s3:PutObject": {
            f"{store}fragments/*",
            f"{store}pending/*",
            f"{store}runs/*/results/*",
        }
    }
    assert writes[_role_of(synth, variant, "process")] == process
    assert writes[_role_of(synth, variant, "finalize")] == {
        "Allow:s3:PutObject": {f"{store}*"},
        "Allow:s3:DeleteObject": {f"{store}*"},
        "Deny:s3:PutObject": {f"{store}fragments/*", f"{store}pending/*", f"{store}manifests/*"},
    }
    if variant == "batch":  # a Batch job does what the process function does
        (job,) = synth.resources("batch", "AWS::Batch::JobDefinition").values()
        job_role = job["Properties"]["ContainerProperties"]["JobRoleArn"]["Fn::GetAtt"][0]
        assert writes[job_role] == process
    machine_role = next(
        r["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        for r in synth.resources(variant, "AWS::StepFunctions::StateMachine").values()
    )
    assert writes[machine_role] == {"Allow:s3:PutObject": {"runs/*"}}  # the Map's results
    assert len(writes) == 4 + (variant == "batch")


def test_state_machine_may_start_only_its_own_child_executions(synth: Synth) -> None:
    (machine,) = synth.resources("lambda", "AWS::StepFunctions::StateMachine").values()
    name = machine["Properties"]["StateMachineName"]
    role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    granted = {
        action: statement["Resource"]
        for r, statement in _statements(synth, "lambda")
        if r == role
        for action in _as_list(statement["Action"])
        if action.startswith("states:")
    }
    assert granted["states:StartExecution"]["Fn::Join"][1][-1] == f":stateMachine:{name}"
    assert granted["states:DescribeExecution"]["Fn::Join"][1][-1] == f":execution:{name}/*"
    invoked = [
        resource
        for r, statement in _statements(synth, "lambda")
        if r == role and statement["Action"] == "lambda:InvokeFunction"
        for resource in _as_list(statement["Resource"])
    ]
    targets = {r["Fn::GetAtt"][0] for r in invoked if "Fn::GetAtt" in r}
    assert targets == set(_function_by_handler(synth, "lambda").values())


# --- optional Batch ----------------------------------------------------------------------------


def test_batch_only_when_asked(synth: Synth) -> None:
    kinds = {r["Type"] for r in synth.templates["lambda"]["Resources"].values()}
    assert not any(kind.startswith(("AWS::Batch::", "AWS::EC2::")) for kind in kinds)
    (environment,) = synth.resources("batch", "AWS::Batch::ComputeEnvironment").values()
    assert environment["Properties"]["ComputeResources"]["Type"] == "FARGATE"
    assert len(synth.resources("batch", "AWS::Batch::JobQueue")) == 1
    (job,) = synth.resources("batch", "AWS::Batch::JobDefinition").values()
    container = job["Properties"]["ContainerProperties"]
    assert job["Properties"]["PlatformCapabilities"] == ["FARGATE"]
    # the image's entrypoint prefixes `batglitch`; the array index comes from the environment
    assert container["Command"][:3] == ["process", "--manifest", "Ref::manifest"]
    assert "--index" not in container["Command"]
    # every parameter has a default; manifest and run_id are given per submission
    assert set(job["Properties"]["Parameters"]) == {"store", "manifest", "run_id"}
    assert _image_uri(container["Image"]) == IMAGE_URI
    assert len(synth.resources("batch", "AWS::EC2::FlowLog")) == 1


def test_batch_tasks_have_no_public_ip_and_a_read_only_root(synth: Synth) -> None:
    (job,) = synth.resources("batch", "AWS::Batch::JobDefinition").values()
    container = job["Properties"]["ContainerProperties"]
    assert container["NetworkConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert container["ReadonlyRootFilesystem"] is True
    assert [m["ContainerPath"] for m in container["MountPoints"]] == ["/tmp"]  # HOME
    # no internet route at all: no internet gateway, no NAT; S3 through a gateway endpoint
    kinds = {r["Type"] for r in synth.templates["batch"]["Resources"].values()}
    assert not kinds & {"AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EIP"}
    endpoints = synth.resources("batch", "AWS::EC2::VPCEndpoint").values()
    services = {
        "".join(p for p in e["Properties"]["ServiceName"]["Fn::Join"][1] if isinstance(p, str))
        if isinstance(e["Properties"]["ServiceName"], dict)
        else e["Properties"]["ServiceName"]
        for e in endpoints
    }
    assert any(s.endswith(".s3") for s in services), services
    gateway = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"]
    assert len(gateway) == 1


# --- the state-machine definition itself --------------------------------------------------------


def test_definition_flow_plan_choice_map_finalize() -> None:
    definition = _render(Settings())
    states = definition["States"]
    assert definition["StartAt"] == "Plan"
    plan = states["Plan"]
    # direct resource form: the same definition runs Lambda ARNs on AWS and activity ARNs locally
    assert plan["Resource"].endswith(":function:plan")
    choice = states[plan["Next"]]
    assert choice["Type"] == "Choice"
    (rule,) = choice["Choices"]
    assert rule["Variable"].endswith(".n_obsids")
    assert rule["NumericGreaterThan"] == 0
    assert states[choice["Default"]]["Type"] == "Succeed"
    fan_out = states[rule["Next"]]
    assert fan_out["Type"] == "Map"
    assert fan_out["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert fan_out["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert fan_out["ItemReader"]["ReaderConfig"]["InputType"] == "JSON"
    assert fan_out["MaxConcurrency"] == Settings().max_concurrency
    assert fan_out["ToleratedFailurePercentage"] == Settings().tolerated_failure_percentage
    writer = fan_out["ResultWriter"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject"
    assert writer["Parameters"]["Bucket"] == "archive-bucket"
    assert writer["Parameters"]["Prefix.$"].startswith("States.Format('runs/{}'")
    finalize = states[fan_out["Next"]]
    assert finalize["Resource"].endswith(":function:finalize")
    assert set(finalize["Parameters"]) == {"store.$", "run_id.$"}
    # a failed map (over the tolerated threshold) still finalizes what completed, then fails
    (catcher,) = fan_out["Catch"]
    assert catcher["ErrorEquals"] == ["States.ALL"] and catcher["Next"] == "Finalize"
    outcome = states[finalize["Next"]]
    (failed_map,) = outcome["Choices"]
    assert failed_map["Variable"] == catcher["ResultPath"] and failed_map["IsPresent"] is True
    assert states[failed_map["Next"]]["Type"] == "Fail"
    done = {"Type": "Pass", "OutputPath": finalize["ResultPath"], "End": True}
    assert states[outcome["Default"]] == done  # the execution's output: the run summary


def test_items_get_store_and_run_id_merged_in() -> None:
    fan_out = _render(Settings())["States"]["ProcessObsids"]
    (selector,) = fan_out["ItemSelector"].items()
    assert selector == ("input.$", "States.JsonMerge($$.Map.Item.Value, $.job, false)")
    (process,) = fan_out["ItemProcessor"]["States"].values()
    assert process["InputPath"] == "$.input"
    assert process["Resource"].endswith(":function:process")
    plan = _render(Settings())["States"]["Plan"]
    assert plan["ResultSelector"]["job"] == {"store.$": "$.store", "run_id.$": "$.run_id"}


def test_transient_errors_retry_with_backoff_and_permanent_ones_never() -> None:
    states = _render(Settings())["States"]
    (process,) = states["ProcessObsids"]["ItemProcessor"]["States"].values()
    for task in (states["Plan"], process, states["Finalize"]):
        for error in TRANSIENT:
            retrier = _first_retrier(task["Retry"], error)
            assert retrier is not None, error
            assert retrier["MaxAttempts"] >= 2
            assert retrier["BackoffRate"] > 1
            assert retrier["JitterStrategy"] == "FULL"
            assert retrier["MaxDelaySeconds"] >= retrier["IntervalSeconds"]
        for error in PERMANENT:
            retrier = _first_retrier(task["Retry"], error)
            assert retrier is None or retrier["MaxAttempts"] == 0, error


def test_definition_passes_the_asl_schema_and_the_schema_bites() -> None:
    def errors(definition: dict[str, Any]) -> list[str]:
        template = {
            "Resources": {
                "Machine": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {
                        "Definition": definition,
                        "RoleArn": "arn:aws:iam::123456789012:role/machine",
                    },
                }
            }
        }
        return [m.rule.id for m in lint(json.dumps(template)) if m.rule.id.startswith("E")]

    for settings in SETTINGS.values():
        assert errors(_render(settings)) == []
    broken = _render(Settings())
    broken["States"]["Plan"]["Type"] = "Tusk"
    assert errors(broken) != []


def test_render_wants_exactly_the_placeholders() -> None:
    values = asl.substitutions(Settings(), plan="p", process="q", finalize="f", bucket="b")
    assert set(values) == asl.placeholders()
    with pytest.raises(KeyError, match="MaxConcurrency"):
        asl.render({k: v for k, v in values.items() if k != "MaxConcurrency"})
    with pytest.raises(KeyError, match="Surplus"):
        asl.render({**values, "Surplus": "1"})
    rendered = json.dumps(asl.render(values))
    assert "${" not in rendered
    assert "$$.Map.Item.Value" in rendered  # the context-object prefix survives
    # LocalStack's grammar rejects an integer percentage
    assert values["ToleratedFailurePercentage"] == "5.0"


# --- settings ----------------------------------------------------------------------------------


def test_settings_from_cli_strings_and_cdk_json_types() -> None:
    context = {
        "batch": "true",
        "schedule_enabled": "no",
        "max_concurrency": "12",
        "tolerated_failure_percentage": 2,
        "alarm_email": "",
        "lookback_days": 7,
        "unrelated:key": "ignored",
    }
    settings = Settings.from_context(context.get)
    assert settings.batch is True
    assert settings.schedule_enabled is False
    assert settings.max_concurrency == 12
    assert settings.tolerated_failure_percentage == 2.0
    assert settings.alarm_email is None
    assert settings.lookback_days == 7
    assert Settings.from_context({}.get) == Settings()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("batch", "maybe"),
        ("max_concurrency", "1.5"),
        ("max_concurrency", "0"),
        ("tolerated_failure_percentage", "101"),
        ("process_timeout_s", "901"),
        ("image_uri", "docker.io/library/python:3.12"),
        ("base_image", "public.ecr.aws/lambda/python:3.12"),  # a tag is not a pin
    ],
)
def test_settings_reject_bad_values(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key):
        Settings.from_context({key: value}.get)


def test_image_uri_with_digest_is_accepted() -> None:
    digest = "sha256:" + "ab" * 32
    uri = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/batglitch@{digest}"
    assert Settings(image_uri=uri).image_uri == uri
