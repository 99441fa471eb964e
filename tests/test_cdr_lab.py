"""`cti recordings` and `cti calls` on what the lab's real Asterisk 22 wrote: CDR rows via
cdr_adaptive_odbc into MariaDB and the WAV files MixMonitor recorded, for answered, missed,
abandoned, queue, ring-group and transferred calls."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cdr_support import Result
from typer.testing import CliRunner

from cti_cli.cli.app import _register, app
from lab import Lab
from lab.amiraw import RawAmi

pytestmark = pytest.mark.lab
_register()

CALLER_NAME = "Иван Петров"
WAIT = 30.0


@dataclass
class Cti:
    config: Path

    def __call__(self, *args: str) -> Result:
        result = CliRunner().invoke(app, ["--config", str(self.config), *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.stdout, result.stderr)

    def json(self, *args: str) -> Any:
        res = self(*args, "--json")
        assert res.code == 0, res.err
        return json.loads(res.out)


@pytest.fixture
def cti(lab: Lab, tmp_path: Path) -> Iterator[Cti]:
    config = tmp_path / "cti.toml"
    config.write_text(
        f'[cdr]\ndbaccess = "{lab.info.dbaccess_file}"\n'
        f'recordings_dir = "{lab.info.recordings_dir}"\n',
        "utf-8",
    )
    config.chmod(0o600)
    lab.reset_phones()
    yield Cti(config)


def new_caller() -> str:
    return "+7916" + "".join(secrets.choice("0123456789") for _ in range(7))


def settled_call(lab: Lab, cti: Cti, caller: str) -> dict[str, Any]:
    """The journal line of `caller`'s call once Asterisk has written all of its CDR rows."""
    deadline = time.monotonic() + WAIT
    last = -1
    while time.monotonic() < deadline:
        found = cti.json("calls", "--number", caller)
        if found:
            (call,) = found
            count = len(lab.cdr_rows(call["uniqueid"]))
            if count == last == call["legs"]:
                return dict(call)
            last = count
        time.sleep(0.5)
    raise AssertionError(f"no settled CDR rows for the call from {caller}")


def recording_of(cti: Cti, uniqueid: str) -> dict[str, Any]:
    """`cti recordings --json`, once MixMonitor has closed the file (header complete)."""
    deadline = time.monotonic() + WAIT
    while True:
        data = cti.json("recordings", uniqueid)
        recs = data["recordings"]
        if (len(recs) == 1 and recs[0]["status"] == "present" and recs[0]["problem"] is None) or (
            time.monotonic() > deadline
        ):
            return dict(data)
        time.sleep(0.3)


def prefixes(rows: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((str(r["dstchannel"]).split("-")[0], str(r["disposition"])) for r in rows)


def test_answered_queue_call_rows_recording_and_copy(lab: Lab, cti: Cti, tmp_path: Path) -> None:
    lab.phone("101", "answer", answer_after=0.5)
    lab.phone("102", "noanswer")
    caller = new_caller()
    lab.call("200", caller=caller, caller_name=CALLER_NAME, talk=2.0)
    lab.wait_idle()

    call = settled_call(lab, cti, caller)
    data = recording_of(cti, call["uniqueid"])

    truth = lab.cdr_rows(call["uniqueid"])
    assert len(data["rows"]) == len(truth)
    assert prefixes(data["rows"]) == prefixes(truth)
    assert prefixes(data["rows"])[("PJSIP/101", "ANSWERED")] == 1
    assert all(r["clid"] == f'"{CALLER_NAME}" <{caller}>' for r in data["rows"])
    assert all(r["did"] == "200" and r["linkedid"] == call["uniqueid"] for r in data["rows"])
    (rec,) = data["recordings"]
    name = str(truth[0]["recordingfile"])
    day = name.split("-")[-3]
    expected = lab.info.recordings_dir / day[:4] / day[4:6] / day[6:8] / name
    assert rec["status"] == "present" and rec["problem"] is None
    assert rec["path"] == str(expected.resolve()) and rec["size"] == expected.stat().st_size
    assert rec["seconds"] > 0 and rec["audio"].startswith("PCM")

    assert call["answered"] and call["answered_by"] == ["101"]
    assert call["caller_name"] == CALLER_NAME and call["dialed"] == "200"
    assert call["recording"] == "present"

    text = cti("recordings", call["uniqueid"])
    assert f"#1 present  {expected.resolve()}" in text.out
    assert f"{CALLER_NAME} <{caller}> → 200" in text.out

    out = tmp_path / "export"
    copied = cti("recordings", call["uniqueid"], "--copy-to", str(out))
    assert copied.code == 0, copied.err
    assert (out / name).read_bytes() == expected.read_bytes()
    assert "size checked" in copied.out


def test_queue_nobody_answers_rings_twice_and_is_missed(lab: Lab, cti: Cti) -> None:
    lab.phone("101", "noanswer")
    lab.phone("102", "noanswer")
    caller = new_caller()
    lab.call("200", caller=caller, talk=1.0)
    lab.wait_idle()

    call = settled_call(lab, cti, caller)
    data = cti.json("recordings", call["uniqueid"])

    legs = prefixes(data["rows"])
    assert legs[("PJSIP/101", "NO ANSWER")] == 2 and legs[("PJSIP/102", "NO ANSWER")] == 2
    assert not call["answered"] and call["answered_by"] == [] and call["talk_seconds"] == 0


def test_abandoned_call_is_missed_but_recorded(lab: Lab, cti: Cti) -> None:
    caller = new_caller()
    lab.phone("101", "noanswer")
    lab.phone("102", "noanswer")
    lab.call("200", caller=caller, cancel_after=1.0)
    lab.wait_idle()

    call = settled_call(lab, cti, caller)
    data = recording_of(cti, call["uniqueid"])

    assert not call["answered"]
    assert data["recordings"][0]["status"] == "present"


def test_ring_group_answered_by_103(lab: Lab, cti: Cti) -> None:
    lab.phone("102", "noanswer")
    lab.phone("103", "answer", answer_after=0.5)
    caller = new_caller()
    lab.call("300", caller=caller, caller_name=CALLER_NAME, talk=1.0)
    lab.wait_idle()

    call = settled_call(lab, cti, caller)
    data = cti.json("recordings", call["uniqueid"])

    assert prefixes(data["rows"])[("PJSIP/103", "ANSWERED")] == 1
    assert call["answered_by"] == ["103"] and call["dialed"] == "300"
    text = cti("calls", "--number", caller)
    line = next(line for line in text.out.splitlines() if call["uniqueid"] in line)
    assert f"{CALLER_NAME} <{caller}>" in line and "answered" in line and "103" in line


def test_blind_transfer_shows_both_operators(lab: Lab, cti: Cti) -> None:
    lab.phone("101", "answer", answer_after=0.3)
    lab.phone("103", "answer", answer_after=0.3)
    caller = new_caller()
    ami = RawAmi(lab.info.ami_host, lab.info.ami_port)
    try:
        assert ami.login(lab.info.ami_user, lab.info.ami_secret)["Response"] == "Success"
        lab.call("101", caller=caller, talk=4.0)
        dialled, operator = None, None
        for event in ami.events(time.monotonic() + WAIT):
            if event["Event"] == "DialBegin" and event.get("CallerIDNum") == caller:
                dialled = event["DestChannel"]
            if event["Event"] == "BridgeEnter" and dialled and event["Channel"] == dialled:
                operator = dialled
                break
        assert operator is not None and operator.startswith("PJSIP/101-"), "101 never answered"
        reply = ami.action("BlindTransfer", Channel=operator, Context="from-internal", Exten="103")
        assert reply["Response"] == "Success"
    finally:
        ami.close()
    lab.wait_idle()

    call = settled_call(lab, cti, caller)
    data = cti.json("recordings", call["uniqueid"])

    assert call["answered_by"] == ["101", "103"]
    answered = [r for r in data["rows"] if r["disposition"] == "ANSWERED" and r["dstchannel"]]
    assert [str(r["dstchannel"]).split("-")[0] for r in answered] == ["PJSIP/101", "PJSIP/103"]
    assert call["talk_seconds"] == sum(r["billsec"] for r in answered)
