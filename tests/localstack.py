"""Pytest plugin: one LocalStack for the whole test session, plus clients pointed at it.

Loaded for every test module by tests/conftest.py (tests/ is on sys.path in pytest's default import
mode). The `localstack` fixture reuses a LocalStack that already answers (e.g. after
`scripts/localstack.sh start`, then it is left running) and otherwise starts one through that
script and stops it when the session ends. Tests that use it are marked `localstack`
automatically, so `-m "not localstack"` runs everything else without it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from batglitch_infra.local import LocalAws

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "localstack.sh"
# A from-scratch start installs LocalStack's venv first (~50 s measured) before it waits for health.
START_TIMEOUT_S = 600


# The fixture hands out the run-local adapter's own handle on LocalStack (clients, s3fs options,
# child environment, health check): one description of where LocalStack answers, for both.
LocalStack = LocalAws


def _script(action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), action],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="session")
def localstack() -> Iterator[LocalStack]:
    """The session's LocalStack; stopped at the end only if this session started it."""
    info = LocalStack(endpoint=f"http://127.0.0.1:{os.environ.get('LOCALSTACK_PORT', '4566')}")
    if info.healthy():
        yield info
        return
    started = _script("start")
    if started.returncode != 0:
        pytest.fail(f"scripts/localstack.sh start failed:\n{started.stderr}", pytrace=False)
    try:
        yield info
    finally:
        _script("stop")


@pytest.fixture
def s3_bucket(localstack: LocalStack) -> Iterator[str]:
    """A fresh bucket of its own for one test, emptied and deleted afterwards."""
    s3 = localstack.client("s3")
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=name, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs LocalStack, so it can be deselected with -m."""
    for item in items:
        if "localstack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.localstack)
