"""Which install extra a command is missing, so that it says so in one line instead of a traceback.

The core install (`pip install batglitch`) reads, detects, writes and opens archives; `run`,
`plan`, `demo`, `preview`, `evaluate` and `s3://` stores import the packages of an extra
(pyproject.toml, [project.optional-dependencies]; tests/test_extras.py keeps the two in step).
"""

from __future__ import annotations

# top-level module -> (the distribution that installs it, the extra that brings it)
EXTRA_MODULES: dict[str, tuple[str, str]] = {
    "s3fs": ("s3fs", "aws"),
    "aiohttp": ("aiohttp", "aws"),  # s3fs brings it; fsspec needs it for https:// roots too
    "swifttools": ("swifttools", "swift"),
    "astropy": ("astropy", "swift"),
    "distutils": ("setuptools", "swift"),  # swifttools' UKSSDC client; gone from the stdlib in 3.12
    "matplotlib": ("matplotlib", "plot"),
    "sklearn": ("scikit-learn", "ml"),
    "h5netcdf": ("h5netcdf", "ml"),
    "h5py": ("h5py", "ml"),
}


def missing_extra(exc: BaseException | None) -> str | None:
    """`needs matplotlib: pip install 'batglitch[plot]'` when exc, or an error it was raised
    from, is the failed import of a module an extra installs; None for anything else (a missing
    module no extra brings is a bug, not a user's install). The chain matters: fsspec raises
    ImportError("Install s3fs to access S3") from the ModuleNotFoundError."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            known = EXTRA_MODULES.get(exc.name.partition(".")[0])
            if known:
                distribution, extra = known
                return f"needs {distribution}: pip install 'batglitch[{extra}]'"
        exc = exc.__cause__ or exc.__context__
    return None
