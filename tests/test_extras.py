"""The map from a missing module to the install extra that brings it, against pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import requires
from pathlib import Path

import pytest

from batglitch.extras import EXTRA_MODULES, missing_extra

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
AGGREGATES = {"all", "dev", "infra"}  # extras made of the others, or not for users of the package


def distributions(specs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in specs}


def extras() -> dict[str, set[str]]:
    table = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    return {name: distributions(specs) for name, specs in table.items() if name not in AGGREGATES}


def test_every_distribution_of_an_extra_has_its_module_mapped_to_that_extra():
    mapped = {(dist, extra) for dist, extra in EXTRA_MODULES.values()}
    for extra, dists in extras().items():
        assert {(d, extra) for d in dists} <= mapped, extra


def test_every_mapped_module_comes_with_its_extra():
    """Listed in the extra, or required by what it lists (aiohttp comes with s3fs)."""
    for module, (dist, extra) in EXTRA_MODULES.items():
        listed = extras()[extra]
        brought = {d for name in listed for d in distributions(requires(name) or [])}
        assert dist in listed | brought, module


def test_a_missing_extra_module_names_the_distribution_and_the_extra():
    error = ModuleNotFoundError("No module named 'sklearn'", name="sklearn.svm")
    assert missing_extra(error) == "needs scikit-learn: pip install 'batglitch[ml]'"


def test_the_extra_is_found_behind_the_error_it_became():
    """fsspec turns the failed import of s3fs into ImportError('Install s3fs to access S3')."""
    try:
        try:
            raise ModuleNotFoundError("No module named 's3fs'", name="s3fs")
        except ModuleNotFoundError as exc:
            raise ImportError("Install s3fs to access S3") from exc
    except ImportError as wrapped:
        assert missing_extra(wrapped) == "needs s3fs: pip install 'batglitch[aws]'"


@pytest.mark.parametrize(
    "error",
    [
        ModuleNotFoundError("No module named 'numpyy'", name="numpyy"),  # no extra brings it
        ModuleNotFoundError("no name"),
        ImportError("cannot import name 'x' from 'matplotlib'", name="matplotlib"),
        ValueError("matplotlib"),
        None,
    ],
)
def test_anything_else_is_not_a_missing_extra(error):
    assert missing_extra(error) is None
