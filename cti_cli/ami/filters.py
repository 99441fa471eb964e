"""Ask Asterisk to send a session only the events its consumer reads (AMI ``Filter``).

Why: four fifths of a busy PBX's AMI stream are events no call logic reads (``VarSet``,
``Newexten``, ``DeviceStateChange``...; a lab queue call: 142 events, 30 of them read). cti drops
them as it frames them (``EventFilter``), but the kernel still carries them and cti still reads
and frames them. An include filter per event name (``MatchCriteria: action(include),name(X)``)
is a name-hash comparison inside Asterisk, so such an event costs this session nothing on the
wire. At 100 calls/s the agent used 1.6 to 4.6 points of a core less (docs/performance.md,
sixth round).

The filters belong to this one session: they end with the connection, and every other session
(another login of the same user too) keeps its full stream. Asterisk allows them only to a user
with ``write = system``, because they can widen that user's ``eventfilter`` lines. The feature
came with Asterisk 18.25, 20.10, 21.5 and 22.0. From AMI 11 on (Asterisk 22, the lab's) it is
asked at once; the AMI versions of 18, 20 and 21 cannot tell 20.9 from 20.10, so there the
release is read from ``CoreSettings`` first. An Asterisk without the feature must not be asked:
it would ignore ``MatchCriteria`` and take the empty ``Filter`` as a regular expression that
matches every event, and answer Success. A session that is not asked, or whose filters are
refused, reads every event, exactly as before: the client-side filter stays in every case.

Replies are not filtered: the ``CoreShowChannel`` entries of a reconcile are written to the
session past its event filters. While the filters go in (one action per name, about a
millisecond), events whose names have no filter yet are dropped by Asterisk: that is why the
agent reconciles with ``CoreShowChannels`` *after* installing them, as after any reconnect.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from cti_cli.ami.client import AMIClient
from cti_cli.ami.errors import AMIError
from cti_cli.ami.versions import (
    ADVANCED_FILTERS_SINCE,
    advanced_filters,
    ami_major,
    asterisk_from_ami,
    asterisk_release,
)
from cti_cli.textsafe import shorten

FIRST_AMI_MAJOR = 11  # Asterisk 22: advanced filters, checked against the lab's Asterisk
REASON_LIMIT = 200  # characters of Asterisk's own words kept in a reason
_NAME = re.compile(r"[A-Za-z0-9_]+")


class NotAsked(str):
    """A reason meaning Asterisk was not asked at all: its release has no advanced filters, or
    cannot be told (granting ``write = system`` would change nothing)."""

    __slots__ = ()


class FiltersPartlyApplied(AMIError):
    """Asterisk took some of the filters and refused others: the session would miss the
    refused names, so it must be dropped."""

    kind = "AMI event filters partly applied"


async def filter_events(client: AMIClient, names: Iterable[str]) -> str | None:
    """Install one include filter per event name on this session. None when Asterisk now sends
    only those events; otherwise why not (Asterisk's words, shortened), and nothing was
    installed.

    ``FiltersPartlyApplied`` when Asterisk took some and refused others: the session would
    then miss the refused names, so the caller must drop the connection."""
    wanted = sorted(set(names))
    if not wanted:
        return "no event names to ask for"
    bad = [name for name in wanted if not _NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"not an AMI event name: {bad[0]!r}")
    if cannot := await _not_capable(client):
        return cannot
    replies = await asyncio.gather(*(
        client.action("Filter", {"Operation": "Add", "Filter": "",
                                 "MatchCriteria": f"action(include),name({name})"}, check=False)
        for name in wanted
    ))  # fmt: skip
    refused = [reply for reply in replies if reply.get("Response", "").lower() != "success"]
    if not refused:
        return None
    said = refused[0].get("Message") or refused[0].get("Response") or "no reason given"
    why = shorten(said, REASON_LIMIT)
    if len(refused) < len(replies):
        raise FiltersPartlyApplied(
            f"Asterisk took {len(replies) - len(refused)} of {len(replies)} event filters "
            f"and refused the others ({why})"
        )
    return f"Asterisk refused event filters: {why}"


async def _not_capable(client: AMIClient) -> NotAsked | None:
    """Why this Asterisk must not be asked for advanced filters, or None when it has them."""
    major = ami_major(client.ami_version)
    if major is not None and major >= FIRST_AMI_MAJOR:
        return None
    branch = asterisk_from_ami(client.ami_version or "")
    since = ADVANCED_FILTERS_SINCE.get(int(branch)) if branch.isdecimal() else None
    if since is None:
        version = shorten(client.ami_version or "", 40) or "of unknown version"
        return NotAsked(f"AMI {version} is not asked for event filters (Asterisk 18.25, 20.10, "
                        "21.5, 22 and later are)")  # fmt: skip
    first = f"{branch}.{since}"
    reply = await client.action("CoreSettings", check=False)
    said = reply.get("AsteriskVersion")
    release = asterisk_release(said)
    if release is None or str(release[0]) != branch:  # refused, or a release we cannot place
        shown = shorten(said or reply.get("Message") or "not told", 40)
        return NotAsked(f"Asterisk's release is unknown ({shown}): not asked for event "
                        f"filters ({first} and later are)")  # fmt: skip
    if not advanced_filters(release):
        return NotAsked(f"Asterisk {release[0]}.{release[1]} has no advanced event filters "
                        f"({first} and later have)")  # fmt: skip
    return None
