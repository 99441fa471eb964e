"""Mutable per-channel and per-call state kept by the tracker (plain slotted classes: hot path)."""

from __future__ import annotations


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
