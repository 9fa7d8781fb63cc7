"""batglitch: Swift/BAT heat-pipe glitch windows and DPIs into one Zarr training archive."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batglitch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"


def __getattr__(name: str):
    """`from batglitch import open_archive, training_set` without importing xarray at startup."""
    if name in ("open_archive", "training_set"):
        from batglitch import reader

        return getattr(reader, name)
    raise AttributeError(name)
