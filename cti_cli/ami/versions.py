"""AMI protocol version (from the banner) -> Asterisk major version.

Asterisk bumps the AMI version with each release; the table lets ``cti`` name the
Asterisk release when ``CoreSettings`` is not allowed for the AMI user.
Some AMI versions were shipped by two releases (2.5.0 by 12 and 13.0, 2.8.0 by
13.x and 14.0-14.1); for those the answer names both.
"""

from __future__ import annotations

import re

_AMBIGUOUS = {
    (2, 5, 0): "12 or 13",
    (2, 8, 0): "13 or 14",
}

# major AMI version >= 3 -> Asterisk major version
_FROM_MAJOR = {
    3: "14",
    4: "15",
    5: "16",
    6: "17",
    7: "18",
    8: "19",
    9: "20",
    10: "21",
    11: "22",
    12: "23",
}


# The banner is the PBX's text: a version is a few dot-separated runs of ASCII digits (not
# `str.isdigit`, which takes "١١" for 11, and never an unbounded `int()`, which raises on
# 4,300 digits).
_VERSION = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6}){0,5}")


def _parse(ami_version: str) -> tuple[int, ...] | None:
    text = ami_version.strip()
    if not _VERSION.fullmatch(text):
        return None
    return tuple(int(p) for p in text.split("."))


def ami_major(ami_version: str | None) -> int | None:
    """The major number of an AMI version ("11.0.0" → 11); None when it is not one."""
    parsed = _parse(ami_version or "")
    return parsed[0] if parsed else None


def asterisk_from_ami(ami_version: str) -> str:
    """Return the Asterisk release(s) that report ``ami_version``, e.g. "22" or "13 or 14"."""
    v = _parse(ami_version)
    if v is None:
        return "unknown"
    full = (*v, 0, 0)[:3]
    if full in _AMBIGUOUS:
        return _AMBIGUOUS[full]
    major, minor = full[0], full[1]
    if major == 1:
        return {0: "1.0-1.4", 1: "1.6 or 1.8", 2: "10", 3: "11"}.get(minor, "unknown")
    if major == 2:
        if minor <= 5:
            return "12"
        if minor <= 10:
            return "13"
        return "unknown"
    return _FROM_MAJOR.get(major, "unknown")


# `CoreSettings`' AsteriskVersion starts with the release ("20.10.0", Debian's
# "22.10.1+dfsg+~cs6.17.60671434-1"); "GIT-20-1a2b3c", "certified-20.7-cert1" name none
_RELEASE = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})(?![0-9])")


def asterisk_release(asterisk_version: str | None) -> tuple[int, int] | None:
    """(major, minor) of an ``AsteriskVersion`` ("20.10.0" → (20, 10)); None when it does not
    start with one."""
    found = _RELEASE.match((asterisk_version or "").strip())
    return (int(found[1]), int(found[2])) if found else None


# advanced AMI event filters (`MatchCriteria`, `eventfilter(action(…),name(…))`) came with
# these releases of the branches that were maintained then, and every release from 22 on
ADVANCED_FILTERS_SINCE = {18: 25, 20: 10, 21: 5}


def advanced_filters(release: tuple[int, int] | None) -> bool:
    """Whether this Asterisk release (``asterisk_release``) has advanced event filters."""
    if release is None:
        return False
    major, minor = release
    return major >= 22 or minor >= ADVANCED_FILTERS_SINCE.get(major, 1 << 30)
