"""The key layout: identifiers are checked before they become keys, so nothing writes outside."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from astropy.io import fits

from batglitch.pipeline.job import process_item
from batglitch.pipeline.plan import ObsEntry, PlannedFile
from batglitch.pipeline.worker import FAILED, ingest_file
from batglitch.standins.synth import SynthSpec, write_event_file
from batglitch.store import keys
from batglitch.store.archive import Archive

HOSTILE = ("../../escaped", "00012345678/../../x", "0001234567", "000123456789", "", "0001234567a")


@pytest.mark.parametrize("obsid", HOSTILE)
def test_an_obsid_that_is_not_11_digits_never_becomes_a_key(obsid):
    with pytest.raises(keys.InvalidIdentifier, match="not 11 digits"):
        keys.validate_obsid(obsid)
    attempt = keys.new_attempt_id()
    for make in (keys.fragment_key, keys.marker_key):
        with pytest.raises(keys.InvalidIdentifier):
            make(obsid, attempt)
    with pytest.raises(keys.InvalidIdentifier):
        keys.result_key(attempt, obsid)


@pytest.mark.parametrize("run_id", ["../x", "20240101T000000000000Z-abcdefg/", "latest", None])
def test_a_run_id_not_of_the_fixed_pattern_never_becomes_a_key(run_id):
    for make in (keys.manifest_key, keys.plan_key, keys.report_key, keys.results_pattern):
        with pytest.raises(keys.InvalidIdentifier, match="run id"):
            make(run_id)


def test_made_ids_pass_and_sort_by_time():
    first, second = keys.new_attempt_id(), keys.new_attempt_id()
    assert keys.validate_run_id(first) == first and first < second
    assert keys.attempt_cutoff(60.0) < first
    assert keys.result_key(first, "00012345001") == f"runs/{first}/results/00012345001.json"


def test_a_header_obs_id_with_dots_is_a_bad_file_and_writes_nothing(tmp_path):
    good = tmp_path / "good.evt.gz"
    write_event_file(good, SynthSpec(obsid="00031000001", tstart=7.0e8, duration=30.0, seed=1))
    with fits.open(io.BytesIO(gzip.decompress(good.read_bytes()))) as hdus:
        for hdu in hdus:
            hdu.header["OBS_ID"] = "../../../escaped"
        out = io.BytesIO()
        hdus.writeto(out)
    bad = tmp_path / "bad.evt.gz"
    bad.write_bytes(gzip.compress(out.getvalue()))
    store = tmp_path / "deep" / "archive"
    result = ingest_file(str(bad), Archive(str(store)))
    assert result.status == FAILED and "OBS_ID '../../../escaped' is not 11 digits" in result.error
    assert str(bad) in result.error
    assert not any(p.name == "escaped" for p in tmp_path.rglob("*"))


def test_a_manifest_obsid_with_dots_fails_its_item_and_writes_nothing(tmp_path):
    store = tmp_path / "deep" / "archive"
    entry = ObsEntry("../../escaped", (), (PlannedFile("po", ("/nowhere.evt.gz",), True),))
    result = process_item(entry, Archive(str(store)), keys.new_attempt_id())
    assert result.status == FAILED and "not 11 digits" in result.error
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [] and not Path(tmp_path, "escaped").exists()
