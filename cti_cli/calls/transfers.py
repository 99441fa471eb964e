"""Transfers and call pickup: channels change hands between calls.

Transfers
    `BlindTransfer` and `AttendedTransfer` (Asterisk 12+), `Transfer` (1.x) each give one
    `transferred` event, from the transferring operator (or the caller's side) to the extension
    or number it went to. An attended transfer moves the consultation call's parties (all but
    the second transferer) into the transferred call; left empty, the consultation call ends.

Call pickup
    `*8` / directed pickup (Asterisk 12+): the picker dials in as the caller of a call of its own,
    answers, and is then moved into the ringing call. The AMI `Pickup` event (Channel = picker,
    Target* = the phone that rang) says so; where it is not seen (older 12/13 streams filtered to
    Dial*/Bridge*), the signature is a `Dial*` of the ringing call whose destination is a channel
    already Up and alone as the caller of another call (`CallTracker._observe_dest`). Either way
    the picker's own leg is folded into the ringing call without an `ended` of its own, and the
    picker gets `answered` there (after a synthesized `ringing`, so `rang` lists both the phone
    that rang and the picker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti_cli.calls.events import Transferred
from cti_cli.calls.state import UP, Call, Chan

if TYPE_CHECKING:
    from cti_cli.calls.tracker import CallTracker, Event, Handler, Out


# Extensions that name a dialplan step, never a destination (`s` start, `h` hangup, `i`
# invalid, `t`/`T` timeouts, `o`/`a` operator and voicemail exits).
DIALPLAN_SPECIAL = frozenset({"s", "h", "i", "t", "T", "o", "a"})


def register(handlers: dict[str, Handler]) -> None:
    """Add the transfer and pickup events (every dialect) to `handlers`."""
    handlers.update(
        {
            "BlindTransfer": on_blind_transfer,
            "AttendedTransfer": on_attended_transfer,
            "Pickup": on_pickup,
            "Transfer": on_transfer_legacy,
        }
    )


def on_blind_transfer(t: CallTracker, ev: Event, out: Out) -> None:
    if ev.get("Result", "Success") != "Success":
        return
    transferer = t._known(ev.get("TransfererUniqueid"))
    transferee = _party(t, ev, "Transferee", out)
    chan = transferee if transferee is not None else transferer
    if chan is None:
        return
    source = _extension_or_number(t, transferer, ev, "Transferer")
    out.append(Transferred(*t._common(chan.call, ev), source, ev.get("Extension", "")))


def on_attended_transfer(t: CallTracker, ev: Event, out: Out) -> None:
    if ev.get("Result", "Success") != "Success":
        return
    orig = t._known(ev.get("OrigTransfererUniqueid"))
    second = t._known(ev.get("SecondTransfererUniqueid"))
    target = t._known(ev.get("TransferTargetUniqueid"))
    transferee = _party(t, ev, "Transferee", out)
    keep = transferee if transferee is not None else orig
    if keep is None:
        return
    call = keep.call
    consult = second.call if second is not None else target.call if target else None
    to = _extension_or_number(t, target, ev, "TransferTarget", number=False)
    if not to and consult is not None and len(consult.ringing) == 1:
        to = next(iter(consult.ringing))  # blonde transfer: the phone still ringing
    if not to:
        exten = ev.get("SecondTransfererExten")
        if exten in DIALPLAN_SPECIAL:  # FreePBX dials inside a macro: its Exten is "s"
            exten = None
        to = exten or ev.get("TransferTargetCallerIDNum", "")
    source = _extension_or_number(t, orig, ev, "OrigTransferer")
    out.append(Transferred(*t._common(call, ev), source, to))
    if consult is None or consult is call:
        return
    for chan in list(consult.chans.values()):
        if chan is not second:
            t._move(chan, call, ev, out)
    if not consult.chans:
        t._end(consult, ev, out)


def on_transfer_legacy(t: CallTracker, ev: Event, out: Out) -> None:
    """1.x `Transfer`: Uniqueid/Channel is the transferer, Target* the transferred party."""
    transferer = t._known(ev.get("Uniqueid"))
    target = t._known(ev.get("TargetUniqueid"))
    chan = target if target is not None else transferer
    if chan is None:
        return
    source = transferer.ext if transferer is not None and transferer.ext else ""
    if not source:
        source = t._ext.extension(ev.get("Channel", "")) or ev.get("CallerIDNum", "")
    to = ev.get("TransferExten", "")
    if ev.get("TransferType") == "Attended" and target is not None and target.ext:
        to = target.ext
    out.append(Transferred(*t._common(chan.call, ev), source, to))


def on_pickup(t: CallTracker, ev: Event, out: Out) -> None:
    """Asterisk 12+ `Pickup`: Channel = the picker, Target* = the ringing channel it took."""
    picker = t._observe(ev, out)
    if picker is None:
        return
    target = t._known(ev.get("TargetUniqueid"))
    linkedid = ev.get("TargetLinkedid", "")
    call = target.call if target is not None else t._calls.get(linkedid)
    if call is None:  # attached mid-call: the ringing call is known only by this event
        if not linkedid or linkedid in t._ended:
            return
        call = t._new_call(linkedid)
        call.start_ts = ev.get("Timestamp")
        num = ev.get("TargetConnectedLineNum")
        if num and num != "<unknown>":
            call.caller = num
            name = ev.get("TargetConnectedLineName", "")
            call.caller_name = "" if name == "<unknown>" else name
    pick_up(t, picker, call, ev, out)


def pick_up(t: CallTracker, picker: Chan, call: Call, ev: Event, out: Out) -> None:
    """`picker` took `call` over (call pickup): its own dial-in leg joins `call`, answered."""
    own = picker.call
    if own is call:
        return
    if own.caller_uid == picker.uid:
        t._absorb(call, own, ev, out)
    else:
        t._move(picker, call, ev, out)
        if not own.chans:
            t._end(own, ev, out)
    if picker.ext is None:
        call.answered = call.answered or not picker.local  # e.g. a trunk-side pickup
    elif picker.talk_ext is None:
        t._set_state(picker, UP, ev, out)


def _party(t: CallTracker, ev: Event, prefix: str, out: Out) -> Chan | None:
    """A transfer party by its prefixed headers, created if never seen (mid-call attach): then
    its state is taken as for any channel first seen (an operator transferred rang, answered)."""
    uid = ev.get(prefix + "Uniqueid")
    if not uid:
        return None
    chan = t._known(uid)
    if chan is None:
        name = ev.get(prefix + "Channel", "")
        chan = t._get(uid, name, ev.get(prefix + "Linkedid"), None, ev, prefix)
        if chan is not None:
            t._apply_state(chan, t._state_in(ev, prefix), ev, out)
    return chan


def _extension_or_number(
    t: CallTracker, chan: Chan | None, ev: Event, prefix: str, *, number: bool = True
) -> str:
    if chan is not None and chan.ext is not None:
        return chan.ext
    ext = t._ext.extension(ev.get(prefix + "Channel", ""))
    if ext is not None:
        return ext
    return ev.get(prefix + "CallerIDNum", "") if number else ""
