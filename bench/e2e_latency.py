"""End-to-end screen-pop latency of `cti agent` (run by hand, never by the test suite):

    .venv/bin/python bench/e2e_latency.py                      # 100 calls/s for 60 s
    .venv/bin/python bench/e2e_latency.py --rate 60 --duration 900 --rss-every 10 --floor-duration 0

A fake Asterisk 22 in this process streams queue calls over loopback AMI to the real agent
(`python -m cti_cli agent`, a subprocess with its own temp config, outbox and CSV directory),
which posts its webhooks to a local HTTP receiver (h11, in a process of its own, forked from this
one; `--receiver-here` puts it on the PBX's loop as before 2026-12-02). Every call is
the wire shape of a real answered queue call recorded in the lab (Asterisk 22.10, 2026-12-01:
132 messages when 101 and 102 both ring, of which VarSet 55, Newexten 13, DeviceStateChange 13,
TestEvent 8, QueueMemberStatus 8; 107 when only 101 rings), with its own Uniqueids/Linkedid,
channel names, bridge id and caller, at Poisson arrivals and the recorded call's timeline
(101 answers 1.0 s after it starts ringing, 2 s of talk). Extension 101 (ivanov) is in the
team; 102 is not. The trigger is 101's `Newstate` Up (`[rule] trigger = "answer"`).

Latency of a pop = its arrival at the receiver (request fully read) − the moment the trigger
event's bytes were handed to the socket (`time.perf_counter_ns()` right after the write:
CLOCK_MONOTONIC, the same clock in the PBX's and the receiver's processes). The floor, in the
same run: after the calls, a separate process (pinned like the agent) POSTs a body of the pop's
size to the same receiver at the same rate with the agent's own keep-alive HTTP/1.1 client (the
cost of the request itself; `--floor-kind httpx` for an `httpx.AsyncClient`); its latency is
arrival − the moment before the post (both `perf_counter_ns`, CLOCK_MONOTONIC: comparable across
processes). The agent's CPU is its user+system time over the measured window (after a warm-up)
divided by the wall time; its RSS is sampled every `--rss-every` s. Lost = calls whose pop never
came; duplicates = repeated X-CTI-Delivery keys. Prints a Markdown table (`--json` for JSON).

With 2+ CPUs the agent and the floor client are pinned to the last CPU and this process to CPU 0
(`--no-pin` to let the scheduler place them). Numbers are for humans; no test asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import heapq
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import h11
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cti_cli.notify.signing import verify  # noqa: E402

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
USER, SECRET = "cti", "bench-secret"
HOOK_SECRET = "bench-вебхук"
CHALLENGE = "840384592"
NAMES = (
    "Иван Петров", "Мария Сидорова", "Алексей Кузнецов", "Ольга Смирнова", "Дмитрий Волков",
    "Екатерина Морозова", "Сергей Лебедев", "Анна Новикова", "Юлия Фёдорова", "Пётр Ёлкин",
    "ООО Ромашка", "<unknown>", "John Smith",
)  # fmt: skip
EMPLOYEES = 2000
DEPARTMENTS = ("ИТ", "Бухгалтерия", "Склад", "Продажи", "Юридический отдел")

# -- the stream: one recorded Asterisk 22 queue call, re-stamped per call ---------------------
DOWN, RING, RINGING, UP = ("0", "Down"), ("4", "Ring"), ("5", "Ringing"), ("6", "Up")
QOS = {
    "RTPAUDIOQOS": "ssrc={a};themssrc={b};lp=0;rxjitter=0.000000;rxcount=67;txjitter=0.000250;"
    "txcount=0;rlp=0;rtt=0.000000;rxmes=0.000000;txmes=0.000000",
    "RTPAUDIOQOSJITTER": "minrxjitter=000.000000;maxrxjitter=000.000250;avgrxjitter=000.000156;"
    "stdevrxjitter=000.000084;mintxjitter=000.000000;maxtxjitter=000.000000;"
    "avgtxjitter=000.000000;stdevtxjitter=000.000000;",
    "RTPAUDIOQOSLOSS": "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;"
    "  stdevrxlost=000.000000;  mintxlost=000.000000;  maxtxlost=000.000000;"
    "  avgtxlost=000.000000;  stdevtxlost=000.000000;",
    "RTPAUDIOQOSRTT": "     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.000000;"
    "     stdevrtt=000.000000;",
    "RTPAUDIOQOSMES": "   minrxmes=000.000000;   maxrxmes=000.000000;   avgrxmes=000.000000;"
    "   stdevrxmes=000.000000;   mintxmes=000.000000;   maxtxmes=000.000000;"
    "   avgtxmes=000.000000;   stdevtxmes=000.000000;",
}
ANSWER_AT = 1.0084  # s after the call's first event: 101's Newstate Up (the trigger)
HANGUP_AT = 3.0161


@dataclass(frozen=True)
class Call:
    seq: int
    wall: float  # unix time of the call's first event (for Timestamp headers)
    caller: str
    name: str
    chan_no: int  # first of the call's channel numbers (trunk, 101, [102])
    uid_sec: int
    with_102: bool

    @property
    def uid(self) -> str:
        return f"{self.uid_sec}.{self.chan_no}"


def build_call(c: Call) -> list[tuple[float, bytes, bool]]:
    """(offset s, wire bytes, is the trigger) for every message of one call, in order."""
    trunk = f"PJSIP/trunk-{c.chan_no:08x}"
    m101 = f"PJSIP/101-{c.chan_no + 1:08x}"
    m102 = f"PJSIP/102-{c.chan_no + 2:08x}"
    uid, u101, u102 = c.uid, f"{c.uid_sec}.{c.chan_no + 1}", f"{c.uid_sec}.{c.chan_no + 2}"
    num, name = c.caller, c.name
    callid = f"[C-{c.seq + 1:08x}]"
    bridge = f"{c.seq:08x}-34bc-4404-a4a9-{c.chan_no:012x}"
    lt = time.gmtime(c.wall)
    stamp = time.strftime("%Y%m%d-%H%M%S", lt)
    rec = f"in-200-{num}-{stamp}-{uid}.wav"
    rec_path = f"/var/spool/asterisk/monitor/{time.strftime('%Y/%m/%d', lt)}/{rec}"
    rnd = random.Random(c.seq)
    memo: dict[tuple[object, ...], str] = {}

    def snap(
        who: str, state: tuple[str, str], ctx: str, exten: str, prio: int,
        connected: bool = False, prefix: str = "",
    ) -> str:  # fmt: skip
        key = (who, state, ctx, exten, prio, connected, prefix)
        text = memo.get(key)
        if text is None:
            if who == "trunk":
                chan, cnum, cname, u = trunk, num, name, uid
                lnum, lname = ("101", "Operator 101") if connected else ("<unknown>", "<unknown>")
            else:
                chan, u = (m101, u101) if who == "101" else (m102, u102)
                cnum, cname = who, f"Operator {who}"
                lnum, lname = (num, name) if connected else ("<unknown>", "<unknown>")
            p = prefix
            text = (
                f"{p}Channel: {chan}\r\n{p}ChannelState: {state[0]}\r\n"
                f"{p}ChannelStateDesc: {state[1]}\r\n{p}CallerIDNum: {cnum}\r\n"
                f"{p}CallerIDName: {cname}\r\n{p}ConnectedLineNum: {lnum}\r\n"
                f"{p}ConnectedLineName: {lname}\r\n{p}Language: en\r\n{p}AccountCode: \r\n"
                f"{p}Context: {ctx}\r\n{p}Exten: {exten}\r\n{p}Priority: {prio}\r\n"
                f"{p}Uniqueid: {u}\r\n{p}Linkedid: {uid}\r\n"
            )
            memo[key] = text
        return text

    out: list[tuple[float, bytes, bool]] = []
    wall = c.wall

    def ev(t: float, event: str, priv: str, *parts: str, trigger: bool = False) -> None:
        head = f"Event: {event}\r\nPrivilege: {priv},all\r\nTimestamp: {wall + t:.6f}\r\n"
        out.append((t, (head + "".join(parts) + "\r\n").encode(), trigger))

    def kv(*pairs: tuple[str, object]) -> str:
        return "".join(f"{k}: {v}\r\n" for k, v in pairs)

    def trunk_at(ctx: str, exten: str, prio: int, state: tuple[str, str] = RING,
                 connected: bool = False) -> str:  # fmt: skip
        return snap("trunk", state, ctx, exten, prio, connected)

    def varset(t: float, s: str, var: str, value: str) -> None:
        ev(t, "VarSet", "dialplan", s, kv(("Variable", var), ("Value", value)))

    def newexten(t: float, s: str, exten: str, app: str, data: str) -> None:
        ev(t, "Newexten", "dialplan", s,
           kv(("Extension", exten), ("Application", app), ("AppData", data)))  # fmt: skip

    def rtp(t: float) -> None:
        ev(t, "TestEvent", "reporting", kv(
            ("Type", "StateChange"), ("State", "RTP_PORT_ALLOCATED"),
            ("AppFile", "res_rtp_asterisk.c"), ("AppFunction", "rtp_allocate_transport"),
            ("AppLine", 4179), ("Port", 10000 + 2 * rnd.randrange(10000)),
        ))  # fmt: skip

    def callid_change(t: float, chan: str) -> None:
        ev(t, "TestEvent", "reporting", kv(
            ("Type", "StateChange"), ("State", "CallIDChange"),
            ("AppFile", "channel_internal_api.c"), ("AppFunction", "ast_channel_callid_set"),
            ("AppLine", 677), ("State", "CallIDChange"), ("Channel", chan),
            ("CallID", callid), ("PriorCallID", ""),
        ))  # fmt: skip

    def device(t: float, dev: str, state: str) -> None:
        ev(t, "DeviceStateChange", "call", kv(("Device", dev), ("State", state)))

    def member(t: float, ext: str, fpbx: bool, status: int) -> None:
        ev(t, "QueueMemberStatus", "agent", kv(
            ("Queue", "support-fpbx" if fpbx else "support"),
            ("MemberName", f"Operator {ext}" if fpbx else f"PJSIP/{ext}"),
            ("Interface", f"Local/{ext}@from-queue/n" if fpbx else f"PJSIP/{ext}"),
            ("StateInterface", f"PJSIP/{ext}"), ("Membership", "static"), ("Penalty", 0),
            ("CallsTaken", 0), ("LastCall", 0), ("LastPause", 0), ("LoginTime", int(wall) - 60),
            ("InCall", 0), ("Status", status), ("Paused", 0), ("PausedReason", ""),
            ("Ringinuse", 0), ("Wrapuptime", 0),
        ))  # fmt: skip

    def dest(who: str, state: tuple[str, str], ctx: str, exten: str, connected: bool) -> str:
        return snap(who, state, ctx, exten, 1, connected, prefix="Dest")

    def bridge_hdr(count: int) -> str:
        return kv(("BridgeUniqueid", bridge), ("BridgeType", "basic"),
                  ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", "<unknown>"),
                  ("BridgeName", "<unknown>"), ("BridgeNumChannels", count),
                  ("BridgeVideoSourceMode", "none"))  # fmt: skip

    two = c.with_102
    # --- the call arrives (recorded offsets, seconds after the first event) ---
    rtp(0.0)
    s = trunk_at("from-trunk", "200", 1)
    ev(0.0009, "Newchannel", "call", s)
    varset(0.0009, s, "SIPDOMAIN", "127.0.0.1")
    callid_change(0.0009, trunk)
    newexten(0.0009, s, "200", "Gosub", "lab-inbound,s,1(200)")
    varset(0.0009, s, "LOCAL(ARG1)", "200")
    varset(0.0009, s, "LOCAL(ARGC)", "1")
    newexten(0.0009, trunk_at("lab-inbound", "s", 1), "s", "Set", "CDR(did)=200")
    newexten(0.0009, trunk_at("lab-inbound", "s", 2), "s", "Set", f"CDR(cnum)={num}")
    newexten(0.0015, trunk_at("lab-inbound", "s", 3), "s", "Set", f"CDR(cnam)={name}")
    s = trunk_at("lab-inbound", "s", 4)
    newexten(0.0015, s, "s", "Gosub", "lab-record,s,1(200)")
    varset(0.0016, s, "LOCAL(ARG1)", "200")
    varset(0.0016, s, "LOCAL(ARGC)", "1")
    s = trunk_at("lab-record", "s", 1)
    newexten(0.0019, s, "s", "Set", f"LAB_NOW={int(wall)}")
    varset(0.0019, s, "LAB_NOW", str(int(wall)))
    newexten(0.0020, trunk_at("lab-record", "s", 2), "s", "Set", f"CDR(recordingfile)={rec}")
    s = trunk_at("lab-record", "s", 3)
    newexten(0.0022, s, "s", "MixMonitor", rec_path)
    varset(0.0024, s, "MIXMONITOR_FILENAME", rec_path)
    ev(0.0025, "MixMonitorStart", "call", s)
    s = trunk_at("lab-record", "s", 4)
    newexten(0.0025, s, "s", "Return", "")
    for var in ("ARGC", "ARG1", "GOSUB_RETVAL"):
        varset(0.0025, s, var, "")
    s = trunk_at("lab-inbound", "s", 5)
    newexten(0.0025, s, "s", "Return", "")
    for var in ("ARGC", "ARG1", "GOSUB_RETVAL"):
        varset(0.0025, s, var, "")
    s = trunk_at("from-trunk", "200", 2)
    newexten(0.0025, s, "200", "Queue", "support,t,,,8")
    for var in ("ANSWEREDTIME", "ANSWEREDTIME_MS", "DIALEDTIME", "DIALEDTIME_MS", "QUEUEWAIT",
                "QUEUEWAIT_MS"):  # fmt: skip
        varset(0.0025, s, var, "")
    device(0.0028, "Queue:support", "RINGING")
    ev(0.0028, "QueueCallerJoin", "agent", s, kv(("Queue", "support"), ("Position", 1),
                                                 ("Count", 1)))  # fmt: skip
    # --- the queue rings 101 (and 102) ---
    ev(0.0032, "Newchannel", "call", snap("101", DOWN, "from-internal", "s", 1))
    callid_change(0.0032, m101)
    varset(0.0032, snap("101", DOWN, "from-internal", "s", 1), "DIALEDPEERNUMBER", "101")
    rtp(0.0032)
    queue_hdr = kv(("Queue", "support"), ("Interface", "PJSIP/101"), ("MemberName", "PJSIP/101"))
    ev(0.0039, "AgentCalled", "agent", s, dest("101", DOWN, "from-internal", "200", True),
       queue_hdr)  # fmt: skip
    ev(0.0043, "DialBegin", "call", s, dest("101", DOWN, "from-internal", "s", False),
       kv(("DialString", "PJSIP/101")))  # fmt: skip
    r101 = snap("101", RINGING, "from-internal", "200", 1, True)
    ev(0.0043, "Newstate", "call", r101)
    newexten(0.0043, r101, "200", "AppQueue", "(Outgoing Line)")
    ev(0.0043, "NewConnectedLine", "call", r101)
    if two:
        ev(0.0043, "Newchannel", "call", snap("102", DOWN, "from-internal", "s", 1))
        callid_change(0.0043, m102)
        varset(0.0043, snap("102", DOWN, "from-internal", "s", 1), "DIALEDPEERNUMBER", "102")
    device(0.0044, "PJSIP/101", "RINGING")
    member(0.0044, "101", False, 6)
    device(0.0044, "Queue:support_avail", "NOT_INUSE")
    member(0.0045, "101", True, 6)
    device(0.0050, "Queue:support-fpbx_avail", "NOT_INUSE")
    if two:
        rtp(0.0051)
        ev(0.0053, "AgentCalled", "agent", s, dest("102", DOWN, "from-internal", "200", True),
           kv(("Queue", "support"), ("Interface", "PJSIP/102"),
              ("MemberName", "PJSIP/102")))  # fmt: skip
        ev(0.0053, "DialBegin", "call", s, dest("102", DOWN, "from-internal", "s", False),
           kv(("DialString", "PJSIP/102")))  # fmt: skip
    ev(0.0054, "DialState", "call", s, dest("101", RINGING, "from-internal", "200", True),
       kv(("DialStatus", "RINGING")))  # fmt: skip
    if two:
        r102 = snap("102", RINGING, "from-internal", "200", 1, True)
        ev(0.0055, "Newstate", "call", r102)
        newexten(0.0056, r102, "200", "AppQueue", "(Outgoing Line)")
        ev(0.0056, "NewConnectedLine", "call", r102)
        device(0.0056, "PJSIP/102", "RINGING")
        member(0.0056, "102", False, 6)
        device(0.0056, "Queue:support_avail", "INUSE")
        member(0.0057, "102", True, 6)
        device(0.0057, "Queue:support-fpbx_avail", "INUSE")
        ev(0.0058, "DialState", "call", s, dest("102", RINGING, "from-internal", "200", True),
           kv(("DialStatus", "RINGING")))  # fmt: skip
    # --- 101 answers: its Newstate Up is the trigger ---
    t = ANSWER_AT
    up101 = snap("101", UP, "from-internal", "200", 1, True)
    ev(t, "Newstate", "call", up101, trigger=True)
    ev(t + 0.0001, "DialEnd", "call", s, dest("101", UP, "from-internal", "200", True),
       kv(("DialStatus", "ANSWER")))  # fmt: skip
    device(t + 0.0002, "PJSIP/101", "INUSE")
    if two:
        ev(t + 0.0006, "DialEnd", "call", s, dest("102", RINGING, "from-internal", "200", True),
           kv(("DialStatus", "CANCEL")))  # fmt: skip
    s = trunk_at("from-trunk", "200", 2, connected=True)
    ev(t + 0.0007, "NewConnectedLine", "call", s)
    member(t + 0.0007, "101", False, 2)
    member(t + 0.0007, "101", True, 2)
    if two:
        ev(t + 0.0008, "DialEnd", "call", s, dest("102", RINGING, "from-internal", "200", True),
           kv(("DialStatus", "CANCEL")))  # fmt: skip
    device(t + 0.0008, "Queue:support", "NOT_INUSE")
    ev(t + 0.0008, "QueueCallerLeave", "agent", s, kv(("Queue", "support"), ("Position", 1),
                                                      ("Count", 0)))  # fmt: skip
    varset(t + 0.0008, s, "QUEUEPOSITION", "1")
    varset(t + 0.0009, s, "QUEUEWAIT", "1")
    varset(t + 0.0009, s, "QUEUEWAIT_MS", "1000")
    ev(t + 0.0009, "AgentConnect", "agent", s, dest("101", UP, "from-internal", "200", True),
       queue_hdr, kv(("HoldTime", 1), ("RingTime", 1)))  # fmt: skip
    s = trunk_at("from-trunk", "200", 2, UP, connected=True)
    ev(t + 0.0010, "Newstate", "call", s)
    device(t + 0.0010, "PJSIP/trunk", "INUSE")
    if two:
        ev(t + 0.0013, "Hangup", "call", snap("102", RINGING, "from-internal", "200", 1, True),
           kv(("Cause", 26), ("Cause-txt", "Answered elsewhere")))  # fmt: skip
        member(t + 0.0015, "102", False, 1)
        device(t + 0.0015, "Queue:support_avail", "NOT_INUSE")
        member(t + 0.0015, "102", True, 1)
        device(t + 0.0015, "Queue:support-fpbx_avail", "NOT_INUSE")
        device(t + 0.0015, "PJSIP/102", "NOT_INUSE")
    ev(t + 0.0018, "BridgeCreate", "call", bridge_hdr(0))
    ev(t + 0.0019, "BridgeEnter", "call", bridge_hdr(1), up101)
    ev(t + 0.0020, "BridgeEnter", "call", bridge_hdr(2), s)
    peer_id = f"{c.seq}-{26910 + c.seq % 1000}@127.0.0.1"
    trunk_id = f"{rnd.getrandbits(32):08x}-4c13-4b0c-9348-{rnd.getrandbits(48):012x}"
    for dt in (0.0020, 0.0030):
        varset(t + dt, up101, "BRIDGEPEER", trunk)
        varset(t + dt, up101, "BRIDGEPVTCALLID", peer_id)
        varset(t + dt, s, "BRIDGEPEER", m101)
        varset(t + dt, s, "BRIDGEPVTCALLID", trunk_id)
        if two and dt == 0.0020:
            ev(t + 0.0027, "TestEvent", "reporting", kv(
                ("Type", "StateChange"), ("State", "SESSION_DESTROYING"),
                ("AppFile", "res_pjsip_session.c"), ("AppFunction", "session_destructor"),
                ("AppLine", 2933), ("Endpoint", 102), ("AOR", 102),
                ("Contact", f"102@@{rnd.getrandbits(128):032x}"),
            ))  # fmt: skip
            ev(t + 0.0028, "TestEvent", "reporting", kv(
                ("Type", "StateChange"), ("State", "SESSION_DESTROYED"),
                ("AppFile", "res_pjsip_session.c"), ("AppFunction", "session_destructor"),
                ("AppLine", 2982), ("Endpoint", 102),
            ))  # fmt: skip
    # --- the caller hangs up after 2 s of talk ---
    t = HANGUP_AT
    ssrc = {"a": rnd.getrandbits(31), "b": rnd.getrandbits(31)}
    for i, var in enumerate(QOS):
        varset(t + 0.0001 * i, s, var, QOS[var].format(**ssrc))
        varset(t + 0.0001 * i, up101, var + "BRIDGED", QOS[var].format(**ssrc))
    ev(t + 0.0015, "HangupRequest", "call", s)
    ev(t + 0.0015, "AgentComplete", "agent", s, dest("101", UP, "from-internal", "200", True),
       queue_hdr, kv(("HoldTime", 1), ("TalkTime", 2), ("Reason", "caller")))  # fmt: skip
    varset(t + 0.0015, s, "BRIDGEPEER", "")
    varset(t + 0.0015, s, "BRIDGEPVTCALLID", "")
    varset(t + 0.0015, up101, "BRIDGEPEER", "")
    varset(t + 0.0015, up101, "BRIDGEPVTCALLID", "")
    ev(t + 0.0015, "BridgeLeave", "call", bridge_hdr(1), s)
    varset(t + 0.0015, s, "ANSWEREDTIME", "2")
    ev(t + 0.0015, "BridgeLeave", "call", bridge_hdr(0), up101)
    varset(t + 0.0015, s, "ANSWEREDTIME_MS", "2008")
    varset(t + 0.0015, s, "DIALEDTIME", "3")
    varset(t + 0.0015, s, "DIALEDTIME_MS", "3016")
    ev(t + 0.0015, "BridgeDestroy", "call", bridge_hdr(0))
    ev(t + 0.0015, "SoftHangupRequest", "call", s, kv(("Cause", 16)))
    for var in QOS:
        varset(t + 0.0016, up101, var, QOS[var].format(a=ssrc["b"], b=0))
    ev(t + 0.0021, "Hangup", "call", up101, kv(("Cause", 16), ("Cause-txt", "Normal Clearing")))
    ev(t + 0.0026, "Hangup", "call", s, kv(("Cause", 16), ("Cause-txt", "Normal Clearing")))
    return out


def employee_phone(i: int) -> str:
    digits = f"{1000000 + i:07d}"
    return f"8 (916) {digits[:3]}-{digits[3:5]}-{digits[5:]}"


def caller_of(seq: int) -> tuple[str, str]:
    """Every other caller is an employee in the directory (the trunk sends 8916…), the rest
    unknown numbers (+7495…)."""
    if seq % 2 == 0:
        i = (seq // 2 * 7919) % EMPLOYEES
        return f"8916{1000000 + i:07d}", NAMES[i % (len(NAMES) - 2)]
    return f"+7495{seq % 10**7:07d}", NAMES[seq % len(NAMES)]


# -- the fake PBX ------------------------------------------------------------------------------
class PbxSession(asyncio.Protocol):
    def __init__(self, pbx: FakePbx) -> None:
        self.pbx = pbx
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.only: set[bytes] | None = None  # names of the session's include filters

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pbx.logins += 1
        transport.write(BANNER)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.answer(raw.decode("utf-8", "replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pbx.session is self:
            self.pbx.session = None
            self.pbx.disconnects += 1

    def answer(self, raw: str) -> None:
        assert self.transport is not None
        headers: dict[str, str] = {}
        for line in raw.split("\r\n"):
            key, _, value = line.partition(":")
            headers.setdefault(key.strip().lower(), value.strip())
        action = headers.get("action", "").lower()
        aid = f"ActionID: {headers['actionid']}\r\n" if "actionid" in headers else ""
        write = self.transport.write
        if action == "challenge":
            write(f"Response: Success\r\n{aid}Challenge: {CHALLENGE}\r\n\r\n".encode())
        elif action == "login":
            key = hashlib.md5((CHALLENGE + SECRET).encode()).hexdigest()
            ok = headers.get("username") == USER and (
                headers.get("secret") == SECRET or headers.get("key") == key
            )
            if not ok:
                write(f"Response: Error\r\n{aid}Message: Authentication failed\r\n\r\n".encode())
                self.transport.close()
                return
            write(f"Response: Success\r\n{aid}Message: Authentication accepted\r\n\r\n".encode())
            write(b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 0\r\nLastReload: 0\r\n"
                  b"Status: Fully Booted\r\n\r\n")  # fmt: skip
        elif action == "coreshowchannels":
            write(
                f"Response: Success\r\n{aid}EventList: start\r\nMessage: Channels will follow\r\n"
                f"\r\nEvent: CoreShowChannelsComplete\r\n{aid}EventList: Complete\r\n"
                "ListItems: 0\r\n\r\n".encode()
            )
            self.pbx.session = self
            self.pbx.ready.set()
        elif action == "filter":  # Asterisk 22: include filters by name need write = system
            criteria = headers.get("matchcriteria", "")
            name = criteria.removeprefix("action(include),name(").removesuffix(")")
            if not self.pbx.filters or name == criteria or not name:
                write(f"Response: Error\r\n{aid}Message: Permission denied\r\n\r\n".encode())
                return
            self.only = (self.only or set()) | {name.encode()}
            write(f"Response: Success\r\n{aid}Message: Success\r\n\r\n".encode())
        elif action == "ping":
            write(f"Response: Success\r\n{aid}Ping: Pong\r\nTimestamp: {time.time():.6f}\r\n\r\n"
                  .encode())  # fmt: skip
        elif action == "logoff":
            write(f"Response: Goodbye\r\n{aid}Message: Thanks for all the fish.\r\n\r\n".encode())
            self.transport.close()
        else:
            write(f"Response: Error\r\n{aid}Message: Invalid/unknown command\r\n\r\n".encode())


@dataclass
class FakePbx:
    rate: float
    calls: int
    warmup_calls: int
    ring_102: float
    coalesce: bool
    filters: bool = True  # the agent's AMI user may set event filters (write = system)
    seed: int = 22
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    session: PbxSession | None = None
    logins: int = 0
    disconnects: int = 0
    trigger_ns: dict[int, int] = field(default_factory=dict)  # seq -> write time
    by_call_id: dict[str, int] = field(default_factory=dict)  # Linkedid -> seq
    messages: int = 0  # generated, sent or not
    filtered: int = 0  # of those, not sent: the session's filters leave them out
    bytes_sent: int = 0
    max_lag: float = 0.0  # how late a message went out versus its schedule, seconds
    trigger_queued: int = 0  # triggers written while the transport still held unsent bytes
    max_buffer: int = 0
    with_102: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0

    async def stream(self, on_measure: asyncio.Event) -> None:
        """Start `calls` calls at Poisson arrivals and write every message when it is due."""
        rnd = random.Random(self.seed)
        heap: list[tuple[float, int, bytes, int]] = []
        order = 0
        started = 0
        now = time.perf_counter()
        wall0 = time.time() - now
        next_at = self.started_at = now + 0.05
        chan_no = 0
        loop_sleep = asyncio.sleep
        while started < self.calls or heap:
            now = time.perf_counter()
            while started < self.calls and next_at <= now:
                seq = started
                caller, name = caller_of(seq)
                two = rnd.random() < self.ring_102
                call = Call(seq, wall0 + next_at, caller, name, chan_no, int(wall0 + next_at), two)
                chan_no += 3 if two else 2
                self.with_102 += two
                self.by_call_id[call.uid] = seq
                for offset, data, trigger in build_call(call):
                    order += 1
                    heapq.heappush(heap, (next_at + offset, order, data, seq if trigger else -1))
                if seq == self.warmup_calls:
                    on_measure.set()
                started += 1
                next_at += rnd.expovariate(self.rate)
            session = self.session
            if session is None or session.transport is None:
                raise RuntimeError("the agent disconnected from the fake PBX")
            transport = session.transport
            only = session.only
            batch: list[bytes] = []
            while heap and heap[0][0] <= now:
                due, _, data, seq = heapq.heappop(heap)
                self.messages += 1
                if only is not None and data[7 : data.index(b"\r", 7)] not in only:
                    self.filtered += 1  # Asterisk drops it before it is formatted for the session
                    continue
                self.bytes_sent += len(data)
                if now - due > self.max_lag:
                    self.max_lag = now - due
                if self.coalesce:
                    batch.append(data)
                    if seq >= 0:
                        transport.write(b"".join(batch))
                        batch.clear()
                        self._stamp(seq, transport)
                    continue
                transport.write(data)
                if seq >= 0:
                    self._stamp(seq, transport)
            if batch:
                transport.write(b"".join(batch))
            buffered = transport.get_write_buffer_size()
            if buffered > self.max_buffer:
                self.max_buffer = buffered
            wake = min(heap[0][0] if heap else next_at, next_at if started < self.calls else 1e18)
            await loop_sleep(max(0.0, wake - time.perf_counter()))
        self.finished_at = time.perf_counter()

    def _stamp(self, seq: int, transport: asyncio.Transport) -> None:
        self.trigger_ns[seq] = time.perf_counter_ns()
        if transport.get_write_buffer_size():
            self.trigger_queued += 1


# -- the receiver -----------------------------------------------------------------------------
@dataclass
class Receiver:
    pops: dict[str, list[int]] = field(default_factory=dict)  # delivery key -> arrivals (ns)
    pop_call: dict[str, str] = field(default_factory=dict)  # delivery key -> call_id
    answered: dict[str, int] = field(default_factory=dict)  # call_id -> first call.answered
    counts: dict[str, int] = field(default_factory=dict)  # X-CTI-Event -> requests
    keys: dict[str, set[str]] = field(default_factory=dict)  # X-CTI-Event -> distinct keys
    bad_signatures: int = 0
    floor: list[int] = field(default_factory=list)  # latency ns of the bare POSTs
    pop_body: bytes = b""
    requests: int = 0

    def hit(self, headers: dict[bytes, bytes], body: bytes, at: int) -> None:
        self.requests += 1
        event = headers.get(b"x-cti-event", b"").decode()
        key = headers.get(b"x-cti-delivery", b"").decode()
        if event == "bench.floor":
            self.floor.append(at - int(headers[b"x-bench-sent"]))
            return
        if event == "bench.warmup":  # the floor client's first request (connection set-up)
            return
        self.counts[event] = self.counts.get(event, 0) + 1
        self.keys.setdefault(event, set()).add(key)
        timestamp = headers.get(b"x-cti-timestamp", b"").decode()
        signature = headers.get(b"x-cti-signature", b"").decode()
        if not verify(HOOK_SECRET, timestamp, body, signature, now=time.time()):
            self.bad_signatures += 1
        if event == "screen_pop":
            self.pops.setdefault(key, []).append(at)
            if key not in self.pop_call:
                self.pop_call[key] = json.loads(body)["call"]["call_id"]
            if not self.pop_body:
                self.pop_body = body
        elif event == "call.answered":
            self.answered.setdefault(json.loads(body)["call_id"], at)

    def light(self) -> dict[str, Any]:
        """What the run looks at while calls go on (cheap to send between processes)."""
        return {"pops": len(self.pops), "keys": {e: len(k) for e, k in self.keys.items()},
                "pop_body": self.pop_body}  # fmt: skip


class ReceiverHere:
    """The receiver on this process's loop, beside the fake PBX (`--receiver-here`: how the
    bench measured before 2026-12-02)."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.pid = os.getpid()

    async def light(self) -> dict[str, Any]:
        return self.receiver.light()

    async def final(self) -> Receiver:
        return self.receiver


class ReceiverProcess:
    """The receiver in a process of its own, as a service desk is: a request's arrival is
    stamped when it arrives, not after whatever burst of AMI writes the fake PBX was in the
    middle of (on one loop, the PBX's lag of up to tens of ms went into the tail of every
    pop's latency but never into the floor, whose POSTs come after the calls). Forked before
    anything else runs; it inherits this process's CPU pinning."""

    def __init__(self, sock: socket.socket) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_serve_receiver, args=(sock, child), daemon=True)
        self._proc.start()
        child.close()
        sock.close()
        assert self._proc.pid is not None
        self.pid = self._proc.pid

    def _ask(self, what: str) -> Any:
        self._conn.send(what)
        return self._conn.recv()

    async def light(self) -> dict[str, Any]:
        return cast(dict[str, Any], await asyncio.to_thread(self._ask, "light"))

    async def final(self) -> Receiver:
        receiver = cast(Receiver, await asyncio.to_thread(self._ask, "stop"))
        await asyncio.to_thread(self._proc.join, 10)
        return receiver

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()


def _serve_receiver(sock: socket.socket, conn: Any) -> None:
    async def serve() -> None:
        receiver = Receiver()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: HttpSession(receiver), sock=sock)
        done: asyncio.Future[None] = loop.create_future()

        def command() -> None:
            what = conn.recv()
            if what == "light":
                conn.send(receiver.light())
            else:  # "stop": everything it saw, then exit
                conn.send(receiver)
                if not done.done():
                    done.set_result(None)

        loop.add_reader(conn.fileno(), command)
        await done
        server.close()

    asyncio.run(serve())


class HttpSession(asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.conn = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                assert self.transport is not None
                self.transport.close()
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                conn.start_next_cycle()
                continue
            kind = type(event)
            if kind is h11.Request:
                self.headers = dict(event.headers)  # type: ignore[union-attr]
                self.body = []
            elif kind is h11.Data:
                self.body.append(event.data)  # type: ignore[union-attr]
            elif kind is h11.EndOfMessage:
                at = time.perf_counter_ns()
                self.receiver.hit(self.headers, b"".join(self.body), at)
                assert self.transport is not None
                self.transport.write(
                    conn.send(h11.Response(status_code=200, headers=[(b"Content-Length", b"0")]))
                    + conn.send(h11.EndOfMessage())
                )
            elif kind is h11.ConnectionClosed:
                return


# -- the floor: bare POSTs from another process ------------------------------------------------
def floor_client(
    port: int, rate: float, duration: float, body_file: str, seed: int, kind: str = "lean"
) -> None:
    """Bare POSTs at `rate`: with the agent's own lean HTTP/1.1 client (`cti_cli.notify.http1`,
    the strictest yardstick: the cost of the request itself) or with httpx (`kind`)."""
    body = Path(body_file).read_bytes()
    url = f"http://127.0.0.1:{port}/cti/events"

    async def run() -> None:
        import httpx

        from cti_cli.notify.http1 import PostClient

        rnd = random.Random(seed)
        lean = PostClient(url, max_connections=8, user_agent="cti/bench")
        client = httpx.AsyncClient(http1=True, http2=False, timeout=5.0)

        async def post(headers: dict[str, str]) -> None:
            if kind == "lean":
                await lean.post(body, [(k.encode(), v.encode()) for k, v in headers.items()])
            else:
                await client.post(url, content=body, headers=headers)

        await post({"X-CTI-Event": "bench.warmup", "Content-Type": "application/json"})
        tasks: set[asyncio.Task[Any]] = set()
        start = time.perf_counter()
        at = start
        n = 0
        while at - start < duration:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            n += 1
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "cti/bench",
                "X-CTI-Event": "bench.floor",
                "X-CTI-Delivery": f"floor-{n}",
                "X-CTI-Timestamp": str(int(time.time())),
                "X-CTI-Signature": "sha256=" + "0" * 64,
                "X-Bench-Sent": str(time.perf_counter_ns()),
            }
            task = asyncio.create_task(post(headers))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            at += rnd.expovariate(rate)
        if tasks:
            await asyncio.wait(tasks)
        await lean.aclose()
        await client.aclose()

    asyncio.run(run())


# -- the agent ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_setup(folder: Path, ami_port: int, hook_port: int, events: list[str] | None) -> Path:
    import tomli_w

    csv = folder / "employees.csv"
    rows = ["id,name,phone,department"]
    for i in range(EMPLOYEES):
        name = NAMES[i % (len(NAMES) - 2)]
        rows.append(f"E-{i:05d},{name},{employee_phone(i)},{DEPARTMENTS[i % len(DEPARTMENTS)]}")
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    hook: dict[str, Any] = {"url": f"http://127.0.0.1:{hook_port}/cti/events",
                            "secret": HOOK_SECRET, "format": "json"}  # fmt: skip
    if events:
        hook["events"] = events
    config = {
        "enabled": True,
        "server": {"host": "127.0.0.1", "port": ami_port, "login": USER, "password": SECRET,
                   "auth": "md5", "timeout": 5.0},
        "teams": [{"name": "Первая линия", "members": [
            {"login": "ivanov", "name": "Иван Иванов", "extensions": ["101"]}]}],
        "rule": {"trigger": "answer", "timeout": 2.0},
        "directory": {"source": f"csv:{csv}", "region": "RU"},
        "agent": {"listen": f"127.0.0.1:{free_port()}", "state_dir": str(folder / "state"),
                  "pop_ttl": 60.0, "pbx": "bench"},
        "webhooks": [hook],
    }  # fmt: skip
    path = folder / "cti.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    path.chmod(0o600)
    return path


def code_version() -> str:
    """The commit measured, and how many files under cti_cli/ differ from it (others edit the
    checkout while benchmarks run)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "cti_cli"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or '?'}" + (f" + {len(dirty)} uncommitted files under cti_cli/" if dirty else "")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return float("nan")
    rank = max(1, min(len(values), -(-len(values) * q // 100)))
    return values[int(rank) - 1]


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


# -- the run -----------------------------------------------------------------------------------
async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    cpus = psutil.cpu_count() or 1
    pin = args.pin and cpus >= 2
    me = psutil.Process()
    if pin:
        me.cpu_affinity([0])
    warmup_calls = round(args.warmup * args.rate)
    measured = args.calls if args.calls else round(args.duration * args.rate)
    pbx = FakePbx(args.rate, warmup_calls + measured, warmup_calls, args.ring_102, args.coalesce,
                  args.filters)  # fmt: skip
    remote: ReceiverHere | ReceiverProcess
    hook: asyncio.Server | None = None
    if args.receiver_here:
        here = Receiver()
        remote = ReceiverHere(here)
        hook = await loop.create_server(lambda: HttpSession(here), "127.0.0.1", 0)
        hook_port = hook.sockets[0].getsockname()[1]
    else:
        listener = socket.create_server(("127.0.0.1", 0))
        hook_port = listener.getsockname()[1]
        remote = ReceiverProcess(listener)  # forked first: it inherits no AMI socket
    receiver_proc = psutil.Process(remote.pid)
    ami = await loop.create_server(lambda: PbxSession(pbx), "127.0.0.1", 0)
    ami_port = ami.sockets[0].getsockname()[1]
    config = write_setup(folder, ami_port, hook_port, args.events)
    log_path = folder / "agent.log"
    args.code = code_version()  # what the agent is about to import
    env = {**os.environ, "CTI_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    env.pop("CTI_SERVER__PASSWORD", None)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cti_cli", "agent"], stdout=log, stderr=log, env=env, cwd=ROOT
        )
    agent = psutil.Process(proc.pid)
    if pin:
        agent.cpu_affinity([cpus - 1])
    print(f"agent pid {proc.pid} (py-spy record --pid {proc.pid}), log {log_path}", file=sys.stderr)
    rss: list[tuple[float, float, float]] = []  # (s since measuring began, MiB, agent cpu s)
    result: dict[str, Any] = {}
    try:
        try:
            await asyncio.wait_for(pbx.ready.wait(), 30)
        except TimeoutError:
            raise SystemExit(
                f"the agent never logged in:\n{log_path.read_text()[-3000:]}"
            ) from None
        measuring = asyncio.Event()
        streamer = asyncio.create_task(pbx.stream(measuring))
        await asyncio.wait({streamer, asyncio.create_task(measuring.wait())},
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if streamer.done():
            streamer.result()
        bench0 = cpu_seconds(me) + (cpu_seconds(receiver_proc) if remote.pid != me.pid else 0)
        cpu0, t0 = cpu_seconds(agent), time.perf_counter()
        rss.append((0.0, agent.memory_info().rss / 2**20, cpu0))

        async def sample() -> None:
            while True:
                await asyncio.sleep(args.rss_every)
                rss.append((time.perf_counter() - t0, agent.memory_info().rss / 2**20,
                            cpu_seconds(agent)))  # fmt: skip

        sampler = asyncio.create_task(sample())
        progress = asyncio.create_task(report_progress(pbx, remote, agent, args))
        # the window ends with the last call's start: steady state, calls still running
        while not streamer.done() and len(pbx.by_call_id) < pbx.calls:
            await asyncio.sleep(0.05)
        bench1 = cpu_seconds(me) + (cpu_seconds(receiver_proc) if remote.pid != me.pid else 0)
        cpu1, t1 = cpu_seconds(agent), time.perf_counter()
        await streamer
        sampler.cancel()
        rss.append((time.perf_counter() - t0, agent.memory_info().rss / 2**20, cpu_seconds(agent)))
        ended = time.perf_counter()
        deadline = ended + args.drain
        wanted = expected_counts(args, pbx)
        while time.perf_counter() < deadline:
            got = (await remote.light())["keys"]
            if all(got.get(event, 0) >= n for event, n in wanted.items()):
                break
            await asyncio.sleep(0.05)
        drained = time.perf_counter() - ended
        # the floor must not share the core with an agent still catching up
        busy = 1.0
        while busy > 0.05 and time.perf_counter() < deadline:
            before, at = cpu_seconds(agent), time.perf_counter()
            await asyncio.sleep(1.0)
            busy = (cpu_seconds(agent) - before) / (time.perf_counter() - at)
        progress.cancel()
        floor_agent_cpu = float("nan")
        pop_body = (await remote.light())["pop_body"]
        if args.floor_duration > 0 and pop_body:
            body_file = folder / "pop.json"
            body_file.write_bytes(pop_body)
            cmd = [sys.executable, __file__, "--floor-client", str(hook_port), str(args.rate),
                   str(args.floor_duration), str(body_file), args.floor_kind]  # fmt: skip
            before, at = cpu_seconds(agent), time.perf_counter()
            floor_proc = await asyncio.create_subprocess_exec(*cmd)
            if pin:
                psutil.Process(floor_proc.pid).cpu_affinity([cpus - 1])
            await floor_proc.wait()
            floor_agent_cpu = (cpu_seconds(agent) - before) / (time.perf_counter() - at)
        outbox = folder / "state" / "outbox.sqlite3"
        outbox_mib = sum(p.stat().st_size for p in outbox.parent.glob("outbox.sqlite3*")) / 2**20
        receiver = await remote.final()
        result = summarize(args, pbx, receiver, rss, outbox_mib,
                           agent_cpu=(cpu1 - cpu0) / (t1 - t0),
                           bench_cpu=(bench1 - bench0) / (t1 - t0), window=t1 - t0)  # fmt: skip
        result["drain_s"] = drained
        result["agent_cpu_during_floor_percent"] = 100 * floor_agent_cpu
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 15)
            except TimeoutError:
                proc.kill()
        ami.close()
        if hook is not None:
            hook.close()
        if isinstance(remote, ReceiverProcess):
            remote.kill()
    result["agent_exit"] = proc.returncode
    result["agent_log_errors"] = [
        line
        for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        if " error " in line or " warning " in line or "Traceback" in line
    ][:20]
    return result


async def report_progress(
    pbx: FakePbx,
    remote: ReceiverHere | ReceiverProcess,
    agent: psutil.Process,
    args: argparse.Namespace,
) -> None:
    last_cpu, last_t = cpu_seconds(agent), time.perf_counter()
    while True:
        await asyncio.sleep(args.progress)
        cpu, now = cpu_seconds(agent), time.perf_counter()
        share = 100 * (cpu - last_cpu) / (now - last_t)
        pops = (await remote.light())["pops"]
        print(
            f"[{now - pbx.started_at:7.1f} s] calls {len(pbx.by_call_id):,}/{pbx.calls:,}, "
            f"pops {pops:,}, agent CPU {share:.0f} %, "
            f"RSS {agent.memory_info().rss / 2**20:.1f} MiB, "
            f"PBX lag max {pbx.max_lag * 1000:.1f} ms",
            file=sys.stderr,
        )
        last_cpu, last_t = cpu, now


def expected_counts(args: argparse.Namespace, pbx: FakePbx) -> dict[str, int]:
    """Deliveries every call must produce: one pop (101 answers), ringing 101 (and 102 when it
    rang: the call is the team's by then), answered 101, ended."""
    every = {
        "screen_pop": pbx.calls,
        "call.ringing": pbx.calls + pbx.with_102,
        "call.answered": pbx.calls,
        "call.ended": pbx.calls,
    }
    return {k: (n if not args.events or k in args.events else 0) for k, n in every.items()}


def summarize(
    args: argparse.Namespace,
    pbx: FakePbx,
    receiver: Receiver,
    rss: list[tuple[float, float, float]],
    outbox_mib: float,
    *,
    agent_cpu: float,
    bench_cpu: float,
    window: float,
) -> dict[str, Any]:
    first = pbx.warmup_calls
    pop_ms: list[float] = []
    answered_ms: list[float] = []
    seen_calls: set[int] = set()
    for key, arrivals in receiver.pops.items():
        seq = pbx.by_call_id.get(receiver.pop_call[key], -1)
        seen_calls.add(seq)
        if seq >= first and seq in pbx.trigger_ns:
            pop_ms.append((arrivals[0] - pbx.trigger_ns[seq]) / 1e6)
    for call_id, at in receiver.answered.items():
        seq = pbx.by_call_id.get(call_id, -1)
        if seq >= first and seq in pbx.trigger_ns:
            answered_ms.append((at - pbx.trigger_ns[seq]) / 1e6)
    pop_ms.sort()
    answered_ms.sort()
    floor_ms = sorted(ns / 1e6 for ns in receiver.floor)
    duplicates = sum(count - len(receiver.keys.get(event, ())) for event, count in
                     receiver.counts.items())  # fmt: skip
    expected = expected_counts(args, pbx)
    lost = {event: n - len(receiver.keys.get(event, ())) for event, n in expected.items()}
    mib = [r[1] for r in rss]
    mid = rss[len(rss) // 2] if rss else (0.0, 0.0, 0.0)
    p99_pop, p99_floor = pct(pop_ms, 99), pct(floor_ms, 99)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "code": args.code,
        "cpus": psutil.cpu_count(),
        "load_average": [round(x, 2) for x in psutil.getloadavg()],
        "pinned": bool(args.pin and (psutil.cpu_count() or 1) >= 2),
        "receiver": "PBX's loop" if args.receiver_here else "own process",
        "rate": args.rate,
        "webhook_events": args.events or "all",
        "calls": pbx.calls,
        "warmup_calls": first,
        "calls_ringing_102": pbx.with_102,
        "messages": pbx.messages,
        "messages_per_call": pbx.messages / max(1, pbx.calls),
        "bytes_per_message": pbx.bytes_sent / max(1, pbx.messages - pbx.filtered),
        "sent_per_call": (pbx.messages - pbx.filtered) / max(1, pbx.calls),
        "ami_filters": "asked, taken" if pbx.filters and pbx.filtered else (
            "asked, refused (no write = system)" if not pbx.filters else "not asked"),
        "messages_per_s": pbx.messages / max(1e-9, pbx.finished_at - pbx.started_at),
        "window_s": window,
        "pop_ms": {"n": len(pop_ms), "p50": pct(pop_ms, 50), "p90": pct(pop_ms, 90),
                   "p99": p99_pop, "max": pop_ms[-1] if pop_ms else float("nan")},
        "answered_ms": {"n": len(answered_ms), "p50": pct(answered_ms, 50),
                        "p99": pct(answered_ms, 99)},
        "floor_ms": {"n": len(floor_ms), "p50": pct(floor_ms, 50), "p90": pct(floor_ms, 90),
                     "p99": p99_floor, "max": floor_ms[-1] if floor_ms else float("nan")},
        "p99_ratio": p99_pop / p99_floor if floor_ms else float("nan"),
        "floor_kind": args.floor_kind,
        "agent_cpu_percent": 100 * agent_cpu,
        "bench_cpu_percent": 100 * bench_cpu,
        "rss_mib": {"start": mib[0] if mib else 0.0, "middle": mid[1],
                    "end": mib[-1] if mib else 0.0, "max": max(mib, default=0.0),
                    "samples": [(round(t), round(m, 1)) for t, m, _ in rss]},
        "received": dict(sorted(receiver.counts.items())),
        "lost": lost,
        "duplicates": duplicates,
        "bad_signatures": receiver.bad_signatures,
        "pbx_max_lag_ms": pbx.max_lag * 1000,
        "triggers_behind_unsent_bytes": pbx.trigger_queued,
        "pbx_max_write_buffer": pbx.max_buffer,
        "ami_logins": pbx.logins,
        "outbox_mib": outbox_mib,
    }  # fmt: skip


def markdown(r: dict[str, Any]) -> str:
    pop, ans, floor, rss = r["pop_ms"], r["answered_ms"], r["floor_ms"], r["rss_mib"]

    def ms(value: float) -> str:
        if value != value:  # NaN: not measured
            return "—"
        return f"{value / 1000:,.1f} s" if value >= 1000 else f"{value:.2f} ms"

    def x(value: float) -> str:
        return "—" if value != value else f"{value:,.1f}×"

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    def pct_or_dash(value: float) -> str:
        return "—" if value != value else f"{value:.1f} %"

    lost_total = sum(r["lost"].values())
    samples = rss["samples"]
    curve = ", ".join(f"{m:.1f} @ {t} s" for t, m in
                      [samples[round(i * (len(samples) - 1) / 4)] for i in range(5)])  # fmt: skip
    rows = [
        f"{r['date']}, code {r['code']}, Python {r['python']}, {r['cpus']} CPUs"
        f"{' (agent pinned to one, PBX + receiver to another)' if r['pinned'] else ''}, "
        f"load average at the end {' / '.join(map(str, r['load_average']))}; "
        f"webhook receiver on {r['receiver']}",
        f"Stream: {r['calls']:,} calls at {r['rate']:g} calls/s (first {r['warmup_calls']:,} "
        f"are warm-up), {r['calls_ringing_102']:,} also ringing 102; {r['messages']:,} AMI "
        f"messages, {r['messages_per_call']:.1f} per call, {r['messages_per_s']:,.0f}/s; AMI "
        f"event filters {r['ami_filters']}: {r['sent_per_call']:.1f} messages per call sent, "
        f"{r['bytes_per_message']:.0f} bytes each. Webhook events: {r['webhook_events']}.",
        "",
        "| measurement | p50 | p90 | p99 | max | n | goal |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| AMI trigger written → `screen_pop` received | {ms(pop['p50'])} | {ms(pop['p90'])}"
        f" | **{ms(pop['p99'])}** | {ms(pop['max'])} | {pop['n']:,} | p99 ≤ 10 ms: "
        f"{verdict(pop['p99'] <= 10)} |",
        f"| same trigger → `call.answered` received (the pop waits for it: same call, in order)"
        f" | {ms(ans['p50'])} | | {ms(ans['p99'])} | | {ans['n']:,} | |",
        f"| bare POST ({r['floor_kind']} keep-alive client, same receiver, same body, same rate)"
        f" | {ms(floor['p50'])}"
        f" | {ms(floor['p90'])} | {ms(floor['p99'])} | {ms(floor['max'])} | {floor['n']:,} | |",
        f"| pop ÷ bare POST | {x(pop['p50'] / floor['p50'])} | | **{x(r['p99_ratio'])}** | | |"
        f" p99 ≤ 5×: {verdict(r['p99_ratio'] <= 5) if floor['n'] else '—'} |",
        "",
        "| measurement | value | goal |",
        "|---|---:|---|",
        f"| agent CPU, share of one core over {r['window_s']:.0f} s | "
        f"**{r['agent_cpu_percent']:.1f} %** | ≤ 30 %: {verdict(r['agent_cpu_percent'] <= 30)} |",
        f"| agent RSS start / middle / end (max) | {rss['start']:.1f} / {rss['middle']:.1f} / "
        f"{rss['end']:.1f} MiB ({rss['max']:.1f}) | flat |",
        f"| agent RSS curve (MiB @ s into the measured window) | {curve} | |",
        f"| lost (pop / ringing / answered / ended) | {lost_total} ("
        + " / ".join(str(r["lost"][k]) for k in ("screen_pop", "call.ringing", "call.answered",
                                                  "call.ended"))
        + f") | 0: {verdict(lost_total == 0)} |",
        f"| duplicates, bad signatures | {r['duplicates']}, {r['bad_signatures']} | 0 |",
        "| webhook requests received | " + ", ".join(f"{k} {v:,}" for k, v in r["received"].items())
        + " | |",
        f"| PBX + receiver CPU; max PBX schedule lag | {r['bench_cpu_percent']:.1f} %; "
        f"{r['pbx_max_lag_ms']:.1f} ms | |",
        f"| triggers written behind unsent bytes (agent not reading) | "
        f"{r['triggers_behind_unsent_bytes']} (max buffer {r['pbx_max_write_buffer']:,} B) | |",
        f"| outbox on disk at the end | {r['outbox_mib']:.1f} MiB | |",
        f"| last delivery after the last AMI message; agent CPU during the floor | "
        f"{r['drain_s']:.1f} s; {pct_or_dash(r['agent_cpu_during_floor_percent'])} | |",
    ]  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="calls per second")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument(
        "--calls", type=int, default=0, help="measured calls (overrides --duration)"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of calls not measured")
    parser.add_argument("--ring-102", type=float, default=0.5,
                        help="share of calls that also ring 102 (not in the team)")  # fmt: skip
    parser.add_argument("--floor-duration", type=float, default=30.0,
                        help="seconds of bare POSTs after the calls (0: none)")  # fmt: skip
    parser.add_argument("--rss-every", type=float, default=5.0, help="RSS sample period, s")
    parser.add_argument("--drain", type=float, default=120.0,
                        help="seconds to wait for the last deliveries")  # fmt: skip
    parser.add_argument("--progress", type=float, default=10.0, help="progress line period, s")
    parser.add_argument("--coalesce", action="store_true",
                        help="one write per scheduler tick, not one per AMI message")  # fmt: skip
    parser.add_argument("--refuse-filters", dest="filters", action="store_false",
                        help="the PBX refuses AMI event filters, as Asterisk does for a user "
                        "without write = system: every event reaches the agent")  # fmt: skip
    parser.add_argument("--events", nargs="+", metavar="EVENT",
                        help="the webhook's `events` (default: every event)")  # fmt: skip
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (log, outbox)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--floor-kind", choices=("lean", "httpx"), default="lean",
                        help="the bare POSTs' client: the agent's own (default) or httpx")
    parser.add_argument("--receiver-here", action="store_true",
                        help="the webhook receiver on the fake PBX's loop, not in a process "
                        "of its own (the bench before 2026-12-02)")  # fmt: skip
    parser.add_argument("--floor-client", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_client:
        port, rate, duration, body, kind = args.floor_client
        floor_client(int(port), float(rate), float(duration), body, seed=23, kind=kind)
        return
    folder = Path(tempfile.mkdtemp(prefix="cti-e2e-"))
    try:
        result = asyncio.run(run(args, folder))
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(markdown(result))
        if result["agent_log_errors"]:
            print("\nagent log warnings/errors:\n" + "\n".join(result["agent_log_errors"]))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
