"""New-tag discovery (notify only): which of a repository's tags are newer than the one a
container runs, whether the repository is due for another listing, and the next page of a
`tags/list` answer.  The unit's image reference is never changed."""

from __future__ import annotations

import re
from datetime import datetime

SEMVER = "semver"
DEFAULT_INTERVAL = 86400.0  # list a repository's tags at most once a day
_VERSION = re.compile(r"^(?P<prefix>v?)(?P<nums>\d+(?:\.\d+){0,3})$")
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?', re.I)


def check_track(text: str) -> str:
    """`semver`, or a regular expression a tag must match (fullmatch); ValueError says why not."""
    if text.strip().lower() == SEMVER:
        return SEMVER
    try:
        re.compile(text)
    except re.error as err:
        raise ValueError(f'{text!r} is neither "semver" nor a valid regular expression ({err})') from None
    return text


def _key(tag: str, track: str) -> tuple[str, tuple[int, ...]] | None:
    """A comparable version: (prefix, numbers); None for a tag the tracking ignores."""
    if track != SEMVER:
        match = re.fullmatch(track, tag)
        if match is None:
            return None
        numbers = re.findall(r"\d+", "".join(g for g in match.groups() if g) if match.groups() else tag)
        return ("", tuple(int(n) for n in numbers)) if numbers else None
    found = _VERSION.match(tag)
    if found is None:
        return None  # latest, 1.2.3-rc1, 1.2-alpine: not a release version
    return found.group("prefix"), tuple(int(n) for n in found.group("nums").split("."))


def newer_tags(current: str, tags: list[str], track: str) -> list[str]:
    """The tags newer than `current`, newest first.  Semver: the same prefix (v or none) and the
    same number of components, so "1.26.3" is compared with "1.27.1" and not with "1" or "1.27"."""
    mine = _key(current, track)
    if mine is None:
        return []
    prefix, numbers = mine
    newer = []
    for tag in set(tags):
        key = _key(tag, track)
        if key is None or key[0] != prefix or (track == SEMVER and len(key[1]) != len(numbers)):
            continue
        if key[1] > numbers:
            newer.append((key[1], tag))
    return [tag for _, tag in sorted(newer, reverse=True)]


def due(last_checked: float | None, now: datetime, interval: float = DEFAULT_INTERVAL) -> bool:
    if last_checked is None:
        return True
    return now.timestamp() - last_checked >= interval


def next_page(link_header: str | None) -> str | None:
    """The `rel="next"` target of a Link header (distribution's tags/list pagination), or None."""
    if not link_header:
        return None
    match = _LINK_NEXT.search(link_header)
    return match.group(1) if match else None


def announcement(container: str, current: str, newer: list[str]) -> str:
    return (
        f"container {container}: {newer[0]} available; you run {current}"
        + (f" (newer: {', '.join(newer[:5])})" if len(newer) > 1 else "")
        + "; the unit's image is not changed (track_tags)"
    )
