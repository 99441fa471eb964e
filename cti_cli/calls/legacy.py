"""Asterisk 1.4 - 11 (AMI 1.0 - 1.3): the events of the dialects that have no `Linkedid`.

There every channel starts as its own call, keyed by its Uniqueid, and calls are merged along
`Dial` (UniqueID -> DestUniqueID), Local `;1`/`;2` pairs (`CallTracker._get`), `LocalBridge`,
`Bridge`/`Link`, `AgentCalled` and `Masquerade`; on a merge the older call absorbs the newer
one. An operator bridged by `Bridge`/`Link` has answered (1.x has no reliable Up on it).

`register` adds these events to a tracker's dispatch table; those 1.x only names differently
(`Join`, `Leave`, `Newcallerid`) get the Asterisk 12+ handler of the same event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti_cli.calls.state import UP, Chan

if TYPE_CHECKING:
    from cti_cli.calls.tracker import CallTracker, Event, Handler, Out

_SAME_AS_AMI2 = {
    "Join": "QueueCallerJoin",
    "Leave": "QueueCallerLeave",
    "Newcallerid": "NewCallerid",
}


def register(handlers: dict[str, Handler]) -> None:
    """Add the 1.x events to `handlers` (which already holds the Asterisk 12+ ones)."""
    handlers.update(
        {
            "Dial": on_dial,
            "Bridge": on_bridge,
            "Link": on_bridge,
            "Unlink": ignore,
            "LocalBridge": on_local_bridge,
            "Masquerade": on_masquerade,
        }
    )
    for old, new in _SAME_AS_AMI2.items():
        handlers[old] = handlers[new]


def ignore(t: CallTracker, ev: Event, out: Out) -> None:
    """`Unlink`: the channels' own hangups and bridges say all the tracker needs."""
    return None


def on_dial(t: CallTracker, ev: Event, out: Out) -> None:
    """`Dial` (`SubEvent: Begin`/`End`, or none in 1.4): ties the destination to the caller."""
    sub = ev.get("SubEvent")
    uid = ev.get("Uniqueid") or ev.get("SrcUniqueID")
    if not uid:
        return
    name = ev.get("Channel") or ev.get("Source") or ""
    src = t._get(uid, name, ev.get("Linkedid"), None, ev)
    if src is None:
        return
    if sub == "End":
        t._dial_result(src, None, ev.get("DialStatus"))
        return
    if sub not in (None, "Begin"):
        return
    dest_uid = ev.get("DestUniqueid")
    if not dest_uid:
        return
    dest = t._chans.get(dest_uid)
    if dest is None:
        t._get(dest_uid, ev.get("Destination", ""), None, src.call, ev, "Dest")
    elif dest.call is not src.call:
        t._merge(dest.call, src.call, ev, out)


def on_bridge(t: CallTracker, ev: Event, out: Out) -> None:
    """`Link` (1.4) / `Bridge` (`Bridgestate: Link`): two channels talk, one call."""
    if ev.get("Event") == "Bridge" and ev.get("Bridgestate", "Link") != "Link":
        return
    one = t._by_uid_or_name(ev.get("Uniqueid1"), ev.get("Channel1"))
    two = t._by_uid_or_name(ev.get("Uniqueid2"), ev.get("Channel2"))
    if one is None or two is None:
        return
    call = t._merge(one.call, two.call, ev, out)
    for chan, peer in ((one, two), (two, one)):
        if chan.ext is not None and chan.uid != call.caller_uid:
            if chan.state != UP or chan.talk_ext is None:
                t._set_state(chan, UP, ev, out)
        elif (
            chan.uid == call.caller_uid
            and peer.ext is None
            and not peer.local
            and peer.uid != call.caller_uid
        ):
            call.answered = True


def on_local_bridge(t: CallTracker, ev: Event, out: Out) -> None:
    """The two halves of a Local channel are one call."""
    if "LocalOneUniqueid" in ev:
        return  # AMI 2: both halves already share the Linkedid
    one = t._by_uid_or_name(ev.get("Uniqueid1"), ev.get("Channel1"))
    two = t._by_uid_or_name(ev.get("Uniqueid2"), ev.get("Channel2"))
    if one is not None and two is not None:
        t._merge(one.call, two.call, ev, out)


def on_masquerade(t: CallTracker, ev: Event, out: Out) -> None:
    clone = t._by_name(ev.get("Clone"))
    original = t._by_name(ev.get("Original"))
    if clone is not None and original is not None and clone.call is not original.call:
        t._merge(clone.call, original.call, ev, out)


def agent_called(t: CallTracker, ev: Event, out: Out) -> None:
    """1.x `AgentCalled`: the caller by Uniqueid or `ChannelCalling`, the member by name."""
    caller = t._known(ev.get("Uniqueid")) or t._by_name(ev.get("ChannelCalling"))
    t._queue_member(ev, out, caller, t._by_name(ev.get("DestinationChannel")))


def agent_connect_member(t: CallTracker, ev: Event, out: Out) -> Chan | None:
    """1.x `AgentConnect`: Uniqueid is the caller, Channel/BridgedChannel the member."""
    caller = t._known(ev.get("Uniqueid"))
    member = t._by_uid_or_name(ev.get("BridgedChannel"), ev.get("Channel"))
    return t._queue_member(ev, out, caller, member)
