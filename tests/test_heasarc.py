"""Where event files live: archive keys, candidate months, kinds, and URLs every worker accepts."""

from __future__ import annotations

from datetime import datetime

import pytest

from batglitch.sources.heasarc import (
    ENABLE_MAP,
    ArchiveListing,
    bat_file_name,
    bat_key,
    candidate_months,
    kind_of,
    locate_with_data_api,
)
from batglitch.sources.places import DEFAULT_ARCHIVE_ROOTS, Places, RefusedLocation

OBSID = "00012345001"


@pytest.mark.parametrize(
    ("trigger", "months"),
    [
        (datetime(2024, 3, 15, 12), ("2024_03", "2024_02")),
        (datetime(2024, 1, 1, 6), ("2024_01", "2023_12")),  # a year back
        # a minute either way of a month's edge: either base of GUANO times
        (datetime(2024, 3, 31, 23, 59, 30), ("2024_04", "2024_03", "2024_02")),
    ],
)
def test_candidate_months_are_the_triggers_and_the_one_before(trigger, months):
    assert candidate_months(trigger) == months


def test_kinds_from_names():
    assert [kind_of(bat_file_name(OBSID, k)) for k in ("po", "sp", "sl")] == ["po", "sp", "sl"]
    assert kind_of(f"/x/{bat_file_name(OBSID, 'sp').removesuffix('.gz')}") == "sp"
    assert kind_of("/x/hand-made.evt.gz") == ""


def test_archive_urls_under_the_default_roots_are_allowed():
    """The keys the planner makes, under the public bucket and the HTTPS archive, pass the
    workers' check (sources.places): a plan never hands out a URL its workers refuse."""
    key = bat_key("2024_03", OBSID, "po")
    assert key == f"swift/data/obs/2024_03/{OBSID}/bat/event/sw{OBSID}bevshpo_uf.evt.gz"
    places = Places.configured(DEFAULT_ARCHIVE_ROOTS, [])
    for root in DEFAULT_ARCHIVE_ROOTS:
        assert places.check(f"{root}/{key}", OBSID) == f"{root}/{key}"


def test_a_listing_locates_every_kind_under_every_root_and_checks_them(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    (first / f"swift/data/obs/2024_02/{OBSID}").mkdir(parents=True)
    listing = ArchiveListing((str(first), str(second)))
    places = Places.configured(listing.roots, [])
    found = listing.locate(OBSID, ("po", "sp"), ("2024_03", "2024_02"), places)
    assert {k: (v.urls, v.month, v.archived) for k, v in found.items()} == {
        k: (
            tuple(f"{r}/{bat_key('2024_02', OBSID, k)}" for r in (first, second)),
            "2024_02",
            True,
        )
        for k in ("po", "sp")
    }
    assert listing.listings == 2  # (first, 2024_03) empty, (first, 2024_02) holds it
    assert listing.locate("00099999001", ("po",), ("2024_03", "2024_02"), places) == {}
    assert listing.listings == 4  # the rest, each once; asked again, nothing is listed twice
    listing.locate(OBSID, ("po",), ("2024_03", "2024_02"), places)
    assert listing.listings == 4
    with pytest.raises(RefusedLocation):  # a root the workers may not read from
        listing.locate(OBSID, ("po",), ("2024_02",), Places.configured([str(second)], []))


class AnsweringAPI:
    """The Data API's list of an obsid's files, as SwiftAPI.data_files returns it."""

    def __init__(self, files: list[dict]) -> None:
        self.files = files

    def data_files(self, obsid: str) -> list[dict]:
        return self.files


def test_a_refused_enable_map_from_the_data_api_costs_only_the_map(caplog):
    """The API's quick-look event file is kept when its map's URL lies elsewhere (left out,
    logged); a refused event file still refuses the obsid."""
    ql = "https://swift.gsfc.nasa.gov/data/swift"
    places = Places.configured([], [ql])
    event = {"filename": bat_file_name(OBSID, "po"), "quicklook": True,
             "url": f"{ql}/sw{OBSID}.001/bat/event/{bat_file_name(OBSID, 'po')}"}  # fmt: skip
    stray = {"filename": bat_file_name(OBSID, ENABLE_MAP), "quicklook": True,
             "url": f"https://elsewhere.example/{bat_file_name(OBSID, ENABLE_MAP)}"}  # fmt: skip
    found = locate_with_data_api(AnsweringAPI([event, stray]), OBSID, ("po", ENABLE_MAP), places)
    assert set(found) == {"po"} and found["po"].urls == (event["url"],)
    assert f"obsid {OBSID}" in caplog.text and "elsewhere.example" in caplog.text
    with pytest.raises(RefusedLocation):
        locate_with_data_api(AnsweringAPI([{**event, "url": stray["url"]}]), OBSID, ("po",), places)
