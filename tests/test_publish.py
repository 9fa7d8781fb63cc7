"""Publishing under fire, locally and on LocalStack S3: readers looping while 20 publishes run see
only whole published versions, and a publish SIGKILLed at any of a dozen points leaves readers on
the previous version while the next publish completes at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from readers import digest, problems

from batglitch.standins.counting_proxy import CountingProxy
from batglitch.standins.rows import fragment
from batglitch.store.archive import Archive
from batglitch.store.keys import FRAGMENTS, PENDING
from batglitch.store.reader import open_archive
from batglitch.store.schema import FRAGMENT_COLUMNS

READERS = Path(__file__).with_name("readers.py")


@dataclass(frozen=True)
class Place:
    """An archive location, local or on LocalStack, with what a child process needs to reach it."""

    url: str
    options: dict[str, Any] | None
    endpoint: str | None

    def archive(self) -> Archive:
        return Archive(self.url, self.options)

    def env(self) -> dict[str, str]:
        aws = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "test",
               "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}  # fmt: skip
        return {**os.environ, **(aws if self.endpoint else {})}


@pytest.fixture(params=["local", "s3"])
def place(request, tmp_path) -> Place:
    if request.param == "local":
        return Place(str(tmp_path / "archive"), None, None)
    localstack = request.getfixturevalue("localstack")
    bucket = request.getfixturevalue("s3_bucket")
    return Place(f"s3://{bucket}/archive", localstack.storage_options(), localstack.endpoint)


def obsid(i: int) -> str:
    return f"000310{i:05d}"


def stage(archive: Archive, step: int) -> None:
    """Step ``step``'s worker output: two new obsids and a re-run of an earlier one, with fewer
    or more rows than before (so publishes append, overwrite and move rows)."""
    archive.write_fragment(fragment(obsid(2 * step), 1 + step % 3, seed=2 * step, sparse=True))
    archive.write_fragment(fragment(obsid(2 * step + 1), 0))
    if step:
        archive.write_fragment(fragment(obsid(0), 4 - step % 4, seed=1000 + step, sparse=True))


def test_readers_during_20_publishes_see_only_whole_published_versions(place, tmp_path):
    archive = place.archive()
    out, stop = tmp_path / "reads.jsonl", tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, str(READERS), place.url, str(out), str(stop), *filter(None, [place.endpoint])],
        env=place.env(),
    )  # fmt: skip
    published = {}
    try:
        for step in range(20):
            stage(archive, step)
            snapshot = archive.publish().snapshot_id
            published[snapshot] = digest(open_archive(place.url, snapshot, place.options).load())
            time.sleep(0.05)  # the reader's reads straddle commits, not only the busy stretches
    finally:
        stop.touch()
        reader.wait(timeout=120)
    reads = [json.loads(line) for line in out.read_text().splitlines()]
    assert reader.returncode == 0
    assert {r["how"] for r in reads} == {"open_archive", "plain"}
    assert len({r["snapshot"] for r in reads}) >= 3, "the reader must overlap several publishes"
    inconsistent = [
        r for r in reads if r["problems"] or published.get(r["snapshot"]) != r["digest"]
    ]
    assert inconsistent == [], inconsistent[:3]


# Runs in a child process: a publish that SIGKILLs itself on the n-th call of one function.
KILLED_PUBLISH = textwrap.dedent(
    """
    import os, signal, sys, json
    import icechunk, zarr
    from batglitch.store.archive import Archive
    from batglitch.store.keys import new_attempt_id

    url, options, target, nth = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    owner_name, name = target.rsplit(".", 1)
    owner = {"Array": zarr.Array, "Session": icechunk.Session,
             "Repository": icechunk.Repository, "Archive": Archive}[owner_name]
    real, calls = getattr(owner, name), []

    def kill_on_nth(*args, **kwargs):
        calls.append(1)
        if len(calls) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(owner, name, kill_on_nth)
    Archive(url, options).publish(run_id=new_attempt_id())
    """
)
# (function, n-th call), one per step of stage(): before, during and after the commit, and
# while clearing after it. The counts fit what each step's publish calls (a census of them):
# slice writes happen in steps 1 and 3 only, the other steps write rows orthogonally.
POINTS = [
    ("Array.__setitem__", 1), ("Archive._load", 1), ("Array.__setitem__", 13),
    ("Array.resize", 1), ("Array.resize", 22), ("Array.set_orthogonal_selection", 1),
    ("Array.set_orthogonal_selection", 12), ("Array.set_orthogonal_selection", 22),
    ("Session.commit", 1),
    ("Repository.create_tag", 1), ("Archive._remove", 1), ("Archive._remove", 4),
]  # fmt: skip
COMMITTED = POINTS.index(("Repository.create_tag", 1))  # kills from here on follow the commit


def test_a_publish_killed_at_any_point_leaves_the_previous_version(place):
    archive = place.archive()
    stage(archive, 0)
    archive.publish()
    for i, (target, nth) in enumerate(POINTS, start=1):
        before = open_archive(place.url, storage_options=place.options).load()
        stage(archive, i)
        child = subprocess.run(
            [sys.executable, "-c", KILLED_PUBLISH, place.url, json.dumps(place.options), target,
             str(nth)],
            env=place.env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert child.returncode == -signal.SIGKILL, (target, nth, child.stderr[-2000:])

        seen = open_archive(place.url, storage_options=place.options).load()
        assert problems(seen) == []
        if i <= COMMITTED:
            assert seen.attrs["snapshot_id"] == before.attrs["snapshot_id"], target
            assert digest(seen) == digest(before)
        else:  # committed before the kill: the new version, whole
            assert seen.attrs["snapshot_id"] != before.attrs["snapshot_id"], target

        # The next publish needs no lease to expire: it completes at once and consumes all.
        archive.publish(prune_grace_s=0.0)
        assert leftovers(archive) == []
    assert_same_as_unkilled(place, archive, len(POINTS))


def leftovers(archive: Archive) -> list[str]:
    return archive.glob(f"{FRAGMENTS}/*/*") + archive.glob(f"{PENDING}/*/*")


def assert_same_as_unkilled(place: Place, archive: Archive, steps: int) -> None:
    """The killed-and-resumed archive holds the same rows as one built without kills."""
    reference = Archive(f"{place.url}-reference", place.options)
    for step in range(steps + 1):
        stage(reference, step)
        reference.publish()
    got = open_archive(archive.url, storage_options=place.options).load()
    want = open_archive(reference.url, storage_options=place.options).load()
    assert digest(got, ordered=False) == digest(want, ordered=False)
    assert sorted(archive.completions()) == sorted(reference.completions())


def test_requests_to_write_an_obsid_and_to_learn_what_is_complete(localstack, s3_bucket):
    """Counted at the object store: a worker's obsid is a handful of requests; planning's
    question has a fixed bound whatever the archive's size: the branch, repository and snapshot
    objects, then per table column its manifest and one chunk (Icechunk inlines small chunks in
    the manifest, so small archives need fewer)."""
    with CountingProxy(localstack.endpoint) as proxy:
        options = {**localstack.storage_options(), "endpoint_url": proxy.url}
        archive = Archive(f"s3://{s3_bucket}/archive", options)
        archive.write_fragment(fragment(obsid(0), 1, seed=0))
        archive.publish()  # the repository exists from here on
        proxy.reset()
        archive.write_fragment(fragment(obsid(1), 10, seed=1))
        assert proxy.counts == {"PUT": 2}  # the fragment's one object, then its marker
        asked = []
        for n in (40, 240):
            for i in range(len(archive.completions()), n):
                archive.write_fragment(fragment(obsid(i), 1, seed=i, sparse=True))
            archive.publish()
            proxy.reset()
            assert len(archive.completions()) == n
            asked.append(proxy.total)
        assert asked[0] <= asked[1] <= 5 + 2 * len(FRAGMENT_COLUMNS), (asked, proxy.requests)
