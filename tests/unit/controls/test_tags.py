from datetime import UTC, datetime

import pytest

from autoupdated.controls.tags import announcement, check_track, due, newer_tags, next_page


def test_semver_finds_newer_releases_of_the_same_shape_newest_first():
    tags = ["1.26.3", "1.27.1", "1.27.0", "1.26.10", "2", "1.27", "latest", "1.28.0-rc1", "v1.30.0", "1.20.0"]
    assert newer_tags("1.26.3", tags, "semver") == ["1.27.1", "1.27.0", "1.26.10"]
    assert newer_tags("v1.2", ["v1.3", "v1.10", "1.11"], "semver") == ["v1.10", "v1.3"]
    assert newer_tags("latest", tags, "semver") == []


def test_a_regex_selects_the_tags_that_count():
    tags = ["1.27.0-alpine", "1.27.0", "1.25.0-alpine"]
    assert newer_tags("1.26.3-alpine", tags, r"(\d+)\.(\d+)\.(\d+)-alpine") == ["1.27.0-alpine"]


def test_track_values_are_checked():
    assert check_track("SemVer") == "semver"
    with pytest.raises(ValueError, match="neither"):
        check_track("([")


def test_a_repository_is_listed_at_most_once_per_interval():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert due(None, now) and not due(now.timestamp() - 3600, now) and due(now.timestamp() - 86400, now)


def test_link_pagination_and_the_announcement():
    assert next_page('</v2/a/tags/list?n=100&last=x>; rel="next"') == "/v2/a/tags/list?n=100&last=x"
    assert next_page(None) is None and next_page('<x>; rel="prev"') is None
    assert announcement("web", "1.26.3", ["1.27.1"]).startswith("container web: 1.27.1 available; you run 1.26.3")
