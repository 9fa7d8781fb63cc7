"""The shared archive: fragments written without coordination, published in one atomic commit.

Layout (keys.py): workers write ``fragments/<obsid>/<attempt>.npz`` (one object) and then
``pending/<obsid>/<attempt>.json`` (one object); they never touch the published archive, an
Icechunk repository under ``repo/`` (engine.py). A killed worker leaves at most an unmarked
fragment nobody reads. Publish (one process) reads only the pending markers, commits new and
re-processed obsids' rows once (publish.py), tags the commit with the run id, and only then
clears what it consumed; a publish killed at any point leaves readers on the last commit and the
next publish redoes what is still pending. Two publishes at once are settled by Icechunk's
conflict detection: the loser starts again from the new tip.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import random
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

import fsspec
import numpy as np

from batglitch import __version__
from batglitch.errors import BatGlitchError, TransientError
from batglitch.sources.fetch import storage_options_for, write_atomically
from batglitch.store.engine import BRANCH, icechunk_module, open_repository, readonly_session
from batglitch.store.keys import (
    FRAGMENTS,
    PENDING,
    attempt_cutoff,
    fragment_key,
    marker_key,
    new_attempt_id,
    parse_attempt_key,
    validate_run_id,
)
from batglitch.store.schema import (
    CONVENTIONS,
    PROVENANCE_GROUP,
    WINDOW_COLUMNS,
    Completion,
    algorithm_attr,
    check_rows,
    dimension_coords,
)

logger = logging.getLogger(__name__)
READERS = 16  # fragment reads / deletes in flight: object-store latency dominates
PUBLISH_TRIES = 6  # commits lost to a concurrent publish before giving up (backoff with jitter)


@dataclass(frozen=True)
class Fragment:
    """One observation's contribution: its rows plus what they were made from."""

    obsid: str
    rows: dict[str, np.ndarray]  # per-window arrays keyed by schema.WINDOW_COLUMNS names
    source: str
    size: int
    etag: str | None
    config: dict[str, Any]  # the algorithm parameters (DetectionConfig.as_attrs())
    # JSON for the per-obsid table: the dumps it was planned from (quick-look obsids are
    # planned again from them) and the time-base decision of each dump
    dumps: str = "[]"
    time_base: str = "[]"

    def __len__(self) -> int:
        return len(self.rows["window_start"])


@dataclass(frozen=True)
class PublishSummary:
    snapshot_id: str
    n_obsids: int  # in the archive after the publish
    n_windows: int
    added: int  # obsids this publish added
    replaced: int  # obsids whose rows it replaced
    pruned: int  # abandoned fragments deleted


@dataclass(frozen=True)
class Version:
    """One commit of the archive: what `batglitch versions` lists and open_archive reopens."""

    snapshot_id: str
    run_id: str | None
    written_at: str
    n_windows: int
    n_obsids: int
    message: str


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def archive_storage_options(url: str) -> dict[str, Any]:
    """Signed access with timeouts; credentials and AWS_ENDPOINT_URL (LocalStack) come from the
    environment."""
    return storage_options_for(url)


def completion_marker(fragment: Fragment, attempt: str, *, from_quicklook: bool) -> dict[str, Any]:
    """What a worker's marker says of its attempt: publish copies it into the provenance table."""
    return {
        "obsid": fragment.obsid,
        "attempt": attempt,
        "n_windows": len(fragment),
        "source": fragment.source,
        "size": fragment.size,
        "etag": fragment.etag or "",
        "completed_at": utc_now(),
        "version": __version__,
        "config": fragment.config,
        "from_quicklook": from_quicklook,
        "dumps": fragment.dumps,
        "time_base": fragment.time_base,
    }


class Archive:
    """Handle on one archive URL; all storage logic of the project lives in this package."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = (
            archive_storage_options(url) if storage_options is None else storage_options
        )
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)

    # -- small I/O helpers -------------------------------------------------------------------
    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def put_json(self, key: str, value: Any) -> None:
        """Write a JSON object so that readers see all of it or nothing."""
        write_atomically(self.fs, self.path(key), json.dumps(value, indent=1, default=str).encode())

    def glob(self, pattern: str) -> list[str]:
        """A fresh listing: fsspec caches listings per process, and a warm process (a reused
        Lambda container, a second run) must see what other workers completed since."""
        self.fs.invalidate_cache()  # all of it: s3fs drops only the parents of a given path
        return self.fs.glob(self.path(pattern))

    def get_json(self, key: str) -> Any:
        return json.loads(self.fs.cat_file(self.path(key)))

    def repository(self, *, create: bool = False) -> Any | None:
        return open_repository(self.url, self.storage_options, create=create)

    # -- workers -----------------------------------------------------------------------------
    def write_fragment(self, fragment: Fragment, *, from_quicklook: bool = False) -> dict[str, Any]:
        """Write one attempt's rows as one object, then its completion marker: two PUTs.

        from_quicklook marks rows made from quick-look data, which plans redo once the
        observation is in the archive proper."""
        attempt = new_attempt_id()
        values = check_rows(fragment.obsid, fragment.rows)
        if len(fragment):
            order = np.argsort(values["window_start"], kind="stable")
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **{name: v[order] for name, v in values.items()})
            write_atomically(
                self.fs, self.path(fragment_key(fragment.obsid, attempt)), buffer.getvalue()
            )
        marker = completion_marker(fragment, attempt, from_quicklook=from_quicklook)
        self.put_json(marker_key(fragment.obsid, attempt), marker)
        return marker

    def pending(self) -> list[dict[str, Any]]:
        """Every completion marker not yet cleared by a publish (any attempt of any obsid)."""
        paths = self.glob(f"{PENDING}/*/*.json")
        markers = []
        for path, raw in (self.fs.cat(paths, on_error="return") if paths else {}).items():
            if isinstance(raw, FileNotFoundError):
                continue  # cleared by a concurrent publish between listing and reading
            if isinstance(raw, Exception):
                raise TransientError(f"{self.url}: reading marker {path}: {raw!r}") from raw
            marker = json.loads(raw)
            if parse_attempt_key(path) != (marker["obsid"], marker["attempt"]):
                raise BatGlitchError(f"{self.url}: marker {path} names another attempt")
            markers.append(marker)
        return markers

    # -- planning ----------------------------------------------------------------------------
    def completions(self) -> dict[str, Completion]:
        """Every published obsid with what its rows were made from (from_quicklook included),
        read from the per-obsid table of the tip of main: a few requests, whatever the size."""
        import zarr

        repo = self.repository()
        if repo is None:
            return {}
        root = zarr.open_group(readonly_session(repo).store, mode="r")
        group = root.get(PROVENANCE_GROUP)
        if group is None or "obsid" not in group:
            return {}
        table = {name: group[name][...].tolist() for name in group.array_keys()}
        return {
            obsid: Completion.from_record({k: v[i] for k, v in table.items()})
            for i, obsid in enumerate(table["obsid"])
        }

    def completed_obsids(self) -> set[str]:
        return set(self.completions())

    # -- publish -----------------------------------------------------------------------------
    def publish(
        self,
        *,
        run_id: str | None = None,
        summary: dict[str, Any] | None = None,
        prune_grace_s: float = 3600.0,
    ) -> PublishSummary:
        """Commit every pending obsid's newest attempt in one Icechunk commit (tagged run_id,
        the run summary in its metadata), then clear the markers and fragments it consumed."""
        icechunk = icechunk_module()
        if run_id is not None:
            validate_run_id(run_id)
        delay = 0.2
        for attempt in range(1, PUBLISH_TRIES + 1):
            markers = self.pending()
            repo = self.repository(create=True)
            session = repo.writable_session(BRANCH)
            try:
                snapshot, written = self._commit(session, markers, run_id, summary or {})
                break
            except icechunk.ConflictError as exc:  # another publish committed first: redo
                if attempt == PUBLISH_TRIES:
                    raise TransientError(f"{self.url}: publish kept conflicting: {exc}") from exc
                logger.warning("%s: publish conflicted, starting again from the new tip", self.url)
                time.sleep(delay * (1 + random.random()))
                delay *= 2
        if run_id is not None and run_id not in repo.list_tags():
            repo.create_tag(run_id, snapshot)
        self._clear(markers)
        return PublishSummary(
            snapshot_id=snapshot,
            n_obsids=written.n_obsids,
            n_windows=written.n_windows,
            added=written.added,
            replaced=written.replaced,
            pruned=self.prune(grace_s=prune_grace_s),
        )

    def _commit(
        self, session: Any, markers: list[dict[str, Any]], run_id: str | None, summary: dict
    ) -> tuple[str, Any]:
        import zarr

        from batglitch.store.publish import write_publish

        root = zarr.open_group(session.store, mode="a")
        published = self.completions_in(root)
        newest: dict[str, dict[str, Any]] = {}
        for marker in markers:
            held = newest.get(marker["obsid"])
            if held is None or marker["attempt"] > held["attempt"]:
                newest[marker["obsid"]] = marker
        # an attempt already in the archive (a publish killed before clearing) is not new
        todo = [
            newest[o]
            for o in sorted(newest)
            if o not in published or newest[o]["attempt"] > published[o]
        ]
        config = self._config(root, todo)
        written = write_publish(root, todo, self._load)
        if config:
            self._write_dimension_coords(root, config)
        root.attrs.update(
            {
                "Conventions": CONVENTIONS,
                "title": "Swift/BAT heat-pipe glitch candidate windows",
                "software_version": __version__,
                "algorithm": algorithm_attr(config) if config else "",
                "n_obsids": written.n_obsids,
                "n_windows": written.n_windows,
                "published_at": utc_now(),
                "run_id": run_id or "",
            }
        )
        metadata = {
            "run_id": run_id,
            "n_windows": written.n_windows,
            "n_obsids": written.n_obsids,
            "added": written.added,
            "replaced": written.replaced,
            "summary": summary,
        }
        message = f"publish {run_id or 'without a run'}: +{written.added} obsids, {written.replaced} replaced"
        return session.commit(message, metadata=metadata, allow_empty=True), written

    @staticmethod
    def completions_in(root: Any) -> dict[str, str]:
        """obsid -> published attempt, from a session's per-obsid table."""
        group = root.get(PROVENANCE_GROUP)
        if group is None or "obsid" not in group:
            return {}
        obsids, attempts = group["obsid"][...], group["attempt"][...]
        return {str(o): str(a) for o, a in zip(obsids, attempts, strict=True)}

    def _config(self, root: Any, todo: list[dict[str, Any]]) -> dict[str, Any]:
        """The one algorithm configuration of the archive and everything about to join it."""
        configs = {algorithm_attr(m["config"]) for m in todo}
        if root.attrs.get("algorithm"):
            configs.add(root.attrs["algorithm"])
        if len(configs) > 1:
            raise BatGlitchError(
                f"{self.url}: fragments were made with {len(configs)} different algorithm "
                "configurations; re-run them with one configuration (--force) before publishing"
            )
        return json.loads(configs.pop()) if configs else {}

    @staticmethod
    def _write_dimension_coords(root: Any, config: dict[str, Any]) -> None:
        """Coordinate values of the image dimensions (written once: they follow the config)."""
        for name, (dims, values, attrs) in dimension_coords(config).items():
            if name not in root:
                root.create_array(
                    name, shape=values.shape, dtype=values.dtype, dimension_names=dims,
                    attributes=attrs,
                )[...] = values  # fmt: skip

    def _load(self, markers: Sequence[dict[str, Any]]) -> Iterator[dict[str, np.ndarray]]:
        """Each marker's rows in marker order, read a few at a time ahead on threads."""
        todo = (m for m in markers if m["n_windows"])
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            ahead = deque(pool.submit(self._read_fragment, m) for m in islice(todo, READERS))
            while ahead:
                future = ahead.popleft()
                following = next(todo, None)
                if following is not None:
                    ahead.append(pool.submit(self._read_fragment, following))
                yield future.result()

    def _read_fragment(self, marker: dict[str, Any]) -> dict[str, np.ndarray]:
        key = fragment_key(marker["obsid"], marker["attempt"])
        try:
            with np.load(io.BytesIO(self.fs.cat_file(self.path(key))), allow_pickle=False) as f:
                values = {name: f[name] for name in WINDOW_COLUMNS}
        except Exception as exc:  # a marked fragment must be readable: say which one is not
            raise TransientError(f"{self.url}: reading complete fragment {key}: {exc!r}") from exc
        if len(values["window_start"]) != marker["n_windows"]:
            raise BatGlitchError(f"{self.url}: fragment {key} does not hold its marker's rows")
        return values

    def _clear(self, markers: Sequence[dict[str, Any]]) -> None:
        """Delete consumed markers, then their fragments (a kill in between leaves unmarked
        fragments, which prune removes after the grace period)."""
        keys = [marker_key(m["obsid"], m["attempt"]) for m in markers]
        keys += [fragment_key(m["obsid"], m["attempt"]) for m in markers if m["n_windows"]]
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            list(pool.map(self._remove, keys))

    def _remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):  # cleared already by a killed publish
            self.fs.rm_file(self.path(key))

    def prune(self, *, grace_s: float) -> int:
        """Delete fragments without a marker older than ``grace_s`` (a worker killed before its
        marker; a live worker's attempt is younger than that). Lists only unpublished work."""
        cutoff = attempt_cutoff(grace_s)
        marked = {parse_attempt_key(p) for p in self.glob(f"{PENDING}/*/*.json")}
        dead = []
        for path in self.glob(f"{FRAGMENTS}/*/*.npz"):
            obsid, attempt = parse_attempt_key(path)
            if (obsid, attempt) not in marked and attempt < cutoff:
                dead.append(fragment_key(obsid, attempt))
        for key in dead:
            self._remove(key)
        return len(dead)

    # -- versions ----------------------------------------------------------------------------
    def versions(self) -> list[Version]:
        """Every publish on main, newest first."""
        repo = self.repository()
        if repo is None:
            return []
        return [
            Version(
                snapshot_id=info.id,
                run_id=info.metadata.get("run_id"),
                written_at=info.written_at.isoformat(),
                n_windows=int(info.metadata["n_windows"]),
                n_obsids=int(info.metadata["n_obsids"]),
                message=info.message,
            )
            for info in repo.ancestry(branch=BRANCH)
            if "n_windows" in info.metadata  # the repository's own first commit is no publish
        ]

    def expire(self, older_than: dt.datetime) -> tuple[int, Any]:
        """Forget versions older than ``older_than`` (their run tags too) and let Icechunk's
        garbage collector delete what no remaining version references. Readers of an expired
        version lose it; the tip of main is never expired."""
        repo = self.repository()
        if repo is None:
            return 0, None
        expired = repo.expire_snapshots(older_than, delete_expired_tags=True)
        return len(expired), repo.garbage_collect(older_than)
