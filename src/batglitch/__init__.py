"""batglitch: Swift/BAT heat-pipe glitch windows and DPIs into one Zarr training archive.

The public API is what a reader of an archive needs; everything else is reached through the
command line (`batglitch`, `python -m batglitch`) or the subpackages.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batglitch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

_READER = ("open_archive", "open_provenance", "training_set", "TrainingSet")
__all__ = ["__version__", *_READER]


def __getattr__(name: str):
    """`from batglitch import open_archive` without importing xarray when only the CLI starts."""
    if name in _READER:
        from batglitch.store import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'batglitch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
