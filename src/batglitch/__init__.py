"""batglitch: Swift/BAT heat-pipe glitch windows and DPIs into one Zarr training archive."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batglitch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"
