"""The batglitch AWS stack.

Archive bucket, one container image for the three Lambda handlers, the Distributed-Map state
machine of infra/statemachine.asl.json, a daily schedule, failure alarms, and (off by default) an
AWS Batch Fargate queue running the same image for obsids too large for Lambda.
Every cdk-nag finding left standing is acknowledged next to the resource with its reason.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from batglitch.store.keys import FRAGMENTS, MANIFESTS, PENDING, RUNS
from batglitch_infra.asl import DEFINITION_PATH, substitutions
from batglitch_infra.settings import IMAGE_URI, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
# Never part of the image build context: local state, caches, build output.
IMAGE_EXCLUDE = (
    ".git",
    ".venv",
    ".localstack",
    "out",
    "cdk.out",
    "**/cdk.out",
    "**/__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
)
HANDLERS = {
    "plan": "handler.app.plan",
    "process": "handler.app.process",
    "finalize": "handler.app.finalize",
}
# The public AWS open-data bucket holding the HEASARC archive (commercial partition only).
HEASARC_ARN = "arn:aws:s3:::nasa-heasarc"
STORE_KEY = "archive"
# What each step writes inside the store (key layout: batglitch.store.keys). A step's role may
# put objects under its own prefixes only; finalize writes the Icechunk repository and the run
# report and deletes the fragments and markers it published, but never puts workers' keys.
WRITES = {
    "plan": (f"{MANIFESTS}/*", f"{RUNS}/*/plan.json"),
    "process": (f"{FRAGMENTS}/*", f"{PENDING}/*", f"{RUNS}/*/results/*"),
    "finalize": ("*",),
}
FINALIZE_NEVER_PUTS = (f"{FRAGMENTS}/*", f"{PENDING}/*", f"{MANIFESTS}/*")
# At the bucket root, written by the Map's ResultWriter: runs/<execution name>/<map run id>/.
MAP_RESULTS = "runs/"
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
# Every overwrite or delete in the archive bucket keeps the old object this long (recoverable).
NONCURRENT_VERSION_DAYS = 30
# Batch tasks reach AWS only through these endpoints (no internet route, no public IPs).
BATCH_INTERFACE_ENDPOINTS = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
}


def _acknowledge(construct: Construct, *findings: tuple[str, str]) -> None:
    """Acknowledge cdk-nag findings (rule id[finding], reason) on a construct and its children."""
    cdk.Validations.of(construct).acknowledge(
        *(cdk.Acknowledgment(id=rule, reason=reason) for rule, reason in findings)
    )


class BatglitchStack(cdk.Stack):
    """Everything the pipeline needs in one account and region."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        image_context: Path = REPO_ROOT,
        **kwargs,
    ) -> None:
        """`image_context`: the directory holding the Dockerfile (used without `image_uri`)."""
        super().__init__(scope, construct_id, **kwargs)
        # Server access logs by bucket policy, not the legacy ACL that BucketOwnerEnforced
        # forbids. Set here, not in cdk.json, so every app (tests included) builds the same stack.
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        self.settings = settings
        self.bucket = self._archive_bucket()
        self.store_url = f"s3://{self.bucket.bucket_name}/{STORE_KEY}"
        repository, tag = self._image(image_context)
        self.functions = {
            name: self._function(name, handler, repository, tag)
            for name, handler in HANDLERS.items()
        }
        self._grant_data_access()
        self.state_machine = self._state_machine()
        self._schedule()
        self.alarm_topic = self._alarms()
        if settings.batch:
            self._batch(repository, tag)
        cdk.CfnOutput(self, "ArchiveBucketName", value=self.bucket.bucket_name)
        cdk.CfnOutput(self, "StoreUrl", value=self.store_url)
        cdk.CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)
        for name, function in self.functions.items():
            cdk.CfnOutput(self, f"{name.title()}FunctionName", value=function.function_name)

    # --- storage -------------------------------------------------------------------------------

    def _archive_bucket(self) -> s3.Bucket:
        common = {
            "encryption": s3.BucketEncryption.S3_MANAGED,
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            "enforce_ssl": True,
            "minimum_tls_version": 1.2,
        }
        # The access-log target keeps no logs of its own (cdk-nag exempts log destinations).
        access_logs = s3.Bucket(
            self,
            "AccessLogsBucket",
            lifecycle_rules=[
                s3.LifecycleRule(expiration=cdk.Duration.days(self.settings.access_log_expiry_days))
            ],
            **common,
        )
        scratch = [
            s3.LifecycleRule(
                id=f"expire-{prefix.rstrip('/').replace('/', '-')}",
                prefix=prefix,
                expiration=cdk.Duration.days(self.settings.scratch_expiry_days),
            )
            for prefix in (f"{STORE_KEY}/{MANIFESTS}/", MAP_RESULTS)
        ]
        return s3.Bucket(
            self,
            "ArchiveBucket",
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="archive-bucket/",
            lifecycle_rules=[
                *scratch,
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                ),
                s3.LifecycleRule(
                    id="expire-old-versions",
                    noncurrent_version_expiration=cdk.Duration.days(NONCURRENT_VERSION_DAYS),
                    expired_object_delete_marker=True,
                ),
            ],
            # A bad write or delete is recoverable: the previous version stays for a while.
            versioned=True,
            # The archive is the product: keep it when the stack goes.
            removal_policy=cdk.RemovalPolicy.RETAIN,
            **common,
        )

    # --- compute -------------------------------------------------------------------------------

    def _image(self, context: Path) -> tuple[ecr.IRepository, str]:
        """The one image all handlers (and Batch) run: an existing ECR image or the repo build."""
        uri = self.settings.image_uri
        if uri:
            parts = IMAGE_URI.match(uri)
            assert parts is not None  # Settings validated it
            arn = (
                f"arn:{self.partition}:ecr:{parts['region']}:{parts['account']}:"
                f"repository/{parts['repository']}"
            )
            repository = ecr.Repository.from_repository_attributes(
                self, "ImageRepository", repository_arn=arn, repository_name=parts["repository"]
            )
            return repository, parts["digest"] or parts["tag"] or "latest"
        asset = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(context),
            exclude=list(IMAGE_EXCLUDE),
            platform=ecr_assets.Platform.LINUX_AMD64,
            build_args={"BASE_IMAGE": self.settings.base_image}
            if self.settings.base_image
            else None,
        )
        return asset.repository, asset.image_tag

    def _function(
        self, name: str, handler: str, repository: ecr.IRepository, tag: str
    ) -> lambda_.DockerImageFunction:
        title = name.title()
        log_group = logs.LogGroup(
            self,
            f"{title}Logs",
            retention=LOG_RETENTION,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        # Own role instead of the AWS-managed basic execution policy: write to this group only.
        role = iam.Role(
            self,
            f"{title}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"batglitch {name} handler",
        )
        log_group.grant_write(role)
        function = lambda_.DockerImageFunction(
            self,
            f"{title}Function",
            description=f"batglitch {name} ({handler})",
            code=lambda_.DockerImageCode.from_ecr(repository, tag_or_digest=tag, cmd=[handler]),
            architecture=lambda_.Architecture.X86_64,
            memory_size=self.settings.memory_mb(name),
            timeout=cdk.Duration.seconds(self.settings.timeout_s(name)),
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment=self._runtime_environment(),
        )
        _acknowledge(
            role,
            (
                "AwsSolutions-IAM5[Resource::*]",
                "X-Ray PutTraceSegments/PutTelemetryRecords accept no resource narrower than *.",
            ),
        )
        return function

    def _runtime_environment(self) -> dict[str, str]:
        """Where handlers put things; the image is read-only outside /tmp (swifttools writes
        ~/.cache on import, matplotlib its config)."""
        return {
            "BATGLITCH_STORE": self.store_url,
            "HOME": "/tmp",
        }

    def _grant_data_access(self) -> None:
        for name, function in self.functions.items():
            self._allow_data(function.role, name)

    def _allow_data(self, role: iam.IRole, name: str) -> None:
        """Least privilege: everyone reads the archive; each step puts objects under its own
        prefixes of the store only (WRITES); finalize alone deletes; process alone reads the
        public HEASARC bucket."""
        bucket_id = self._logical(self.bucket)
        statements = [
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]),
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[self.bucket.arn_for_objects("*")]
            ),
        ]
        findings = [
            (
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/*]",
                "Reads Zarr chunk keys, markers and the consolidated view: any object name, "
                "inside the archive bucket only.",
            )
        ]
        writes = [f"{STORE_KEY}/{prefix}" for prefix in WRITES[name]]
        actions = ["s3:PutObject", "s3:AbortMultipartUpload"]
        if name == "finalize":
            actions.append("s3:DeleteObject")
            statements.append(
                iam.PolicyStatement(
                    effect=iam.Effect.DENY,
                    actions=["s3:PutObject"],
                    resources=[
                        self.bucket.arn_for_objects(f"{STORE_KEY}/{prefix}")
                        for prefix in FINALIZE_NEVER_PUTS
                    ],
                )
            )
        statements.append(
            iam.PolicyStatement(
                actions=actions, resources=[self.bucket.arn_for_objects(p) for p in writes]
            )
        )
        findings += [
            (
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{prefix}]",
                f"The {name} step's own keys (store/keys.py), named per obsid, attempt or run.",
            )
            for prefix in writes
        ]
        if name == "process":
            statements += [
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[HEASARC_ARN]),
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"{HEASARC_ARN}/*"]),
            ]
            findings.append(
                (
                    f"AwsSolutions-IAM5[Resource::{HEASARC_ARN}/*]",
                    "Read-only on the public HEASARC open-data bucket: event files of any obsid.",
                )
            )
        for statement in statements:
            role.add_to_principal_policy(statement)
        _acknowledge(role, *findings)

    def _logical(self, construct: Construct) -> str:
        return self.get_logical_id(construct.node.default_child)

    @staticmethod
    def _nag(value: str, pseudo: str) -> str:
        """A region or account as cdk-nag prints it in a finding: the literal when the stack has
        an environment (as a deploy with credentials gives it), else the pseudo parameter."""
        return f"<{pseudo}>" if cdk.Token.is_unresolved(value) else value

    # --- orchestration -------------------------------------------------------------------------

    def _state_machine(self) -> sfn.StateMachine:
        name = f"{self.stack_name}-pipeline"
        log_group = logs.LogGroup(
            self,
            "PipelineLogs",
            log_group_name=f"/aws/vendedlogs/states/{name}",
            retention=LOG_RETENTION,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        machine = sfn.StateMachine(
            self,
            "Pipeline",
            state_machine_name=name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(DEFINITION_PATH)),
            definition_substitutions=substitutions(
                self.settings,
                plan=self.functions["plan"].function_arn,
                process=self.functions["process"].function_arn,
                finalize=self.functions["finalize"].function_arn,
                bucket=self.bucket.bucket_name,
            ),
            logs=sfn.LogOptions(
                destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            tracing_enabled=True,
        )
        bucket_id = self._logical(self.bucket)
        for function in self.functions.values():
            function.grant_invoke(machine)
        # A definition from a file carries no permissions: grant what the ASL does.
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(f"{STORE_KEY}/{MANIFESTS}/*")],
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                resources=[self.bucket.arn_for_objects(f"{MAP_RESULTS}*")],
            )
        )
        # The Distributed Map runs its items as child executions of this same machine. Built
        # from the fixed name: referencing the machine's own ARN would be a circular dependency.
        own_arn = self.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=name,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        executions_arn = self.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{name}/*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[own_arn])
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[executions_arn],
            )
        )
        findings = [
            (
                "AwsSolutions-IAM5[Resource::*]",
                "CloudWatch Logs delivery and X-Ray actions accept no resource narrower than *.",
            ),
            (
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{STORE_KEY}/{MANIFESTS}/*]",
                "The ItemReader reads the run's manifest, named per run inside the store.",
            ),
            (
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{MAP_RESULTS}*]",
                "The ResultWriter writes runs/<execution>/<map run id>/ objects.",
            ),
            (
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:"
                f"{self._nag(self.region, 'AWS::Region')}:{self._nag(self.account, 'AWS::AccountId')}"
                f":execution:{name}/*]",
                "Distributed Map child executions of this machine only; their ids are generated.",
            ),
        ]
        findings += [
            (
                f"AwsSolutions-IAM5[Resource::<{self._logical(function)}.Arn>:*]",
                "Invoke any version or alias of this one function.",
            )
            for function in self.functions.values()
        ]
        _acknowledge(machine.role, *findings)
        return machine

    def _schedule(self) -> None:
        """Daily run over a rolling window: plan derives begin/end from the scheduled time."""
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            ),
            description="EventBridge Scheduler: start the batglitch pipeline",
        )
        target = scheduler_targets.StepFunctionsStartExecution(
            self.state_machine,
            role=role,
            input=scheduler.ScheduleTargetInput.from_object(
                {
                    "scheduled_time": scheduler.ContextAttribute.scheduled_time,
                    "lookback_days": self.settings.lookback_days,
                    "grbs": True,  # the BAT GRB catalogue's bursts beside the GUANO dumps
                }
            ),
            retry_attempts=3,
            max_event_age=cdk.Duration.hours(6),
        )
        scheduler.Schedule(
            self,
            "DailySchedule",
            schedule=scheduler.ScheduleExpression.expression(self.settings.schedule),
            target=target,
            enabled=self.settings.schedule_enabled,
            description="batglitch: plan, process and finalize the last lookback_days of GUANO",
        )

    def _alarms(self) -> sns.Topic:
        topic = sns.Topic(self, "AlarmTopic", display_name="batglitch alarms", enforce_ssl=True)
        if self.settings.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(self.settings.alarm_email))
        five_minutes = cdk.Duration.minutes(5)
        for title, metric in (
            ("Failed", self.state_machine.metric_failed(period=five_minutes)),
            ("TimedOut", self.state_machine.metric_timed_out(period=five_minutes)),
        ):
            alarm = cloudwatch.Alarm(
                self,
                f"Executions{title}Alarm",
                alarm_description=f"A batglitch pipeline execution {title.lower()}.",
                metric=metric,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
        return topic

    # --- optional Batch ------------------------------------------------------------------------

    def _batch(self, repository: ecr.IRepository, tag: str) -> None:
        """Fargate array jobs over a manifest of large obsids: `batglitch process --manifest URL`,
        each child's AWS_BATCH_JOB_ARRAY_INDEX picking its item (the CLI's default index)."""
        vpc = ec2.Vpc(
            self,
            "BatchVpc",
            max_azs=2,
            nat_gateways=0,
            # No route to the internet and no public IPs: S3 through a gateway endpoint, ECR and
            # CloudWatch Logs through interface endpoints. Batch jobs read archived event files
            # from S3 only (the public bucket is in us-east-1: deploy there to reach it).
            subnet_configuration=[
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )
        flow_logs = logs.LogGroup(
            self,
            "BatchVpcFlowLogs",
            retention=LOG_RETENTION,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        security_group = ec2.SecurityGroup(
            self,
            "BatchSecurityGroup",
            vpc=vpc,
            description="batglitch Batch jobs: outbound only, to the VPC endpoints",
            allow_all_outbound=True,
        )
        # The interface endpoints answer HTTPS from the jobs' security group, nothing else.
        endpoints = ec2.SecurityGroup(
            self,
            "BatchEndpointSecurityGroup",
            vpc=vpc,
            description="batglitch VPC endpoints: HTTPS from the Batch jobs only",
            allow_all_outbound=False,
        )
        endpoints.add_ingress_rule(security_group, ec2.Port.tcp(443), "HTTPS from Batch jobs")
        for endpoint_id, service in BATCH_INTERFACE_ENDPOINTS.items():
            vpc.add_interface_endpoint(
                f"{endpoint_id}Endpoint", service=service, security_groups=[endpoints], open=False
            )
        compute = batch.FargateComputeEnvironment(
            self,
            "BatchCompute",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[security_group],
            maxv_cpus=self.settings.batch_max_vcpus,
        )
        queue = batch.JobQueue(
            self,
            "BatchQueue",
            compute_environments=[
                batch.OrderedComputeEnvironment(compute_environment=compute, order=1)
            ],
        )
        job_role = iam.Role(
            self,
            "BatchJobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="batglitch Batch process jobs",
        )
        job_logs = logs.LogGroup(
            self, "BatchJobLogs", retention=LOG_RETENTION, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        container = batch.EcsFargateContainerDefinition(
            self,
            "BatchContainer",
            image=ecs.ContainerImage.from_ecr_repository(repository, tag),
            cpu=self.settings.batch_vcpus,
            memory=cdk.Size.gibibytes(self.settings.batch_memory_gib),
            # The image's entrypoint runs `batglitch <args>` when the first one is no handler.
            command=[
                "process",
                "--manifest",
                "Ref::manifest",
                "--store",
                "Ref::store",
                "--run-id",
                "Ref::run_id",
            ],
            environment={
                **self._runtime_environment(),
                "BATGLITCH_ARCHIVE_ROOTS": "s3://nasa-heasarc",
            },
            job_role=job_role,
            assign_public_ip=False,
            readonly_root_filesystem=True,
            volumes=[batch.EcsVolume.host(name="tmp", container_path="/tmp")],  # HOME=/tmp
            fargate_cpu_architecture=ecs.CpuArchitecture.X86_64,
            logging=ecs.LogDriver.aws_logs(stream_prefix="batglitch", log_group=job_logs),
        )
        self._allow_data(job_role, "process")
        _acknowledge(
            container.execution_role,
            (
                "AwsSolutions-IAM5[Resource::*]",
                "ecr:GetAuthorizationToken accepts no resource narrower than *.",
            ),
        )
        job = batch.EcsJobDefinition(
            self,
            "BatchJob",
            container=container,
            # Override at submit-job: manifest (a JSON array of the large obsids) and the run_id
            # of the Step Functions run they failed in, so `finalize --run-id` reports them. The
            # defaults make a submission without them fail clearly (no such manifest; no run).
            parameters={
                "store": self.store_url,
                "manifest": f"{self.store_url}/{MANIFESTS}/missing-give-one-at-submit.json",
                "run_id": "",
            },
            retry_attempts=2,
            timeout=cdk.Duration.hours(12),
        )
        cdk.CfnOutput(self, "BatchJobQueueArn", value=queue.job_queue_arn)
        cdk.CfnOutput(self, "BatchJobDefinitionArn", value=job.job_definition_arn)
