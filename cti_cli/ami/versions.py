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
