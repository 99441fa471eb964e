"""Record the `cti demo` simulator's templates from the real Asterisk 22 lab.

    .venv/bin/python -m lab.record_scenarios [--out cti_cli/demo/recordings] [--only NAME ...]

Each scenario (see `SCENARIOS`) sets the SIPp phones, places its call(s) and captures the raw
AMI event stream of one `read=all` session from just before the call until Asterisk is idle
again: every event, noise included (VarSet, Newexten, DeviceStateChange, RTCP*, TestEvent…),
exactly as Asterisk wrote it. Saved as `<name>.ami`: the banner line, then the events, each
ending in a blank line (`cti replay` reads these files as they are).

`responses.ami` holds Asterisk's replies to the actions the simulator answers (Challenge, Login
good and bad, Ping, CoreSettings, Events, GetConfig, Command, CoreShowChannels mid-call, an
unknown action, Logoff), each with `ActionID: rec-<what>` so the simulator can find them.

Only two things are changed in the captures, both lab-specific paths or secrets: the lab
instance's monitor folder becomes the stock `/var/spool/asterisk/monitor`, and the throwaway
AMI secret in the GetConfig reply becomes `********`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from cti_cli.ami.client import AMIClient
from cti_cli.ami.codec import AMIDecoder, encode_action
from cti_cli.ami.message import Message
from lab import Lab

OUT = Path(__file__).resolve().parent.parent / "cti_cli" / "demo" / "recordings"
NAME = "Lab Caller"  # the recorded caller's name; the simulator substitutes the demo's callers
STOCK_MONITOR = "/var/spool/asterisk/monitor"

Step = Callable[[Lab, AMIClient, str], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    phones: dict[str, str]  # ext -> answer | noanswer | busy (others: answer)
    step: Step
    caller: str


def _call(dialed: str, *, talk: float = 2.0, cancel_after: float | None = None) -> Step:
    async def step(lab: Lab, client: AMIClient, caller: str) -> None:
        lab.call(dialed, caller=caller, caller_name=NAME, talk=talk, cancel_after=cancel_after)

    return step


async def _channel_in(client: AMIClient, prefix: str, state: str, tries: int = 150) -> str:
    for _ in range(tries):
        await asyncio.sleep(0.1)
        for item in await client.action_list("CoreShowChannels"):
            if item.get("Channel", "").startswith(prefix) and item.get("ChannelStateDesc") == state:
                return item["Channel"]
    raise RuntimeError(f"no channel {prefix}* in state {state}")


async def _blind_transfer(lab: Lab, client: AMIClient, caller: str) -> None:
    lab.call("101", caller=caller, caller_name=NAME, talk=6.0)
    channel = await _channel_in(client, "PJSIP/101-", "Up")
    await asyncio.sleep(1.0)  # a little talk before the transfer
    await client.action("BlindTransfer", Channel=channel, Context="from-internal", Exten="103")


async def _pickup(lab: Lab, client: AMIClient, caller: str) -> None:
    lab.call("101", caller=caller, caller_name=NAME, talk=4.0)
    await _channel_in(client, "PJSIP/101-", "Ringing")
    await asyncio.sleep(1.0)  # 101 rings a while before 103 picks it up
    lab.operator_call("103", "**101", talk=8.0)


SCENARIOS = (
    Scenario("queue_ringall_answered", {"101": "noanswer"}, _call("200"), "+79990000001"),
    Scenario("queue_linear_answered", {"101": "noanswer"}, _call("220"), "+79990000002"),
    Scenario(
        "queue_abandoned",
        {"101": "noanswer", "102": "noanswer"},
        _call("200", cancel_after=5.0),
        "+79990000003",
    ),
    Scenario(
        "queue_nobody_answers",
        {"101": "noanswer", "102": "noanswer"},
        _call("200", talk=1.0),
        "+79990000004",
    ),
    Scenario("ringgroup_answered", {"102": "noanswer"}, _call("300"), "+79990000005"),
    Scenario("direct_answered", {}, _call("101", talk=2.5), "+79990000006"),
    Scenario("direct_no_answer", {"101": "noanswer"}, _call("101", talk=1.0), "+79990000007"),
    Scenario(
        "direct_caller_hangs_up",
        {"101": "noanswer"},
        _call("101", cancel_after=4.0),
        "+79990000008",
    ),
    Scenario("direct_busy", {"101": "busy"}, _call("101", talk=1.0), "+79990000009"),
    Scenario("blind_transfer", {}, _blind_transfer, "+79990000010"),
    Scenario("pickup", {"101": "noanswer"}, _pickup, "+79990000011"),
)


def _clean(raw: bytes, lab: Lab) -> bytes:
    return raw.replace(lab.layout.chroot("spool/monitor").encode(), STOCK_MONITOR.encode())


async def _record(lab: Lab, scenario: Scenario) -> bytes:
    for ext in ("101", "102", "103"):
        lab.phone(ext, scenario.phones.get(ext, "answer"))
    await asyncio.to_thread(lab.wait_idle, 30)
    info = lab.info
    capture = AMIClient()
    banner = await capture.connect(info.ami_host, info.ami_port, timeout=10)
    await capture.login(info.ami_user, info.ami_secret)
    actions = AMIClient()
    await actions.connect(info.ami_host, info.ami_port, timeout=10)
    await actions.login(info.ami_user, info.ami_secret, events=False)
    raw = bytearray(banner.encode() + b"\r\n")
    started = asyncio.Event()

    async def follow() -> None:
        async for message in capture.events():
            if not started.is_set():
                continue  # FullyBooted and anything before the scenario
            raw.extend(message.raw + b"\r\n\r\n")

    follower = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.5)  # FullyBooted of this session has arrived and is skipped
        started.set()
        await scenario.step(lab, actions, scenario.caller)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(lab.wait_idle, 60)
        await asyncio.sleep(1.0)  # the device state and queue member noise after the hangups
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await capture.close()
        await actions.close()
    return _clean(bytes(raw), lab)


# ---------------------------------------------------------------------- replies to actions


class _Raw:
    """A plain socket session, so that every reply is kept byte for byte."""

    def __init__(self, lab: Lab) -> None:
        self.sock = socket.create_connection((lab.info.ami_host, lab.info.ami_port), timeout=10)
        self.decoder = AMIDecoder()
        self.pending: list[Message] = []
        self.closed = False
        while self.decoder.banner is None:
            self._read()

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            raise ConnectionError("closed")
        self.pending.extend(self.decoder.feed(data))

    def send(self, name: str, tag: str, **headers: str) -> None:
        self.sock.sendall(encode_action(name, headers, f"rec-{tag}"))

    def until(self, pred: Callable[[Message], bool]) -> list[Message]:
        got: list[Message] = []
        while True:
            while self.pending:
                msg = self.pending.pop(0)
                got.append(msg)
                if pred(msg):
                    return got
            self._read()

    def reply(self, name: str, tag: str, **headers: str) -> list[Message]:
        self.send(name, tag, **headers)
        return [
            m for m in self.until(lambda m: m.get("ActionID") == f"rec-{tag}" and m.is_response)
            if m.get("ActionID") == f"rec-{tag}"
        ]  # fmt: skip


def _filter_replies(session: _Raw) -> list[Message]:
    """The advanced event filter the agent asks for, and one Asterisk rejects."""
    return [
        *session.reply("Filter", "filter", Operation="Add", Filter="",
                       MatchCriteria="action(include),name(Newchannel)"),
        *session.reply("Filter", "filter-rejected", Operation="Add", Filter="",
                       MatchCriteria="action(include),name(Newchannel),bogus(x)"),
    ]  # fmt: skip


def _filter_refused(lab: Lab) -> list[Message]:
    """A Filter from a user without `write = system`."""
    info = lab.info
    session = _Raw(lab)
    session.reply("Login", "login-nosystem", Username=info.ami_nosystem_user,
                  Secret=info.ami_nosystem_secret, Events="off")  # fmt: skip
    refused = session.reply("Filter", "filter-refused", Operation="Add", Filter="",
                            MatchCriteria="action(include),name(Newchannel)")  # fmt: skip
    session.sock.close()
    return refused


def _responses(lab: Lab) -> bytes:
    info = lab.info
    out = bytearray()
    kept: list[Message] = []
    first = _Raw(lab)
    out += (first.decoder.banner or "").encode() + b"\r\n"
    kept += first.reply("Ping", "ping-before-login")
    challenge = first.reply("Challenge", "challenge", AuthType="MD5")
    kept += challenge
    key = hashlib.md5((challenge[-1]["Challenge"] + info.ami_secret).encode()).hexdigest()
    kept += first.reply("Login", "login-md5", Username=info.ami_user, AuthType="MD5", Key=key,
                        Events="on")  # fmt: skip
    kept += first.until(lambda m: m.get("Event") == "FullyBooted")[-1:]
    kept += first.reply("Ping", "ping")
    kept += first.reply("CoreSettings", "coresettings")
    kept += first.reply("Events", "events-off", EventMask="off")
    kept += first.reply("Events", "events-on", EventMask="on")
    kept += first.reply("GetConfig", "getconfig", Filename="manager.conf", Category=info.ami_user)
    kept += first.reply("Command", "command", Command=f"manager show user {info.ami_user}")
    kept += first.reply("NoSuchAction", "unknown")
    kept += _filter_replies(first)
    kept += first.reply("Logoff", "logoff")
    first.sock.close()

    kept += _filter_refused(lab)

    plain = _Raw(lab)
    kept += plain.reply("Login", "login-plain", Username=info.ami_user, Secret=info.ami_secret,
                        Events="off")  # fmt: skip
    # mid-call channel list: 101 talking with a trunk caller
    lab.phone("101", "answer")
    lab.call("101", caller="+79990000099", caller_name=NAME, talk=4.0)
    deadline = time.monotonic() + 15
    while True:
        plain.send("CoreShowChannels", "coreshowchannels")
        listed = [
            m for m in plain.until(lambda m: m.get("Event") == "CoreShowChannelsComplete")
            if m.get("ActionID") == "rec-coreshowchannels"
        ]  # fmt: skip
        up = [m for m in listed if m.get("Channel", "").startswith("PJSIP/101-")
              and m.get("ChannelStateDesc") == "Up"]  # fmt: skip
        if up or time.monotonic() > deadline:
            kept += listed
            break
        time.sleep(0.2)
    plain.sock.close()
    lab.wait_idle(30)

    bad = _Raw(lab)
    t0 = time.monotonic()
    kept += bad.reply("Login", "login-wrong-secret", Username=info.ami_user, Secret="wrong")
    delay = time.monotonic() - t0
    closed = False
    try:
        bad.sock.settimeout(3)
        bad._read()
    except (ConnectionError, OSError):
        closed = True
    bad.sock.close()
    print(f"wrong secret: reply after {delay:.2f} s, then closed={closed}", file=sys.stderr)
    for msg in kept:
        out += msg.raw + b"\r\n\r\n"
    text = bytes(out).replace(f"secret={info.ami_secret}".encode(), b"secret=********")
    text = text.replace(f"secret = {info.ami_secret}".encode(), b"secret = ********")
    return text.replace(info.ami_secret.encode(), b"********")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="*", default=None, help="scenario names (or responses)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only) if args.only else None
    lab = Lab.start()
    try:
        for scenario in SCENARIOS:
            if wanted is not None and scenario.name not in wanted:
                continue
            started = time.monotonic()
            data = asyncio.run(_record(lab, scenario))
            (args.out / f"{scenario.name}.ami").write_bytes(data)
            count = data.count(b"\r\n\r\n")
            print(f"{scenario.name}: {count} events, {time.monotonic() - started:.1f} s",
                  file=sys.stderr)  # fmt: skip
        if wanted is None or "responses" in wanted:
            lab.reset_phones()
            (args.out / "responses.ami").write_bytes(_responses(lab))
            print("responses: written", file=sys.stderr)
    finally:
        lab.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
