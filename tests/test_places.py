"""Allowed places: what a worker may read, whatever a manifest or a Swift API answer says."""

from __future__ import annotations

import os

import pytest

from batglitch.pipeline.plan import PlanOptions
from batglitch.sources.places import (
    DEFAULT_ARCHIVE_ROOTS,
    DEFAULT_QUICKLOOK,
    Places,
    RefusedLocation,
    archive_roots,
    quicklook_roots,
)

OBSID = "00031337001"
KEY = f"swift/data/obs/2024_03/{OBSID}/bat/event/sw{OBSID}bevshpo_uf.evt.gz"
DEFAULT = Places(DEFAULT_ARCHIVE_ROOTS, DEFAULT_QUICKLOOK)


def test_roots_setting(monkeypatch):
    monkeypatch.delenv("BATGLITCH_ARCHIVE_ROOTS", raising=False)
    monkeypatch.delenv("BATGLITCH_QUICKLOOK_URL", raising=False)
    assert archive_roots() == DEFAULT_ARCHIVE_ROOTS
    assert quicklook_roots() == DEFAULT_QUICKLOOK
    assert Places.configured() == DEFAULT
    monkeypatch.setenv("BATGLITCH_ARCHIVE_ROOTS", "file:///tmp/arch/, s3://mirror/prefix")
    monkeypatch.setenv("BATGLITCH_QUICKLOOK_URL", "https://ql.example/data/")
    assert archive_roots() == ("file:///tmp/arch", "s3://mirror/prefix")
    assert quicklook_roots() == ("https://ql.example/data",)
    assert archive_roots(["/x/"]) == ("/x",)
    assert PlanOptions(roots=("/x",), quicklook=("/q",)).places == Places(("/x",), ("/q",))


@pytest.mark.parametrize(
    "url",
    [
        f"s3://nasa-heasarc/{KEY}",
        f"https://heasarc.gsfc.nasa.gov/FTP/{KEY}",
        f"https://swift.gsfc.nasa.gov/data/swift/sw{OBSID}.001/bat/event/x.evt.gz",
    ],
)
def test_urls_under_the_default_places_pass_unchanged(url):
    assert DEFAULT.check(url, OBSID) == url


HOSTILE_URLS = {
    "local file": "file:///etc/passwd",
    "local path": "/proc/self/environ",
    "metadata service": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "plain http archive": f"http://heasarc.gsfc.nasa.gov/FTP/{KEY}",
    "dot-dot in an archived path": f"https://heasarc.gsfc.nasa.gov/FTP/swift/../../../etc/{KEY}",
    "dot-dot on S3": f"s3://nasa-heasarc/swift/../other/{KEY}",
    "escaped dot-dot": f"https://heasarc.gsfc.nasa.gov/FTP/%2e%2e/{KEY}",
    "dot segment": f"s3://nasa-heasarc/./{KEY}",
    "empty segment": f"s3://nasa-heasarc//{KEY}",
    "another bucket": f"s3://attacker-bucket/{KEY}",
    "bucket name prefix": f"s3://nasa-heasarc-evil/{KEY}",
    "user info": f"https://heasarc.gsfc.nasa.gov@evil.example/FTP/{KEY}",
    "query string": f"https://heasarc.gsfc.nasa.gov/FTP/{KEY}?x=1",
    "backslash": f"https://heasarc.gsfc.nasa.gov/FTP/swift\\..\\{KEY}",
    "newline": f"https://heasarc.gsfc.nasa.gov/FTP/{KEY}\nHost: evil",
    "other host": f"https://evil.example/data/swift/{KEY}",
    "ftp": f"ftp://heasarc.gsfc.nasa.gov/FTP/{KEY}",
}


@pytest.mark.parametrize("url", HOSTILE_URLS.values(), ids=HOSTILE_URLS.keys())
def test_hostile_urls_are_refused_naming_obsid_and_url(url):
    with pytest.raises(RefusedLocation) as caught:
        DEFAULT.check(url, OBSID)
    message = str(caught.value)
    assert caught.value.obsid == OBSID and message.startswith(f"obsid {OBSID}, ")
    assert "refused" in message and caught.value.source == url


def test_a_quicklook_url_from_the_api_must_be_on_the_quicklook_site():
    archived = f"https://heasarc.gsfc.nasa.gov/FTP/{KEY}"
    assert DEFAULT.check(archived) == archived
    with pytest.raises(RefusedLocation):
        DEFAULT.check(archived, quicklook=True)


def test_local_paths_only_under_a_local_root_and_symlinks_resolved(tmp_path):
    root = tmp_path / "heasarc"
    (root / "swift").mkdir(parents=True)
    inside = root / "swift" / "f.evt.gz"
    inside.write_bytes(b"x")
    outside = tmp_path / "secret"
    outside.write_bytes(b"y")
    os.symlink(outside, root / "swift" / "link.evt.gz")
    local = Places.configured([str(root)], [])
    assert local.check(str(inside)) == str(inside)
    assert local.check(inside.as_uri()) == inside.as_uri()
    for url in (
        str(outside),
        str(root / "swift" / "link.evt.gz"),
        f"{root}/swift/../../secret",
        f"{root}-other/f.evt.gz",
    ):
        with pytest.raises(RefusedLocation):
            local.check(url, OBSID)
    with pytest.raises(RefusedLocation, match="no local archive root"):
        DEFAULT.check(str(inside), OBSID)
