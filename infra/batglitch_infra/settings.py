"""Deployment settings, read from CDK context so one app serves every account (`-c name=value`).

Kept free of CDK imports: the local runner (LocalStack) fills the state-machine template with the
same numbers without starting the jsii runtime.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# account.dkr.ecr.region.amazonaws.com[.cn]/repository[:tag][@sha256:digest]
IMAGE_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)

# a base image reference pinned by digest: name[:tag]@sha256:<64 hex>
PINNED_IMAGE = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}

LAMBDA_MAX_TIMEOUT_S = 900


@dataclass(frozen=True)
class Settings:
    """Every knob of the stack; the field name is the context key."""

    # Existing ECR image to run instead of building the repo's Dockerfile as an asset.
    image_uri: str | None = None
    # The Dockerfile's BASE_IMAGE for that build, pinned by digest (image[:tag]@sha256:...).
    base_image: str | None = None
    # Daily run: EventBridge Scheduler expression (UTC) and how many days back plan looks.
    schedule: str = "cron(30 6 * * ? *)"
    schedule_enabled: bool = True
    lookback_days: int = 3
    # Distributed Map: concurrent process invocations, share of obsids allowed to fail.
    max_concurrency: int = 40
    tolerated_failure_percentage: float = 5.0
    # Days before manifests/ and runs/ (per-run scratch) and the access logs expire.
    scratch_expiry_days: int = 30
    access_log_expiry_days: int = 90
    # Optional e-mail subscription for the failure alarms.
    alarm_email: str | None = None
    # Lambda sizing per handler (memory also sets CPU share: 1769 MB = 1 vCPU).
    plan_memory_mb: int = 1024
    plan_timeout_s: int = 900
    process_memory_mb: int = 1024  # peak RSS measured at 165 MB; memory here buys CPU share
    process_timeout_s: int = 900
    finalize_memory_mb: int = 3008
    finalize_timeout_s: int = 900
    # Optional AWS Batch (Fargate) queue for obsids too large for Lambda.
    batch: bool = False
    batch_vcpus: float = 4.0
    batch_memory_gib: int = 16
    batch_max_vcpus: int = 64

    def __post_init__(self) -> None:
        problems = []
        if self.image_uri is not None and not IMAGE_URI.match(self.image_uri):
            problems.append(f"image_uri {self.image_uri!r} is not an ECR image URI")
        if self.base_image is not None and not PINNED_IMAGE.match(self.base_image):
            problems.append(f"base_image {self.base_image!r} is not pinned by @sha256: digest")
        if not 0 <= self.tolerated_failure_percentage <= 100:
            problems.append("tolerated_failure_percentage must be within 0..100")
        for name in (
            "lookback_days",
            "max_concurrency",
            "scratch_expiry_days",
            "access_log_expiry_days",
            "batch_max_vcpus",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for handler in ("plan", "process", "finalize"):
            if not 128 <= getattr(self, f"{handler}_memory_mb") <= 10240:
                problems.append(f"{handler}_memory_mb must be within 128..10240")
            if not 1 <= getattr(self, f"{handler}_timeout_s") <= LAMBDA_MAX_TIMEOUT_S:
                problems.append(f"{handler}_timeout_s must be within 1..{LAMBDA_MAX_TIMEOUT_S}")
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> Settings:
        """Build from a context lookup such as `node.try_get_context`; absent keys keep defaults.

        CLI context values arrive as strings (`-c batch=true`), cdk.json values as JSON types.
        """
        values = {}
        for field in dataclasses.fields(cls):
            raw = get(field.name)
            if raw is not None:
                values[field.name] = _coerce(field.name, raw, field.default)
        return cls(**values)

    def memory_mb(self, handler: str) -> int:
        return getattr(self, f"{handler}_memory_mb")

    def timeout_s(self, handler: str) -> int:
        return getattr(self, f"{handler}_timeout_s")


def _coerce(name: str, raw: Any, default: Any) -> Any:
    if default is None:  # optional strings: an empty `-c key=` means unset
        return str(raw) or None
    kind = type(default)
    text = str(raw).strip().lower()
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if text in _TRUE | _FALSE:
            return text in _TRUE
    elif kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    elif kind is float:
        try:
            return float(raw)
        except (TypeError, ValueError):
            pass
    else:
        return str(raw)
    raise ValueError(f"context {name}={raw!r} is not a valid {kind.__name__}")
