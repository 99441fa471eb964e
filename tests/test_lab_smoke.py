"""Smoke tests of the real lab: Asterisk 22 AMI, PJSIP calls from SIPp, MariaDB CDRs, recordings.

They talk to Asterisk over a raw socket (lab.amiraw), never through cti_cli, so they check the
lab itself and any cti_cli test built on it stands on verified ground.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable, Iterator

import pymysql
import pytest

from lab import Lab
from lab.amiraw import Message, RawAmi

pytestmark = pytest.mark.lab

CALLER_NAME = "Иван Петров"
CALL_TIMEOUT = 60.0


def new_caller() -> str:
    """A caller number no other test uses, to pick our call out of the shared lab's traffic."""
    return "+7916" + "".join(secrets.choice("0123456789") for _ in range(7))


@pytest.fixture
def ami(lab: Lab) -> Iterator[RawAmi]:
    conn = RawAmi(lab.info.ami_host, lab.info.ami_port)
    assert conn.login(lab.info.ami_user, lab.info.ami_secret)["Response"] == "Success"
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def _phones_answer(lab: Lab) -> None:
    lab.reset_phones()


def in_call(event: Message, linkedid: str) -> bool:
    """Linkedid, or TransfererLinkedid etc. on events that involve several channels."""
    return any(k.endswith("Linkedid") and v == linkedid for k, v in event.items())


def call_events(ami: RawAmi, caller: str, done: Callable[[list[Message]], bool]) -> list[Message]:
    """Events of the call from `caller` (same Linkedid as its first channel) until `done`."""
    linkedid = None
    events: list[Message] = []
    for event in ami.events(time.monotonic() + CALL_TIMEOUT):
        is_ours = event["Event"] == "Newchannel" and event.get("CallerIDNum") == caller
        if linkedid is None and is_ours:
            linkedid = event["Linkedid"]
        if linkedid is not None and in_call(event, linkedid):
            events.append(event)
            if done(events):
                return events
    raise AssertionError(f"call from {caller} incomplete; saw {[e['Event'] for e in events]}")


def caller_hung_up(events: list[Message]) -> bool:
    first = events[0]["Uniqueid"]
    return any(e["Event"] == "Hangup" and e["Uniqueid"] == first for e in events)


def wait_cdr_rows(lab: Lab, uniqueid: str, count: int) -> list[dict[str, object]]:
    """CDRs are written just after hangup; poll until `count` rows arrived (or give up)."""
    deadline = time.monotonic() + 15
    rows = lab.cdr_rows(uniqueid)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = lab.cdr_rows(uniqueid)
    return rows


def names(events: list[Message]) -> list[str]:
    return [e["Event"] for e in events]


def test_ami_banner_on_raw_socket(lab: Lab) -> None:
    with socket.create_connection((lab.info.ami_host, lab.info.ami_port), timeout=10) as sock:
        banner = sock.makefile("rb").readline().decode()
    assert banner.startswith("Asterisk Call Manager/11.")


def test_tls_ami_verifies_with_lab_ca_for_localhost_and_ip(lab: Lab) -> None:
    for host in ("localhost", "127.0.0.1"):
        conn = RawAmi(host, lab.info.ami_tls_port, cafile=lab.info.tls_ca_file)
        try:
            assert conn.banner.startswith("Asterisk Call Manager/11.")
            assert conn.login(lab.info.ami_user, lab.info.ami_secret)["Response"] == "Success"
        finally:
            conn.close()


def test_wrong_secret_is_rejected(lab: Lab) -> None:
    conn = RawAmi(lab.info.ami_host, lab.info.ami_port)
    try:
        reply = conn.login(lab.info.ami_user, "not-the-secret")
    finally:
        conn.close()
    assert reply["Response"] == "Error"
    assert reply["Message"] == "Authentication failed"


def test_dbaccess_properties_give_select_only_access(lab: Lab) -> None:
    props = dict(
        line.split("=", 1)
        for line in lab.info.dbaccess_file.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert props["cti.cdr.url"] == (
        f"jdbc:mysql://{lab.info.mysql_host}:{lab.info.mysql_port}/{lab.info.mysql_db}"
    )
    assert props["cti.cdr.table"] == "cdr"
    conn = pymysql.connect(
        host=lab.info.mysql_host,
        port=lab.info.mysql_port,
        user=props["cti.cdr.user"],
        password=props["cti.cdr.password"],
        database=lab.info.mysql_db,
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM cdr")
        with pytest.raises(pymysql.err.OperationalError) as denied:
            cur.execute("INSERT INTO cdr (src) VALUES ('x')")
    assert denied.value.args[0] == 1142  # INSERT command denied


def test_queue_call_gives_events_cdrs_and_recording(lab: Lab, ami: RawAmi) -> None:
    limited = RawAmi(lab.info.ami_host, lab.info.ami_port)
    login = limited.login(lab.info.ami_limited_user, lab.info.ami_limited_secret)
    assert login["Response"] == "Success"
    lab.phone("101", "answer", answer_after=0.5)
    lab.phone("102", "noanswer")
    caller = new_caller()

    lab.call("200", caller=caller, caller_name=CALLER_NAME, talk=1.0)
    events = call_events(ami, caller, caller_hung_up)
    lab.wait_idle()

    seen = names(events)
    for name in ("QueueCallerJoin", "AgentCalled", "DialBegin", "AgentConnect", "BridgeEnter"):
        assert name in seen
    uniqueid = events[0]["Uniqueid"]
    join = next(e for e in events if e["Event"] == "QueueCallerJoin")
    assert join["Uniqueid"] == uniqueid
    assert join["CallerIDName"] == CALLER_NAME
    connect = next(e for e in events if e["Event"] == "AgentConnect")
    assert connect["Interface"] == "PJSIP/101"

    limited_events = list(limited.events(time.monotonic() + 0.5))
    limited.close()
    assert not [e for e in limited_events if in_call(e, uniqueid)]

    rows = wait_cdr_rows(lab, uniqueid, 2)
    legs = {str(r["dstchannel"]).split("-")[0]: r["disposition"] for r in rows}
    assert legs == {"PJSIP/101": "ANSWERED", "PJSIP/102": "NO ANSWER"}
    recording = rows[0]["recordingfile"]
    assert isinstance(recording, str)
    assert recording.startswith(f"in-200-{caller}-") and recording.endswith(f"-{uniqueid}.wav")
    for row in rows:
        assert row["recordingfile"] == recording
        assert row["clid"] == f'"{CALLER_NAME}" <{caller}>'
        assert row["cnam"] == CALLER_NAME
        assert row["src"] == caller
        assert row["linkedid"] == uniqueid
    files = list(lab.info.recordings_dir.glob(f"*/*/*/{recording}"))
    assert len(files) == 1 and files[0].stat().st_size > 44  # more than a bare WAV header


def test_queue_call_nobody_answers_rings_members_twice(lab: Lab, ami: RawAmi) -> None:
    lab.phone("101", "noanswer")
    lab.phone("102", "noanswer")
    caller = new_caller()

    lab.call("200", caller=caller, talk=1.0)
    events = call_events(ami, caller, caller_hung_up)
    lab.wait_idle()

    called = [e["Interface"] for e in events if e["Event"] == "AgentCalled"]
    assert sorted(called) == ["PJSIP/101", "PJSIP/101", "PJSIP/102", "PJSIP/102"]
    assert "AgentConnect" not in names(events)
    rows = wait_cdr_rows(lab, events[0]["Uniqueid"], 1)
    assert rows and all(r["disposition"] == "NO ANSWER" for r in rows)


def test_ring_group_300_rings_102_and_103(lab: Lab, ami: RawAmi) -> None:
    lab.phone("102", "noanswer")
    lab.phone("103", "answer", answer_after=0.5)
    caller = new_caller()

    lab.call("300", caller=caller, talk=1.0)
    events = call_events(ami, caller, caller_hung_up)
    lab.wait_idle()

    dialed = {e["DestChannel"].split("-")[0] for e in events if e["Event"] == "DialBegin"}
    assert dialed == {"PJSIP/102", "PJSIP/103"}
    rows = wait_cdr_rows(lab, events[0]["Uniqueid"], 2)
    legs = {str(r["dstchannel"]).split("-")[0]: r["disposition"] for r in rows}
    assert legs["PJSIP/103"] == "ANSWERED"


def test_blind_transfer_by_ami_to_103(lab: Lab, ami: RawAmi) -> None:
    lab.phone("101", "answer", answer_after=0.3)
    lab.phone("103", "answer", answer_after=0.3)
    caller = new_caller()

    lab.call("101", caller=caller, talk=4.0)
    answered = call_events(
        ami, caller, lambda ev: sum(e["Event"] == "BridgeEnter" for e in ev) >= 2
    )
    operator = next(e["DestChannel"] for e in answered if e["Event"] == "DialBegin")
    reply = ami.action("BlindTransfer", Channel=operator, Context="from-internal", Exten="103")
    assert reply["Response"] == "Success"
    linkedid = answered[0]["Linkedid"]
    rest: list[Message] = []
    for event in ami.events(time.monotonic() + CALL_TIMEOUT):
        if in_call(event, linkedid):
            rest.append(event)
        if caller_hung_up(answered + rest):
            break
    lab.wait_idle()

    transfer = next(e for e in rest if e["Event"] == "BlindTransfer")
    assert transfer["Result"] == "Success" and transfer["Extension"] == "103"
    assert any(
        e["Event"] == "DialBegin" and e["DestChannel"].startswith("PJSIP/103-") for e in rest
    )
    assert any(e["Event"] == "BridgeEnter" and e["Channel"].startswith("PJSIP/103-") for e in rest)


def test_caller_abandons_queue_while_ringing(lab: Lab, ami: RawAmi) -> None:
    lab.phone("101", "noanswer")
    lab.phone("102", "noanswer")
    caller = new_caller()

    lab.call("200", caller=caller, cancel_after=1.0)
    events = call_events(ami, caller, caller_hung_up)
    lab.wait_idle()

    assert "QueueCallerAbandon" in names(events)
    assert "AgentConnect" not in names(events)
    # gone during the first 3 s ring round, not by the queue's 8 s timeout after two rounds
    assert sorted(e["Interface"] for e in events if e["Event"] == "AgentCalled") == [
        "PJSIP/101",
        "PJSIP/102",
    ]


def test_busy_phone_answers_486(lab: Lab, ami: RawAmi) -> None:
    lab.phone("103", "busy")
    caller = new_caller()

    lab.call("103", caller=caller)
    events = call_events(ami, caller, caller_hung_up)
    lab.wait_idle()

    dial_end = next(e for e in events if e["Event"] == "DialEnd")
    assert dial_end["DialStatus"] == "BUSY"
    # Asterisk writes the Dial leg and then the caller's own leg (lastapp Hangup), both BUSY
    rows = wait_cdr_rows(lab, events[0]["Uniqueid"], 2)
    legs = {(str(r["dstchannel"]).split("-")[0], r["lastapp"]): r["disposition"] for r in rows}
    assert legs == {("PJSIP/103", "Dial"): "BUSY", ("", "Hangup"): "BUSY"}
