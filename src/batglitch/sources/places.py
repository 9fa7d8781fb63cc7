"""Where event files may be read from: the configured archive roots and the quick-look site.

Every URL a worker reads comes from outside (a manifest, a Swift API answer), so before anything
is opened it must lie under one of these places, written in canonical form: no ``.``/``..`` or
empty segments, no percent-escapes, backslashes, control characters, queries or user info. A URL
that needs normalising is refused, not normalised. Local paths are allowed only under a local
root, after symlinks are resolved. The places themselves are configuration (trusted): archive
roots from BATGLITCH_ARCHIVE_ROOTS, the quick-look site from BATGLITCH_QUICKLOOK_URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from batglitch.errors import EventFileError

DEFAULT_ARCHIVE_ROOTS = ("s3://nasa-heasarc", "https://heasarc.gsfc.nasa.gov/FTP")
ARCHIVE_ROOTS_ENV = "BATGLITCH_ARCHIVE_ROOTS"
# DESIGN.md: recent data live on https://swift.gsfc.nasa.gov/data/swift/sw<obsid>.<ver>/...
DEFAULT_QUICKLOOK = ("https://swift.gsfc.nasa.gov/data/swift",)
QUICKLOOK_ENV = "BATGLITCH_QUICKLOOK_URL"
REMOTE_SCHEMES = ("s3", "https", "http")  # http only when a configured place says so
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\%?#]")


class RefusedLocation(EventFileError):
    """A URL outside every allowed place (permanent: never retried)."""


def archive_roots(roots: Sequence[str] | None = None) -> tuple[str, ...]:
    """Where archived event files are read from, in order of preference.

    Explicit roots win, then env BATGLITCH_ARCHIVE_ROOTS (comma-separated), then the public S3
    bucket and the HTTPS archive. A root is anything fsspec opens: a local directory,
    file://..., s3://bucket[/prefix] (LocalStack: endpoint via storage options) or https://...
    """
    return _configured(roots, ARCHIVE_ROOTS_ENV, DEFAULT_ARCHIVE_ROOTS)


def quicklook_roots(roots: Sequence[str] | None = None) -> tuple[str, ...]:
    """The quick-look site(s): explicit, then env BATGLITCH_QUICKLOOK_URL, then the real one."""
    return _configured(roots, QUICKLOOK_ENV, DEFAULT_QUICKLOOK)


def _configured(roots: Sequence[str] | None, env: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if roots is None:
        roots = [r for r in os.environ.get(env, "").split(",") if r.strip()] or default
    return tuple(r.strip().rstrip("/") for r in roots)


@dataclass(frozen=True)
class Places:
    """The allowed places of one deployment (or one local run)."""

    roots: tuple[str, ...]
    quicklook: tuple[str, ...]

    @classmethod
    def configured(
        cls, roots: Sequence[str] | None = None, quicklook: Sequence[str] | None = None
    ) -> Places:
        return cls(archive_roots(roots), quicklook_roots(quicklook))

    def check(self, url: str, obsid: str | None = None, *, quicklook: bool = False) -> str:
        """The URL itself if it lies under an archive root (or, with ``quicklook``, only under
        the quick-look site); RefusedLocation naming obsid and URL otherwise."""
        places = self.quicklook if quicklook else (*self.roots, *self.quicklook)
        problem = _problem(url, places)
        if problem:
            shown = url if len(url) < 300 else f"{url[:300]}..."
            raise RefusedLocation(shown, f"refused: {problem}", obsid)
        return url


def _local(url: str) -> str | None:
    """The path of a local URL (a plain path or file://), None for a remote one."""
    if url.startswith("file://"):
        return url.removeprefix("file://")
    return None if "://" in url else url


def _problem(url: str, places: Sequence[str]) -> str | None:
    if _UNSAFE.search(url):
        return "spaces, control characters, backslashes, %-escapes, queries or fragments"
    path = _local(url)
    segments = (path if path is not None else url.split("://", 1)[1]).split("/")
    inner = segments[1:] if path is not None and path.startswith("/") else segments
    if any(s in ("", ".", "..") for s in inner):
        return "not a normalised path (empty, '.' or '..' segments)"
    if path is not None:
        local_roots = [p for p in map(_local, places) if p is not None]
        if not local_roots:
            return "a local path, and no local archive root is configured"
        real = os.path.realpath(path)
        if any(real.startswith(os.path.realpath(root) + os.sep) for root in local_roots):
            return None
        return f"not under a local archive root ({', '.join(local_roots)})"
    scheme, rest = url.split("://", 1)
    if scheme not in REMOTE_SCHEMES or "@" in rest.split("/", 1)[0]:
        return f"scheme {scheme!r} or user info not allowed"
    if any(url.startswith(f"{place}/") for place in places if _local(place) is None):
        return None
    return f"not under an allowed place ({', '.join(places)})"
