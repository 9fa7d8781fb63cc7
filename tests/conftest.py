"""Test session wiring: the CDK app's package on the path, and the LocalStack fixture (started and
stopped by the session when a test needs it)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))

pytest_plugins = ["localstack"]
