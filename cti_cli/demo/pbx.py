"""The simulated PBX: an AMI server on loopback that behaves, on the wire, like the lab's
Asterisk 22 — for the actions cti uses — and plays calls from the lab's recordings.

Replies are Asterisk's own, recorded by `lab/record_scenarios.py` into
`recordings/responses.ami` (header for header; only the ActionID, the challenge, times and the
user's name are filled in):

* banner `Asterisk Call Manager/11.0.0`; `Challenge` (MD5) and `Login` with `Key` or `Secret`;
  a wrong login is answered after 1 s with `Authentication failed` and the socket closed, any
  other action before login with `Permission denied`;
* `Ping`, `CoreSettings`, `Events`, `Logoff`; `GetConfig manager.conf` for the user's own
  section and `Command: manager show user <login>` (what `cti enable` reads permissions
  from); `CoreShowChannels` lists the channels of the calls in progress, in Asterisk 22's
  `CoreShowChannel` shape; anything else is `Invalid/unknown command`.

Any number of clients at once; each gets the events its `Events` mask lets through (by the
events' `Privilege` classes), after its login.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from cti_cli.ami.codec import AMIDecoder
from cti_cli.ami.errors import ProtocolError
from cti_cli.ami.login import md5_key
from cti_cli.ami.message import Message
from cti_cli.demo import templates
from cti_cli.demo.templates import Emission, Headers, encode_event

__all__ = ["DEFAULT_LOGIN", "DEFAULT_SECRET", "ChannelTable", "SimPbx"]

DEFAULT_LOGIN = "cti"
DEFAULT_SECRET = "cti-demo"
AUTH_FAIL_DELAY = 1.0  # what Asterisk waits before "Authentication failed" (lab-notes)
_OFF = frozenset({"off", "no", "false", "0"})
_ON = frozenset({"on", "yes", "true", "1", "all"})


@functools.cache
def recorded_replies() -> dict[str, list[Headers]]:
    """`rec-<what>` → the messages Asterisk sent for it (a list action has several)."""
    _, messages = templates.parse_messages(templates.read_recording("responses"))
    replies: dict[str, list[Headers]] = {}
    for headers in messages:
        values = dict(headers)
        tag = values.get("ActionID", "")
        if values.get("Event") == "FullyBooted":
            tag = "rec-fullybooted"
        if tag.startswith("rec-"):
            replies.setdefault(tag[4:], []).append(headers)
    return replies


def _reply(tag: str, action_id: str | None, **fill: str) -> bytes:
    """The recorded reply `tag`, with this request's ActionID and `fill` values."""
    out = bytearray()
    for headers in recorded_replies()[tag]:
        out += encode_event(_fill(headers, action_id, fill))
    return bytes(out)


def _fill(headers: Headers, action_id: str | None, fill: dict[str, str]) -> Headers:
    new: list[tuple[str, str]] = []
    for key, value in headers:
        if key == "ActionID":
            if action_id is not None:
                new.append((key, action_id))
            continue
        new.append((key, fill.get(key, value)))
    return tuple(new)


def _mask(value: str | None) -> frozenset[str] | None:
    """An `Events`/`EventMask` value: None = off, {"all"} = everything, else classes."""
    if value is None:
        return frozenset({"all"})
    text = value.strip().lower()
    if text in _OFF:
        return None
    if text in _ON:
        return frozenset({"all"})
    classes = frozenset(c.strip() for c in text.split(",") if c.strip())
    return classes or None


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ---------------------------------------------------------------------- channels

_SNAPSHOT = (
    "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten",
    "Priority", "Uniqueid", "Linkedid",
)  # fmt: skip
_PREFIXES = ("", "Dest", "Target", "Transferer", "Transferee")


@dataclass
class _Channel:
    created: float
    fields: dict[str, str] = field(default_factory=dict)
    application: str = ""
    data: str = ""
    bridge: str = ""


class ChannelTable:
    """The channels of the calls in progress, kept from the events the PBX sends, as
    `CoreShowChannels` reports them."""

    def __init__(self) -> None:
        self._chans: dict[str, _Channel] = {}
        self._gone: set[str] = set()

    def __len__(self) -> int:
        return len(self._chans)

    def apply(self, values: dict[str, str], now: float) -> None:
        event = values.get("Event", "")
        for prefix in _PREFIXES:
            uid = values.get(prefix + "Uniqueid")
            if not uid or uid in self._gone or (prefix + "Channel") not in values:
                continue
            chan = self._chans.get(uid)
            if chan is None:
                chan = self._chans[uid] = _Channel(now)
            for name in _SNAPSHOT:
                value = values.get(prefix + name)
                if value is not None:
                    chan.fields[name] = value
        uid = values.get("Uniqueid", "")
        chan = self._chans.get(uid)
        if chan is None:
            return
        if event == "Newexten":
            chan.application = values.get("Application", "")
            chan.data = values.get("AppData", "")
        elif event == "BridgeEnter":
            chan.bridge = values.get("BridgeUniqueid", "")
        elif event == "BridgeLeave":
            chan.bridge = ""
        elif event == "Hangup":
            del self._chans[uid]
            self._gone.add(uid)
            if len(self._gone) > 10_000:
                self._gone.clear()

    def entries(self, action_id: str | None, now: float) -> list[Headers]:
        """One `CoreShowChannel` per channel, in creation order, header for header as the
        lab's Asterisk 22 wrote them."""
        out: list[Headers] = []
        for chan in self._chans.values():
            f = chan.fields
            pairs: list[tuple[str, str]] = [("Event", "CoreShowChannel")]
            if action_id is not None:
                pairs.append(("ActionID", action_id))
            pairs += [(name, f.get(name, "")) for name in _SNAPSHOT]
            pairs += [
                ("Application", chan.application), ("ApplicationData", chan.data),
                ("Duration", _duration(now - chan.created)), ("BridgeId", chan.bridge),
            ]  # fmt: skip
            out.append(tuple(pairs))
        return out


# ---------------------------------------------------------------------- sessions


@dataclass(eq=False)
class _Session:
    writer: asyncio.StreamWriter
    peer: str
    challenge: str = ""
    user: str | None = None
    mask: frozenset[str] | None = None  # events let through; None = none
    only: set[str] | None = None  # event names of the session's include filters; None = all

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def wants(self, classes: frozenset[str], name: str) -> bool:
        mask = self.mask
        if self.user is None or mask is None:
            return False
        if self.only is not None and name not in self.only:
            return False
        return "all" in mask or bool(mask & classes)


class SimPbx:
    """`await pbx.start()`, `pbx.send(emission)` for each event of a call, `await pbx.close()`."""

    def __init__(
        self,
        *,
        login: str = DEFAULT_LOGIN,
        secret: str = DEFAULT_SECRET,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.login = login
        self.secret = secret
        self.host = host
        self.port = port
        self.clock = clock
        self.rng = rng or random.Random()
        self.channels = ChannelTable()
        self.booted = clock()
        self.banner = templates.parse_messages(templates.read_recording("responses"))[0]
        self.sessions: set[_Session] = set()
        self.logins = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.host, self.port = str(sock[0]), int(sock[1])
        return self.host, self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.writer.close()  # each session then ends by itself (EOF)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    # ------------------------------------------------------------------ events

    def send(self, emission: Emission) -> None:
        """Put one event on the wire now (its Timestamp made the current time)."""
        now = self.clock()
        stamp = f"{now:.6f}"
        headers = tuple((k, stamp if k == "Timestamp" else v) for k, v in emission.headers)
        values: dict[str, str] = {}
        for key, value in headers:
            values.setdefault(key, value)
        self.channels.apply(values, now)
        privilege = values.get("Privilege", "")
        classes = frozenset(c for c in privilege.split(",") if c and c != "all")
        data = encode_event(headers)
        name = values.get("Event", "")
        for session in list(self.sessions):
            if session.wants(classes, name):
                session.send(data)

    def send_all(self, emissions: Iterable[Emission]) -> None:
        for emission in emissions:
            self.send(emission)

    # ------------------------------------------------------------------ protocol

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        session = _Session(writer, f"{peer[0]}:{peer[1]}" if peer else "?")
        self.sessions.add(session)
        decoder = AMIDecoder(expect_banner=False)
        try:
            session.send(self.banner.encode() + b"\r\n")
            while data := await reader.read(65536):
                for action in decoder.feed(data):
                    if not await self._handle(session, action):
                        return
        except (ConnectionError, ProtocolError, asyncio.CancelledError):
            pass  # a client gone, or not speaking AMI, or the PBX closing: end the session
        finally:
            self.sessions.discard(session)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _handle(self, session: _Session, action: Message) -> bool:
        """Answer one action; False when the session must end."""
        name = (action.get("Action") or "").strip()
        key = name.lower()
        aid = action.get("ActionID")
        if not name:
            session.send(_error(aid, "Missing action in request"))
            return True
        if session.user is None and key not in ("login", "challenge", "logoff"):
            session.send(_reply("ping-before-login", aid))
            return True
        if key == "challenge":
            if (action.get("AuthType") or "").lower() != "md5":
                session.send(_error(aid, "Must specify AuthType"))
                return True
            session.challenge = str(self.rng.randrange(100_000_000, 1_000_000_000))
            session.send(_reply("challenge", aid, Challenge=session.challenge))
            return True
        if key == "login":
            return await self._login(session, action, aid)
        if key == "logoff":
            session.send(_reply("logoff", aid))
            await _flush(session)
            return False
        handler = self._actions.get(key)
        if handler is None:
            session.send(_reply("unknown", aid, Message=_unknown_message(name)))
        else:
            handler(self, session, action, aid)
        return True

    async def _login(self, session: _Session, action: Message, aid: str | None) -> bool:
        if session.user is not None:
            session.send(_reply("login-md5", aid, Message="Already authenticated"))
            return True
        user = action.get("Username") or ""
        if (action.get("AuthType") or "").lower() == "md5":
            expected = md5_key(session.challenge, self.secret)
            good = bool(session.challenge) and (action.get("Key") or "").lower() == expected
        else:
            good = action.get("Secret") == self.secret
        if user != self.login or not good:
            await asyncio.sleep(AUTH_FAIL_DELAY)
            session.send(_reply("login-wrong-secret", aid))
            await _flush(session)
            return False
        session.user = user
        session.mask = _mask(action.get("Events"))
        self.logins += 1
        session.send(_reply("login-md5", aid))
        if session.wants(frozenset({"system"}), "FullyBooted"):
            up = str(int(self.clock() - self.booted))
            session.send(_reply("fullybooted", None, Uptime=up, LastReload=up))
        return True

    # -- actions after login -------------------------------------------------------

    def _ping(self, session: _Session, action: Message, aid: str | None) -> None:
        session.send(_reply("ping", aid, Timestamp=f"{self.clock():.6f}"))

    def _core_settings(self, session: _Session, action: Message, aid: str | None) -> None:
        session.send(_reply("coresettings", aid))

    def _events(self, session: _Session, action: Message, aid: str | None) -> None:
        session.mask = _mask(action.get("EventMask") or "off")
        session.send(_reply("events-on" if session.mask else "events-off", aid))

    def _filter(self, session: _Session, action: Message, aid: str | None) -> None:
        """Asterisk 22's advanced include filter by event name (``MatchCriteria:
        action(include),name(X)``), the only kind cti asks for, answered as the lab's Asterisk
        22.10 answers it (recordings/responses.ami), as is a criterion Asterisk does not know.
        Other filters Asterisk would take (exclude, header, regex) this simulator refuses."""
        criteria = [part.strip() for part in (action.get("MatchCriteria") or "").split(",")]
        known = ("action(", "name(", "header(", "method(")
        if not all(c.startswith(known) and c.endswith(")") for c in criteria if c):
            session.send(_reply("filter-rejected", aid))
            return
        names = [c[5:-1] for c in criteria if c.startswith("name(")]
        if (action.get("Operation") or "").lower() != "add" or len(names) != 1 or (
            not set(criteria) <= {"action(include)", f"name({names[0]})"} or action.get("Filter")
        ):
            session.send(_error(aid, "Filter Rejected, this simulator takes "
                                     "action(include),name(...) only"))  # fmt: skip
            return
        session.only = (session.only or set()) | {names[0]}
        session.send(_reply("filter", aid))

    def _get_config(self, session: _Session, action: Message, aid: str | None) -> None:
        filename = (action.get("Filename") or "").strip()
        category = action.get("Category")
        if filename != "manager.conf" or category not in (None, session.user):
            session.send(_error(aid, "Config file not found" if filename != "manager.conf"
                                else "No categories found"))  # fmt: skip
            return
        session.send(_reply("getconfig", aid, **{"Category-000000": session.user or ""}))

    def _command(self, session: _Session, action: Message, aid: str | None) -> None:
        command = " ".join((action.get("Command") or "").split())
        if command == f"manager show user {session.user}":
            out = bytearray()
            for headers in recorded_replies()["command"]:
                filled = _fill(headers, aid, {})
                out += encode_event(tuple(
                    (k, v.replace("username: cti", f"username: {session.user}"))
                    if k == "Output" else (k, v) for k, v in filled
                ))  # fmt: skip
            session.send(bytes(out))
            return
        word = command.split(" ", 1)[0] if command else ""
        pairs: list[tuple[str, str]] = [("Response", "Error")]
        if aid is not None:
            pairs.append(("ActionID", aid))
        pairs += [
            ("Message", "Command output follows"),
            ("Output", f"No such command '{command}' (type 'core show help {word}' for other "
                       "possible commands)"),
        ]  # fmt: skip
        session.send(encode_event(tuple(pairs)))

    def _core_show_channels(self, session: _Session, action: Message, aid: str | None) -> None:
        now = self.clock()
        recorded = recorded_replies()["coreshowchannels"]
        entries = self.channels.entries(aid, now)
        out = bytearray(encode_event(_fill(recorded[0], aid, {})))
        for entry in entries:
            out += encode_event(entry)
        out += encode_event(_fill(recorded[-1], aid, {"ListItems": str(len(entries))}))
        session.send(bytes(out))

    _actions: ClassVar[dict[str, Callable[[SimPbx, _Session, Message, str | None], None]]] = {
        "ping": _ping,
        "coresettings": _core_settings,
        "events": _events,
        "filter": _filter,
        "getconfig": _get_config,
        "command": _command,
        "coreshowchannels": _core_show_channels,
    }


def _error(aid: str | None, message: str) -> bytes:
    pairs: list[tuple[str, str]] = [("Response", "Error")]
    if aid is not None:
        pairs.append(("ActionID", aid))
    pairs.append(("Message", message))
    return encode_event(tuple(pairs))


def _unknown_message(name: str) -> str:
    recorded = dict(recorded_replies()["unknown"][0])["Message"]
    return recorded.replace("NoSuchAction", name, 1)


async def _flush(session: _Session) -> None:
    with contextlib.suppress(ConnectionError, TimeoutError):
        await asyncio.wait_for(session.writer.drain(), 2.0)
