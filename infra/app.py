#!/usr/bin/env python3
"""CDK app: `cdk synth|deploy -c key=value ...` from infra/ (settings: batglitch_infra.settings)."""

import os

import aws_cdk as cdk
from batglitch_infra.settings import Settings
from batglitch_infra.stack import BatglitchStack
from cdk_nag import AwsSolutionsChecks

app = cdk.App()
BatglitchStack(
    app,
    app.node.try_get_context("stack_name") or "Batglitch",
    settings=Settings.from_context(app.node.try_get_context),
    env=cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    ),
    description="batglitch: Swift/BAT heat-pipe glitch archive pipeline",
)
# Every AWS Solutions finding fails the synth unless acknowledged with a reason in the stack.
cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
