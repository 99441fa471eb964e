"""Mutable per-channel and per-call state kept by the tracker (plain slotted classes: hot path).

A call counts its operators' channels per extension (`ring`, `answer`, `unring`, `untalk`): two
channels for one extension (a FreePBX Local member and its device) are one operator, and an
extension that rings again in a later round (queue retry) is news again.
"""

from __future__ import annotations

RINGING = "5"  # ChannelState codes as Asterisk sends them
UP = "6"


def _release(counts: dict[str, int], ext: str) -> None:
    """One channel fewer for `ext` (an extension may ring or talk on several channels)."""
    left = counts.get(ext, 0) - 1
    if left > 0:
        counts[ext] = left
    else:
        counts.pop(ext, None)


class Chan:
    """One Asterisk channel we have seen and that has not hung up yet."""

    __slots__ = ("call", "ext", "local", "name", "ring_ext", "state", "talk_ext", "uid")

    def __init__(self, uid: str, name: str, call: Call, ext: str | None, local: bool) -> None:
        self.uid = uid
        self.name = name
        self.call = call
        self.ext = ext  # operator extension when this is an operator's device, else None
        self.local = local
        self.state = ""  # ChannelState code as sent ("5" ringing, "6" up)
        self.ring_ext: str | None = None  # counted in call.ringing while set
        self.talk_ext: str | None = None  # counted in call.talking while set


class Call:
    """A caller's call: every channel sharing its Linkedid (or its Uniqueid/DestUniqueID chain)."""

    __slots__ = (
        "abandoned",
        "aliases",
        "answered",
        "answered_by",
        "call_id",
        "caller",
        "caller_cause",
        "caller_name",
        "caller_uid",
        "chans",
        "dial_status",
        "dialed",
        "emitted",
        "queue",
        "rang",
        "ringing",
        "seq",
        "start_ts",
        "talking",
        "touched",
    )

    def __init__(self, call_id: str, caller_uid: str, seq: int) -> None:
        self.call_id = call_id
        self.caller_uid = caller_uid
        self.seq = seq  # creation order: on merges the older call absorbs the newer
        self.caller = ""
        self.caller_name = ""
        self.dialed = ""
        self.queue: str | None = None
        self.start_ts: str | None = None
        self.chans: dict[str, Chan] = {}
        self.rang: list[str] = []
        self.answered_by: list[str] = []
        self.ringing: dict[str, int] = {}  # extension -> channels ringing for it now
        self.talking: dict[str, int] = {}  # extension -> channels talking for it now
        self.answered = False
        self.abandoned = False
        self.caller_cause: str | None = None
        self.dial_status = ""
        self.emitted = False
        self.aliases: list[str] = []  # other keys (Linkedids) that now point at this call
        self.touched = 0  # the tracker's event count when an event last concerned this call

    # -- operators, counted per extension (each `chan` below belongs to this call) -----------
    def ring(self, chan: Chan, *, retell: bool) -> str | None:
        """Count `chan` as ringing for its extension; return the extension when that is news:
        its first ringing channel now, in this call for the first time, or again in a later
        round when `retell` (a catch-up after an outage cannot tell rounds apart)."""
        ext = chan.ext
        if ext is None or chan.ring_ext is not None or chan.talk_ext is not None:
            return None
        chan.ring_ext = ext
        count = self.ringing.get(ext, 0)
        self.ringing[ext] = count + 1
        if count:
            return None
        if ext not in self.rang:
            self.rang.append(ext)
        elif not retell:
            return None
        return ext

    def answer(self, chan: Chan, *, retell: bool) -> str | None:
        """Count `chan` as talking for its extension (no longer ringing): the call is answered.
        Return the extension when that is news: its first talking channel now, unless it was
        told before and not `retell`."""
        ext = chan.ext
        if ext is None or chan.talk_ext is not None:
            return None
        self.unring(chan)
        chan.talk_ext = ext
        count = self.talking.get(ext, 0)
        self.talking[ext] = count + 1
        self.answered = True
        if count or (not retell and ext in self.answered_by):
            return None
        self.answered_by.append(ext)
        return ext

    def unring(self, chan: Chan) -> None:
        ext, chan.ring_ext = chan.ring_ext, None
        if ext is not None:
            _release(self.ringing, ext)

    def untalk(self, chan: Chan) -> None:
        ext, chan.talk_ext = chan.talk_ext, None
        if ext is not None:
            _release(self.talking, ext)
