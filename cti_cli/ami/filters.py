"""Ask Asterisk to send a session only the events its consumer reads (AMI ``Filter``).

Why: on a busy PBX two thirds of the AMI stream are events no call logic reads (``VarSet``,
``Newexten``, ``DeviceStateChange``...). cti drops them as it frames them (``EventFilter``), but
Asterisk still formats each one, the kernel still carries it and cti still reads and frames it:
at 100 calls/s that was a sixth of the agent's CPU. An advanced include filter per event name
(``MatchCriteria: action(include),name(X)``, Asterisk 22) is a hash comparison inside Asterisk,
so an unread event costs nobody anything.

The filters belong to this one session (they end with the connection; other AMI users are not
affected) and Asterisk allows them only to a user with ``write = system``. Older Asterisk does
not know ``MatchCriteria`` (it would take the empty ``Filter`` as a regular expression), so they
are asked for only from AMI 11 (Asterisk 22) on, where the lab checks them. The client-side filter
stays in every case: a session whose filters were refused reads every event, exactly as before.

List actions are not affected: the ``CoreShowChannel`` entries of a reconcile are replies, which
Asterisk writes to the session past its event filters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from cti_cli.ami.client import AMIClient
from cti_cli.ami.errors import AMIError

FIRST_AMI_MAJOR = 11  # Asterisk 22: advanced filters, checked against the lab's Asterisk


class FiltersHalfApplied(AMIError):
    """Asterisk took some of the filters and refused others: the session would miss events."""


def ami_major(version: str | None) -> int | None:
    """The major number of an AMI version ("11.0.0" → 11); None when there is none."""
    head = (version or "").strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


async def filter_events(client: AMIClient, names: Iterable[str]) -> str | None:
    """Install one include filter per event name on this session. None when Asterisk now sends
    only those events; otherwise why not (one line), and nothing was installed.

    ``FiltersHalfApplied`` when Asterisk took some and refused others: the session would then
    miss the refused names, so the caller must drop the connection (and not ask again)."""
    wanted = sorted(set(names))
    if not wanted:
        return "no event names to ask for"
    major = ami_major(client.ami_version)
    if major is None or major < FIRST_AMI_MAJOR:
        return f"AMI {client.ami_version or 'of unknown version'} has no advanced event filters"
    replies = await asyncio.gather(*(
        client.action("Filter", {"Operation": "Add", "Filter": "",
                                 "MatchCriteria": f"action(include),name({name})"}, check=False)
        for name in wanted
    ))  # fmt: skip
    refused = [reply for reply in replies if reply.get("Response", "").lower() != "success"]
    if not refused:
        return None
    why = refused[0].get("Message") or refused[0].get("Response") or "no reason given"
    if len(refused) < len(replies):
        raise FiltersHalfApplied(
            f"Asterisk took {len(replies) - len(refused)} of {len(replies)} event filters "
            f"and refused the others ({why}); reconnecting without filters"
        )
    return f"Asterisk refused event filters: {why}"
