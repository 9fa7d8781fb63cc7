"""LocalStack as the tests' object store: boto3, s3fs and zarr v3 all reach it and agree."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import TYPE_CHECKING

import numpy as np
import pytest
import s3fs
import zarr

if TYPE_CHECKING:
    from localstack import LocalStack

# Imported as a plugin (not above) so pytest can rewrite its asserts.

pytestmark = pytest.mark.localstack


def test_boto3_writes_reads_and_lists(localstack: LocalStack, s3_bucket: str) -> None:
    s3 = localstack.client("s3")
    bodies = {f"runs/r1/obs/{i:011d}.json": json.dumps({"i": i}).encode() for i in range(3)}
    for key, body in bodies.items():
        s3.put_object(Bucket=s3_bucket, Key=key, Body=body)
    s3.put_object(Bucket=s3_bucket, Key="other/x", Body=b"x")

    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix="runs/r1/")["Contents"]

    assert {obj["Key"] for obj in listed} == set(bodies)
    for key, body in bodies.items():
        assert s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == body


def test_s3fs_sees_what_boto3_wrote_and_back(localstack: LocalStack, s3_bucket: str) -> None:
    s3 = localstack.client("s3")
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **localstack.storage_options())
    payload = bytes(range(256)) * 1000
    s3.put_object(Bucket=s3_bucket, Key="a/from-boto3.bin", Body=payload)

    with fs.open(f"{s3_bucket}/a/from-s3fs.txt", "w") as f:
        f.write("obsid 00012345001\n")

    assert fs.cat_file(f"{s3_bucket}/a/from-boto3.bin") == payload
    assert sorted(fs.ls(f"{s3_bucket}/a", detail=False)) == [
        f"{s3_bucket}/a/from-boto3.bin",
        f"{s3_bucket}/a/from-s3fs.txt",
    ]
    written = s3.get_object(Bucket=s3_bucket, Key="a/from-s3fs.txt")["Body"].read()
    assert written == b"obsid 00012345001\n"


def test_zarr_v3_round_trip_on_s3(localstack: LocalStack, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/archive.zarr"
    options = localstack.storage_options()
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 60_000, size=(5, 286, 173), dtype=np.uint16)
    obsids = np.array(["00012345001", "00012345002", "", "ünïcode-ok", "x" * 40], dtype=object)

    root = zarr.open_group(url, mode="w", storage_options=options)
    dpi = root.create_array("dpi", shape=counts.shape, dtype=counts.dtype, chunks=(1, 286, 173))
    dpi[:] = counts
    names = root.create_array("obsid", shape=obsids.shape, dtype=str)
    names[:] = obsids
    root.attrs["software"] = "batglitch"

    again = zarr.open_group(url, mode="r", storage_options=options)

    assert again.metadata.zarr_format == 3
    np.testing.assert_array_equal(again["dpi"][:], counts)
    assert again["obsid"][:].tolist() == obsids.tolist()
    assert again.attrs["software"] == "batglitch"
    stored = localstack.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="archive.zarr/")
    keys = {obj["Key"] for obj in stored["Contents"]}
    assert {"archive.zarr/zarr.json", "archive.zarr/obsid/zarr.json"} <= keys
    assert sum(key.startswith("archive.zarr/dpi/c/") for key in keys) == len(counts)


def test_script_start_reuses_the_running_localstack(localstack: LocalStack) -> None:
    """A second start must not launch another LocalStack (the port is taken, it would die)."""
    from localstack import SCRIPT

    marker = f"reuse-{uuid.uuid4().hex[:12]}"
    localstack.client("s3").create_bucket(Bucket=marker)

    again = subprocess.run(
        ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=60, check=False
    )

    assert again.returncode == 0, again.stderr
    assert "starting" not in again.stderr
    buckets = {b["Name"] for b in localstack.client("s3").list_buckets()["Buckets"]}
    assert marker in buckets
    localstack.client("s3").delete_bucket(Bucket=marker)


def test_the_archive_on_s3(localstack: LocalStack, s3_bucket: str, tmp_path) -> None:
    """The project's own storage path on real S3 semantics: fragments and markers, a publish
    through Icechunk's S3 storage (conditional writes), read back with icechunk + xarray only."""
    import icechunk
    import xarray as xr

    from batglitch.pipeline.worker import DONE, ingest_file
    from batglitch.standins.synth import SynthSpec, write_event_file
    from batglitch.store.archive import Archive
    from batglitch.store.keys import new_attempt_id
    from batglitch.store.reader import open_archive

    archive = Archive(f"s3://{s3_bucket}/archive", localstack.storage_options())
    files = []
    for i in range(2):
        files.append(str(tmp_path / f"{i}.evt.gz"))
        spec = SynthSpec(obsid=f"0001234500{i}", duration=60.0, rate_hz=800.0, n_glitches=2, seed=i)
        write_event_file(files[-1], spec)
    results = [ingest_file(f, archive) for f in files]
    assert [r.status for r in results] == [DONE, DONE]
    run_id = new_attempt_id()
    summary = archive.publish(run_id=run_id)
    assert summary.n_windows == sum(r.n_windows for r in results) > 0
    assert archive.completed_obsids() == {"00012345000", "00012345001"}
    assert [v.run_id for v in archive.versions()] == [run_id]

    storage = icechunk.s3_storage(
        bucket=s3_bucket, prefix="archive/repo", endpoint_url=localstack.endpoint,
        allow_http=True, force_path_style=True, region="us-east-1",
        access_key_id="test", secret_access_key="test",
    )  # fmt: skip
    session = icechunk.Repository.open(storage).readonly_session(tag=run_id)
    ds = xr.open_zarr(session.store, consolidated=False)  # no project code
    assert sorted(set(ds.obsid.values.tolist())) == ["00012345000", "00012345001"]
    assert ds.dpi.shape == (summary.n_windows, 286, 173)
    assert np.array_equal(ds.n_events.values, ds.dpi.values.sum(axis=(1, 2)))
    assert open_archive(archive.url, storage_options=archive.storage_options).equals(ds)
    keys = {o["Key"] for o in localstack.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert not {k for k in keys if k.startswith(("archive/fragments/", "archive/pending/"))}
