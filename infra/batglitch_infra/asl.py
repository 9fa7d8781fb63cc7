"""The one state-machine definition, and how to fill its placeholders outside CloudFormation.

infra/statemachine.asl.json is a template: `${Name}` placeholders are replaced as plain text by
CloudFormation (DefinitionSubstitutions) in the stack, and by `render` for local runs and tests.
Numeric placeholders stand unquoted, so the file only becomes JSON once rendered. `string.Template`
is not a safe stand-in: it turns the ASL context-object prefix `$$` into `$`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batglitch_infra.settings import Settings

DEFINITION_PATH = Path(__file__).resolve().parent.parent / "statemachine.asl.json"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")

# A task state outlives its function by this much, so Lambda's own timeout error (with logs)
# surfaces first; for activity workers (local runs) the state timeout is what catches a lost worker.
TASK_TIMEOUT_GRACE_S = 60


def placeholders(text: str | None = None) -> frozenset[str]:
    """Names of the `${Name}` placeholders in a definition (default: the project's file)."""
    text = DEFINITION_PATH.read_text() if text is None else text
    return frozenset(_PLACEHOLDER.findall(text))


def render(values: Mapping[str, Any], text: str | None = None) -> dict[str, Any]:
    """Fill every placeholder and parse the result.

    Exactly the placeholder set must be given: a missing value would leave broken JSON and an
    unknown one usually means a renamed placeholder, both better caught here than by a failed run.
    """
    text = DEFINITION_PATH.read_text() if text is None else text
    wanted = placeholders(text)
    missing, unknown = wanted - values.keys(), values.keys() - wanted
    if missing or unknown:
        raise KeyError(f"placeholders missing: {sorted(missing)}, unknown: {sorted(unknown)}")
    return json.loads(_PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text))


def substitutions(
    settings: Settings, *, plan: str, process: str, finalize: str, bucket: str
) -> dict[str, str]:
    """Placeholder values for the given task resources (Lambda or activity ARNs) and bucket."""
    return {
        "PlanFunctionArn": plan,
        "ProcessFunctionArn": process,
        "FinalizeFunctionArn": finalize,
        "ArchiveBucket": bucket,
        "MaxConcurrency": str(settings.max_concurrency),
        # Always with a decimal point: LocalStack's ASL grammar rejects an integer here.
        "ToleratedFailurePercentage": str(float(settings.tolerated_failure_percentage)),
        **{
            f"{handler.title()}TimeoutSeconds": str(
                settings.timeout_s(handler) + TASK_TIMEOUT_GRACE_S
            )
            for handler in ("plan", "process", "finalize")
        },
    }
