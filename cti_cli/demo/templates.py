"""Real lab recordings as templates: the same call again, with fresh ids, another caller and
other operators, happening now.

A recording (`recordings/<name>.ami`) is a raw AMI capture of one scenario in the Asterisk 22
lab (`lab/record_scenarios.py`): banner line, then every event the `read=all` session saw,
byte for byte. `render()` turns it into the events of a new call, changing only what differs
between two calls of the same kind on a real Asterisk:

* every Uniqueid/Linkedid of the recording gets a fresh one (`<epoch>.<sequence>`, the epoch of
  when the channel appears, the sequence shared by the whole PBX), everywhere it occurs (also
  inside file names); channel-name suffixes (`PJSIP/101-0000001c`), log call ids
  (`[C-0000000a]`) and bridge UUIDs likewise, consistently within the call;
* the recorded caller (number and the name `Lab Caller`) becomes the demo's caller; no name is
  `<unknown>` in caller-ID headers, as Asterisk writes it;
* the lab's operator extensions 101–103 become the demo's (`ext_map`), in channel names,
  caller IDs, dial strings, dialled numbers; queue-member events for a queue the mapped
  operator is not a member of are left out (that operator's phone does not belong there);
* `Timestamp` is when the event is due: the recording's gaps scaled by `Timing.scale` (short
  talk times), each capped at `Timing.cap` seconds.

Nothing else is touched: event names, header order, the noise (VarSet, Newexten, TestEvent,
DeviceStateChange, RTCP…) are Asterisk's own.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from random import Random

from cti_cli.ami.codec import AMIDecoder

__all__ = [
    "LAB_EXTENSIONS",
    "LAB_QUEUES",
    "RECORDED_NAME",
    "Emission",
    "Ids",
    "Template",
    "Timing",
    "encode_event",
    "load",
    "names",
    "render",
]

Headers = tuple[tuple[str, str], ...]
#: The lab's operator phones (lab/__init__.py PHONES) and queue members (lab queues.conf).
LAB_EXTENSIONS = ("101", "102", "103")
LAB_QUEUES: dict[str, frozenset[str]] = {
    "support": frozenset({"101", "102"}),
    "support-fpbx": frozenset({"101", "102"}),
    "support-linear": frozenset({"101", "102", "103"}),
}
RECORDED_NAME = "Lab Caller"  # lab/record_scenarios.py NAME

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_EXT = r"(?<![\w.])10[1-3](?!\w)"
_CHANNEL = re.compile(r"^[A-Za-z0-9]+/.+-([0-9a-f]{8})(?:;[12])?$")
_DEVICE_EXT = re.compile(r"^(?:PJSIP|SIP|IAX2)/(\d+)(?:-[0-9a-f]{8})?$")
# Headers whose all-digit values are counters or codes, never an extension.
_NUMERIC = frozenset({
    "Cause", "TechCause", "HoldTime", "TalkTime", "RingTime", "Count", "Position",
    "OriginalPosition", "Penalty", "CallsTaken", "LastCall", "LastPause", "LoginTime", "InCall",
    "Paused", "Status", "Ringinuse", "Wrapuptime", "Uptime", "LastReload", "ReportCount",
    "ChannelState", "Port", "AppLine", "BridgeNumChannels", "ListItems",
})  # fmt: skip


@dataclass(frozen=True)
class Timing:
    """How recorded time becomes demo time: each gap times `scale`, at most `cap` seconds."""

    scale: float = 0.5
    cap: float = 3.0

    def gap(self, recorded: float) -> float:
        return min(max(0.0, recorded) * self.scale, self.cap)


@dataclass(frozen=True)
class Template:
    """One recording, parsed: events (recorded offset in seconds, headers) in order."""

    name: str
    banner: str
    events: tuple[tuple[float, Headers], ...]
    caller: str  # the recorded caller number
    uniqueids: frozenset[str]
    suffixes: frozenset[str]  # channel-name suffixes (hex)
    extensions: frozenset[str]  # lab extensions that have a channel in the call
    raw: bytes

    @property
    def duration(self) -> float:
        return self.events[-1][0] if self.events else 0.0

    def scaled_duration(self, timing: Timing) -> float:
        total, last = 0.0, 0.0
        for offset, _ in self.events:
            total += timing.gap(offset - last)
            last = offset
        return total


@dataclass(frozen=True)
class Emission:
    """One event of a rendered call: due `at` (epoch seconds), headers in Asterisk's order."""

    at: float
    headers: Headers

    def get(self, name: str, default: str = "") -> str:
        for key, value in self.headers:
            if key == name:
                return value
        return default


class Ids:
    """The PBX-wide counters Asterisk keeps: channel sequence, name suffixes, log call ids.
    `rng` makes bridge UUIDs reproducible under `--seed`."""

    def __init__(self, rng: Random | None = None) -> None:
        self.rng = rng or Random()
        self._seq = 0
        self._chan = 0
        self._callid = 0

    def uniqueid(self, at: float) -> str:
        value = f"{int(at)}.{self._seq}"
        self._seq += 1
        return value

    def suffix(self) -> str:
        self._chan += 1
        return f"{self._chan:08x}"

    def callid(self) -> str:
        self._callid += 1
        return f"{self._callid:08x}"

    def bridge(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))


# ---------------------------------------------------------------------- loading


def names() -> list[str]:
    """The scenario recordings shipped with cti (not `responses`)."""
    folder = resources.files("cti_cli.demo").joinpath("recordings")
    found = [
        p.name[: -len(".ami")]
        for p in folder.iterdir()
        if p.name.endswith(".ami") and p.name != "responses.ami"
    ]  # fmt: skip
    return sorted(found)


def read_recording(name: str) -> bytes:
    return resources.files("cti_cli.demo").joinpath("recordings", f"{name}.ami").read_bytes()


def parse_messages(raw: bytes) -> tuple[str, list[Headers]]:
    """Banner and every message of a raw capture, as header tuples."""
    decoder = AMIDecoder()
    messages = [tuple(m.headers) for m in decoder.feed(raw)]
    return decoder.banner or "", messages


@functools.cache
def load(name: str) -> Template:
    """The recording `name` as a template (cached: they never change at run time)."""
    raw = read_recording(name)
    banner, messages = parse_messages(raw)
    events: list[tuple[float, Headers]] = []
    uniqueids: set[str] = set()
    suffixes: set[str] = set()
    extensions: set[str] = set()
    caller = ""
    first: float | None = None
    last = 0.0
    for headers in messages:
        if not any(k == "Event" for k, _ in headers):
            continue
        stamp = next((v for k, v in headers if k == "Timestamp"), None)
        if stamp is not None:
            try:
                at = float(stamp)
            except ValueError:
                at = None
            if at is not None:
                first = at if first is None else first
                last = at - first
        events.append((last, headers))
        for key, value in headers:
            if key.lower().endswith(("uniqueid", "linkedid")) and not key.startswith("Bridge"):
                if value:
                    uniqueids.add(value)
            elif key.endswith("Channel"):
                match = _CHANNEL.match(value)
                if match:
                    suffixes.add(match.group(1))
                    dev = _DEVICE_EXT.match(value.split("-")[0])
                    if dev and dev.group(1) in LAB_EXTENSIONS:
                        extensions.add(dev.group(1))
            elif key == "CallerIDNum" and not caller and value.startswith("+7999"):
                caller = value
    return Template(
        name, banner, tuple(events), caller, frozenset(uniqueids), frozenset(suffixes),
        frozenset(extensions), raw,
    )  # fmt: skip


# ---------------------------------------------------------------------- rendering


def render(
    template: Template,
    ids: Ids,
    *,
    start: float,
    ext_map: Mapping[str, str] | None = None,
    caller: str | None = None,
    caller_name: str | None = None,
    timing: Timing | None = None,
) -> list[Emission]:
    """The events of a new call like the recorded one, due from `start` (epoch seconds).

    `ext_map` maps lab extensions (101–103) to the demo's (unmapped ones stay); `caller` and
    `caller_name` replace the recorded caller (None keeps it; "" is no name).
    """
    timing = timing or Timing()
    mapping = {ext: ext for ext in LAB_EXTENSIONS}
    mapping.update(ext_map or {})
    new_caller = template.caller if caller is None else caller
    name = RECORDED_NAME if caller_name is None else caller_name
    fresh_uid: dict[str, str] = {}
    fresh_suffix: dict[str, str] = {}
    fresh_callid: dict[str, str] = {}
    fresh_bridge: dict[str, str] = {}
    now = start

    def sub_uid(old: str) -> str:
        if old not in template.uniqueids:
            return old
        new = fresh_uid.get(old)
        if new is None:
            new = fresh_uid[old] = ids.uniqueid(now)
        return new

    def sub_suffix(old: str) -> str:
        if old not in template.suffixes:
            return old
        new = fresh_suffix.get(old)
        if new is None:
            new = fresh_suffix[old] = ids.suffix()
        return new

    def sub_callid(old: str) -> str:
        new = fresh_callid.get(old)
        if new is None:
            new = fresh_callid[old] = ids.callid()
        return new

    def sub_bridge(old: str) -> str:
        new = fresh_bridge.get(old)
        if new is None:
            new = fresh_bridge[old] = ids.bridge()
        return new

    pattern = _token_pattern(template.caller)

    def rewrite(key: str, value: str) -> str:
        if not value:
            return value
        ext_ok = not (key in _NUMERIC or key.endswith("Priority") or key.startswith(("Sent",
                      "Report"))) or not value.isdigit()  # fmt: skip
        name_value = name or ("<unknown>" if key.endswith("Name") else "")

        def one(match: re.Match[str]) -> str:
            kind = match.lastgroup
            text = match.group()
            if kind == "uuid":
                return sub_bridge(text)
            if kind == "uid":
                return sub_uid(text)
            if kind == "callid":
                return sub_callid(text)
            if kind == "suffix":
                return sub_suffix(text)
            if kind == "caller":
                return new_caller
            if kind == "name":
                return name_value
            return mapping.get(text, text) if ext_ok else text

        return pattern.sub(one, value)

    out: list[Emission] = []
    last = 0.0
    for offset, headers in template.events:
        now += timing.gap(offset - last)
        last = offset
        new = tuple(
            (key, f"{now:.6f}" if key == "Timestamp" else rewrite(key, value))
            for key, value in headers
        )  # fmt: skip
        if _foreign_member(new):
            continue
        out.append(Emission(now, new))
    return out


@functools.cache
def _token_pattern(caller: str) -> re.Pattern[str]:
    parts = [
        f"(?P<uuid>{_UUID})",
        r"(?P<uid>(?<![\w.])\d{9,11}\.\d+(?!\.?\d))",
        r"(?P<callid>(?<=C-)[0-9a-f]{8}(?![0-9a-f]))",
        r"(?P<suffix>(?<=-)[0-9a-f]{8}(?![0-9a-f]))",
    ]
    if caller:
        parts.append(f"(?P<caller>{re.escape(caller)})")
    parts.append(f"(?P<name>{re.escape(RECORDED_NAME)})")
    parts.append(f"(?P<ext>{_EXT})")
    return re.compile("|".join(parts))


def _foreign_member(headers: Headers) -> bool:
    """A queue-member event for a queue the (mapped) phone is not a member of."""
    event = next((v for k, v in headers if k == "Event"), "")
    if not event.startswith("QueueMember"):
        return False
    values = dict(headers)
    members = LAB_QUEUES.get(values.get("Queue", ""))
    if members is None:
        return False
    device = values.get("StateInterface") or values.get("Interface", "")
    match = _DEVICE_EXT.match(device)
    return match is not None and match.group(1) not in members


def encode_event(headers: Headers) -> bytes:
    """One message on the wire, as Asterisk frames it (CRLF lines, blank line)."""
    return ("".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("utf-8")


def iter_events(emissions: list[Emission]) -> Iterator[dict[str, str]]:
    """The rendered events as plain mappings (first value of a repeated header)."""
    for emission in emissions:
        data: dict[str, str] = {}
        for key, value in emission.headers:
            data.setdefault(key, value)
        yield data
