"""Sans-I/O AMI client protocol: which reply completes which action, what is an event.

Modelled on h11's ``Connection``: no socket, no event loop, no clock. The I/O layer hands
in what the peer sent (``receive_data``) and what happened to the link (``connection_lost``,
``fail``, ``close``) and gets back outcomes — the banner arrived, an action is complete
(its response, or its whole event list), a batch of events, the connection broke, an action
will never be answered — and ``send_action`` turns an action into the bytes to write. So
ActionID matching, event-list collection and the banner check are tested without sockets,
and the asyncio client (client.py) only moves bytes and resolves futures.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from cti_cli.ami.codec import (
    DEFAULT_MAX_MESSAGE,
    AMIDecoder,
    EventFilter,
    Headers,
    encode_action,
)
from cti_cli.ami.errors import (
    ActionFailed,
    AMIError,
    ConnectionLost,
    NotAMIServer,
    PermissionDenied,
    ProtocolError,
)
from cti_cli.ami.message import Message

__all__ = [
    "AMIProtocol",
    "Abandoned",
    "ActionListResult",
    "Broken",
    "Completed",
    "Events",
    "Greeted",
    "Outcome",
    "State",
    "raise_for_error",
]

_BANNER_PREFIX = b"Asterisk Call Manager/"


@dataclass
class ActionListResult:
    """Reply to a list action: the first response, the list events, the closing event."""

    response: Message
    events: list[Message] = field(default_factory=list)
    complete: Message | None = None

    def __iter__(self) -> Iterator[Message]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


# -- outcomes ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Greeted:
    """The peer's banner arrived and is Asterisk's: actions may follow."""

    banner: str
    ami_version: str


@dataclass(frozen=True, slots=True)
class Events:
    """The events of one ``receive_data`` call, in order (one batch per read keeps the
    hot path cheap); they come after that call's ``Completed`` outcomes."""

    messages: list[Message]


@dataclass(frozen=True, slots=True)
class Completed:
    """Action ``action_id`` is answered: its response, or for a list action the whole list."""

    action_id: str
    reply: Message | ActionListResult


@dataclass(frozen=True, slots=True)
class Abandoned:
    """Action ``action_id`` will never be answered (connection broken or closed)."""

    action_id: str
    error: AMIError


@dataclass(frozen=True, slots=True)
class Broken:
    """The connection is unusable (not AMI, garbage, lost): close it. Comes once."""

    error: AMIError


Outcome = Greeted | Events | Completed | Abandoned | Broken


class State(enum.Enum):
    GREETING = "greeting"  # waiting for the banner
    OPEN = "open"
    CLOSED = "closed"  # closed by us, or the peer's goodbye after our Logoff
    BROKEN = "broken"  # see ``failure``


class _Pending:
    """One action waiting for its reply; a list action gathers its events until Complete."""

    __slots__ = ("collect", "result")

    def __init__(self, collect: bool) -> None:
        self.collect = collect
        self.result: ActionListResult | None = None

    def feed(self, msg: Message) -> Message | ActionListResult | None:
        """Take one message carrying this ActionID; the reply once the action is complete."""
        if not self.collect:
            return msg if msg.is_response else None
        if self.result is None:
            if not msg.is_response:
                return None
            self.result = ActionListResult(response=msg)
            if msg.get("Response") != "Success" or msg.get("EventList", "").lower() != "start":
                return self.result  # an error, or nothing to list: no events follow
            return None
        if msg.get("EventList", "").lower() == "complete":
            self.result.complete = msg
            return self.result
        self.result.events.append(msg)
        return None


class AMIProtocol:
    """One AMI client connection's protocol state (see the module docstring).

    ``peer`` only labels error messages (``host:port``); ``id_prefix`` starts every ActionID
    so that replies to another client on the same AMI user are never taken for ours.
    """

    def __init__(
        self,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        id_prefix: str = "cti-",
        peer: str = "",
        event_filter: EventFilter | None = None,
    ) -> None:
        self.peer = peer
        self.event_filter = event_filter  # events it does not list are dropped unread
        self.state = State.GREETING
        self.banner: str | None = None
        self.ami_version: str | None = None
        self.failure: AMIError | None = None
        self._decoder = AMIDecoder(max_message)
        self._first = b""  # the first bytes, to reject a foreign server early
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._id_prefix = id_prefix
        self._leaving = False  # Logoff sent: the peer closing now is its goodbye, not a loss

    @property
    def pending(self) -> list[str]:
        """ActionIDs still waiting for their reply, oldest first."""
        return list(self._pending)

    # -- out ------------------------------------------------------------------------
    def send_action(
        self, name: str, headers: Headers | None = None, *, collect: bool = False
    ) -> tuple[str, bytes]:
        """Register an action (``collect``: a list action); its ActionID and bytes to write.

        Raises the connection's failure if it broke, ``ConnectionLost`` once closed and
        ``ActionError`` for a header that cannot be sent (nothing is registered then).
        """
        if self.failure is not None:
            raise self.failure
        if self.state is State.CLOSED:
            raise ConnectionLost("the AMI connection is closed")
        action_id = f"{self._id_prefix}{next(self._ids)}"
        payload = encode_action(name, headers, action_id)
        self._pending[action_id] = _Pending(collect)
        if name.lower() == "logoff":
            self._leaving = True
        return action_id, payload

    def forget(self, action_id: str) -> None:
        """Stop waiting for ``action_id`` (timed out, cancelled): a late response is dropped,
        late list events become ordinary events."""
        self._pending.pop(action_id, None)

    # -- in -------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Outcome]:
        """Bytes from the peer; what they complete."""
        if self.state is State.CLOSED or self.state is State.BROKEN:
            return []
        out: list[Outcome] = []
        decoder = self._decoder
        # never while an action waits: its list events (CoreShowChannel…) must all arrive
        decoder.event_filter = None if self._pending else self.event_filter
        try:
            msgs = self._greet(data, out) if self.state is State.GREETING else decoder.feed(data)
        except ProtocolError as exc:
            return out + self.fail(ProtocolError(f"{self.peer}: {exc}"))
        except AMIError as exc:
            return out + self.fail(exc)
        if not msgs:
            pass
        elif self._pending or decoder.responses_seen:
            self._route(msgs, out)
        else:  # hot path: a batch of events only
            out.append(Events(msgs))
        if decoder.error is not None:
            out += self.fail(ProtocolError(f"{self.peer}: {decoder.error}"))
        return out

    def _greet(self, data: bytes, out: list[Outcome]) -> list[Message]:
        """Banner phase: reject a foreign server as early as its first bytes."""
        if len(self._first) < len(_BANNER_PREFIX):
            self._first += data[: len(_BANNER_PREFIX)]
            probe = self._first[: len(_BANNER_PREFIX)]
            if not _BANNER_PREFIX.startswith(probe):
                raise NotAMIServer(
                    f"{self.peer} is not an Asterisk AMI server: it greeted with "
                    f"{_preview(probe)} instead of 'Asterisk Call Manager/...'"
                )
        decoder = self._decoder
        try:
            early = decoder.feed(data)
        except ProtocolError:
            raise NotAMIServer(f"{self.peer} is not an Asterisk AMI server") from None
        if decoder.greeting_done:
            if decoder.ami_version is None or decoder.banner is None:
                raise NotAMIServer(
                    f"{self.peer} is not an Asterisk AMI server: it greeted with "
                    f"{_preview(self._first)} instead of 'Asterisk Call Manager/...'"
                )
            self.banner, self.ami_version = decoder.banner, decoder.ami_version
            self.state = State.OPEN
            out.append(Greeted(self.banner, self.ami_version))
        return early

    def _route(self, msgs: list[Message], out: list[Outcome]) -> None:
        """Replies to their pending actions; events (with no or a foreign ActionID) batched.
        A response nobody waits for (timed out, or not ours) is dropped."""
        events: list[Message] = []
        pending = self._pending
        for msg in msgs:
            action_id = msg.get("ActionID", "") if pending else ""
            action = pending.get(action_id) if action_id else None
            if action is None:
                if not msg.is_response:
                    events.append(msg)
                continue
            reply = action.feed(msg)
            if reply is not None:
                del pending[action_id]
                out.append(Completed(action_id, reply))
        if events:
            out.append(Events(events))

    # -- the link -------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None = None) -> list[Outcome]:
        """The peer closed (``exc`` None) or the link dropped with ``exc``."""
        if self.state is State.CLOSED or self.state is State.BROKEN:
            return []
        if self._leaving:  # after our Logoff: end what waits (Logoff itself), quietly
            self.state = State.CLOSED
            return self._abandon(ConnectionLost(f"{self.peer} said goodbye"))
        if self.state is State.GREETING:
            return self.fail(ConnectionLost(
                f"{self.peer} closed the connection before its AMI banner "
                "(connection limit or permit/deny ACL in manager.conf?)"
            ))  # fmt: skip
        if exc is None:
            return self.fail(ConnectionLost(f"{self.peer} closed the AMI connection"))
        return self.fail(ConnectionLost(f"{self.peer} dropped the AMI connection: {exc}"))

    def fail(self, error: AMIError) -> list[Outcome]:
        """The connection is unusable (e.g. a Ping went unanswered): every pending action
        fails with ``error``. Only the first failure counts."""
        if self.failure is not None:
            return []
        self.failure = error
        self.state = State.BROKEN
        return [Broken(error), *self._abandon(error)]

    def close(self) -> list[Outcome]:
        """We close the connection: pending actions fail with ``ConnectionLost``."""
        if self.state is not State.BROKEN:
            self.state = State.CLOSED
        return self._abandon(ConnectionLost("the AMI connection was closed"))

    def _abandon(self, error: AMIError) -> list[Outcome]:
        gone: list[Outcome] = [Abandoned(action_id, error) for action_id in self._pending]
        self._pending.clear()
        return gone


def raise_for_error(name: str, reply: Message) -> None:
    """``Response: Error`` to action ``name`` as the error a user can act on."""
    if reply.get("Response") != "Error":
        return
    reason = reply.get("Message", "no reason given")
    if reason.lower() == "permission denied":
        raise PermissionDenied(
            f"the AMI user may not run action {name}: add the needed class to write= in "
            "its manager.conf section"
        )
    raise ActionFailed(f"AMI action {name} failed: {reason}", reply)


def _preview(data: bytes) -> str:
    text = data[:24].decode("ascii", "backslashreplace")
    return repr(text) if text else "nothing"
