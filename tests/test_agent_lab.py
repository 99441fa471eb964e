"""`cti agent` against the real Asterisk 22 lab: real calls, a real receiver, a real process.

Operators: 101 is in the team "Первая линия" (login ivanov); 102 is in no team (except where a
test puts it in one); 103 is in "Вторая линия". The employee directory stores numbers in the
8 (9xx) xxx-xx-xx form, so a match proves normalisation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cti_cli.ami.client import AMIClient
from tests.agent_support import SECRET, AgentProcess, Receiver, free_port, write_config
from tests.bus_support import Proxy
from tests.fault_support import record

pytestmark = pytest.mark.lab

EMPLOYEES = (
    "id;name;phone;department;room\n"
    "E-101;Иван Петров;8 (916) 555-01-01;Бухгалтерия;к. 214\n"
    "E-102;Мария Сидорова;+7 916 555 01 02;ИТ;к. 301\n"
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def lab_config(lab: Any, tmp_path: Path, receiver_url: str, **over: Any) -> dict[str, Any]:
    csv = tmp_path / "employees.csv"
    if not csv.exists():
        csv.write_text(EMPLOYEES, encoding="utf-8")
    info = lab.info
    teams = over.pop(
        "teams",
        [
            {"name": "Первая линия",
             "members": [{"login": "ivanov", "name": "Иван Иванов", "extensions": ["101"]}]},
            {"name": "Вторая линия",
             "members": [{"login": "petrova", "name": "Анна Петрова", "extensions": ["103"]}]},
        ],
    )  # fmt: skip
    data: dict[str, Any] = {
        "enabled": True,
        "server": {
            "host": over.pop("host", info.ami_host),
            "port": over.pop("port", info.ami_port),
            "login": info.ami_user,
            "password": info.ami_secret,
        },
        "teams": teams,
        "rule": over.pop("rule", {"trigger": "answer"}),
        "directory": {"source": f"csv:{csv}", "region": "RU"},
        "webhooks": [{"url": receiver_url, "secret": SECRET}],
        "agent": {
            "listen": f"127.0.0.1:{free_port()}",
            "state_dir": str(tmp_path / "state"),
            "pbx": "lab",
            **over.pop("agent", {}),
        },
    }
    assert not over, over
    return data


def start_agent(tmp_path: Path, data: dict[str, Any]) -> AgentProcess:
    path = tmp_path / "cti.toml"
    write_config(path, data)
    agent = AgentProcess(path, data["agent"]["listen"], tmp_path / "agent.log").start()
    agent.wait_healthy()
    return agent


def phones(lab: Any, **modes: str) -> None:
    for ext in ("101", "102", "103"):
        lab.phone(ext, modes.get(f"p{ext}", "answer"))


def finish(lab: Any) -> None:
    lab.wait_idle(40)


def test_queue_call_answered_by_team_member_pops_once_with_the_employee_card(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    caller = "+79165550101"
    phones(lab, p101="answer", p102="noanswer")
    agent = start_agent(tmp_path, lab_config(lab, tmp_path, receiver.url))
    try:
        lab.call("200", caller=caller, caller_name="Иван Петров", talk=2.0)
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 40, "call.ended")
        finish(lab)
        time.sleep(0.5)  # anything late would arrive now
    finally:
        agent.terminate()
    pops = receiver.of("screen_pop", caller=caller)
    assert len(pops) == 1, [p.json for p in pops]
    pop = pops[0].json
    assert pop["operator"] == {
        "login": "ivanov", "name": "Иван Иванов", "team": "Первая линия", "extension": "101"
    }  # fmt: skip
    assert pop["call"]["caller_e164"] == "+79165550101"
    assert pop["call"]["caller_name"] == "Иван Петров"
    assert pop["call"]["queue"] == "support" and pop["call"]["dialed"] == "200"
    assert pop["call"]["trigger"] == "answer"
    card = pop["open"][0]
    assert card["type"] == "employee_card"
    assert card["employee"]["id"] == "E-101"
    assert card["employee"]["department"] == "Бухгалтерия"
    assert card["employee"]["room"] == "к. 214"
    assert pop["open"][1]["type"] == "request_form"
    assert pops[0].headers["x-cti-delivery"] == pop["id"]
    # every request was signed and its X-CTI-Event is the body's event
    mine = [h for h in receiver.hits if h.json.get("call", h.json).get("caller") == caller]
    assert mine and all(h.signature_ok for h in mine)
    assert all(h.headers["x-cti-event"] == h.json["event"] for h in mine)
    assert all(h.headers["user-agent"].startswith("cti/") for h in mine)
    # lifecycle events in order; nobody in a team popped for 102
    events = [h.event for h in mine]
    assert events[-1] == "call.ended"
    assert events.index("screen_pop") == events.index("call.answered") - 1, (
        "the pop goes out first, right before the answer that triggered it"
    )
    assert not [h for h in mine if h.event == "screen_pop" and h.json["operator"]["extension"]
                == "102"]  # fmt: skip
    ended = receiver.of("call.ended", caller=caller)[0].json
    assert ended["answered_by"] == ["101"] and ended["reason"] == "completed"
    assert len({h.headers["x-cti-delivery"] for h in mine}) == len(mine)


def test_ring_trigger_pops_every_ringing_team_member_and_not_a_busy_phone(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    teams = [
        {"name": "Первая линия", "members": [
            {"login": "ivanov", "name": "Иван Иванов", "extensions": ["101"]},
            {"login": "sidorov", "name": "Пётр Сидоров", "extensions": ["102"]},
        ]},
    ]  # fmt: skip
    data = lab_config(lab, tmp_path, receiver.url, teams=teams, rule={"trigger": "ring"})
    phones(lab, p101="noanswer", p102="noanswer")
    agent = start_agent(tmp_path, data)
    try:
        caller = "+79165550102"
        # nobody answers: the queue rings both members in two rounds (retry)
        lab.call("200", caller=caller, caller_name="Мария Сидорова", cancel_after=7.0)
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 40, "call.ended")
        finish(lab)
        pops = receiver.of("screen_pop", caller=caller)
        assert sorted(p.json["operator"]["login"] for p in pops) == ["ivanov", "sidorov"]
        assert all(p.json["call"]["trigger"] == "ring" for p in pops)
        rings = [h.json["extension"] for h in receiver.of("call.ringing", caller=caller)]
        assert len(rings) >= 3, "the second ring round is reported, but pops nobody again"
        assert pops[0].json["open"][0]["employee"]["name"] == "Мария Сидорова"

        busy = "+79165550103"
        lab.phone("101", "busy")
        lab.call("101", caller=busy, caller_name="", talk=1.0)
        finish(lab)
        time.sleep(1.0)
        assert receiver.of("screen_pop", caller=busy) == [], "a busy phone never rang"
    finally:
        agent.terminate()
        lab.phone("101", "answer")


def test_webhook_503_for_5_s_then_200_is_delivered_with_the_same_key(
    lab: Any, tmp_path: Path
) -> None:
    until = time.time() + 1e9
    receiver = Receiver(status=lambda hit: 503 if hit.at < until else 200).start()
    phones(lab)
    agent = start_agent(tmp_path, lab_config(lab, tmp_path, receiver.url))
    try:
        until = time.time() + 5.0
        caller = "+79165550104"
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=1.0)
        receiver.wait(lambda: receiver.of("screen_pop", caller=caller), 40, "screen_pop")
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 40, "call.ended")
        finish(lab)
    finally:
        agent.terminate()
        receiver.stop()
    assert len(receiver.of("screen_pop", caller=caller)) == 1
    mine = [h for h in receiver.hits if h.json.get("call", h.json)["caller"] == caller]
    refused = [h for h in mine if h.at < until]
    assert refused, "the first attempts met the 503s"
    for hit in refused:
        retried = [h for h in mine if h.headers["x-cti-delivery"] == hit.headers["x-cti-delivery"]]
        assert retried[-1].at >= until, "each refused message came again and got through"
        assert {h.body for h in retried} == {hit.body}, "the same message, byte for byte"
    keys = [h.headers["x-cti-delivery"] for h in receiver.accepted]
    assert len(keys) == len(set(keys))


def test_receiver_down_and_agent_killed_then_both_back_delivers_once_per_key(
    lab: Any, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/cti/events"
    phones(lab)
    data = lab_config(lab, tmp_path, url)
    agent = start_agent(tmp_path, data)
    caller = "+79165550105"
    try:
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=1.0)
        agent.wait_log("pop → ivanov", 30)
        agent.wait_log("will retry", 30)
        agent.kill()  # SIGKILL while everything waits in the outbox
        finish(lab)
    finally:
        agent.close()
    receiver = Receiver().start(port)
    again = AgentProcess(agent.config, agent.listen, agent.log).start()
    try:
        receiver.wait(lambda: receiver.of("screen_pop", caller=caller), 30, "screen_pop")
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 30, "call.ended")
        time.sleep(1.0)
    finally:
        again.terminate()
        receiver.stop()
    keys = [h.headers["x-cti-delivery"] for h in receiver.accepted]
    assert len(keys) == len(set(keys)), "no key delivered twice"
    first = [h.event for h in receiver.accepted][:3]
    assert first == ["call.ringing", "screen_pop", "call.answered"]
    pop = receiver.of("screen_pop", caller=caller)[0].json
    assert pop["open"][0]["fields"]["phone"] == caller
    # the call ended while no agent ran: the restarted agent ends it, as lost, once
    ended = receiver.of("call.ended", caller=caller)
    assert len(ended) == 1 and ended[0].json["reason"] == "lost"
    assert ended[0].json["answered_by"] == ["101"]


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(
    lab: Any, tmp_path: Path
) -> None:
    slow = Receiver(status=lambda hit: (time.sleep(2.0), 200)[1]).start()
    phones(lab)
    agent = start_agent(tmp_path, lab_config(lab, tmp_path, slow.url))
    caller = "+79165550113"
    try:
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=3.0)
        slow.wait(lambda: any(h.json.get("caller") == caller for h in slow.hits), 30, "a request")
        assert agent.terminate() == 0
        assert slow.accepted, "the request in flight was allowed to finish"
        first = {h.headers["x-cti-delivery"] for h in slow.accepted}
        finish(lab)
        again = AgentProcess(agent.config, agent.listen, agent.log).start()
        time.sleep(3.0)
        again.terminate()
    finally:
        agent.close()
        slow.stop()
    keys = [h.headers["x-cti-delivery"] for h in slow.accepted]
    assert len(keys) == len(set(keys)), "what finished before SIGTERM is not sent again"
    assert first <= set(keys)


def test_rule_that_raises_or_loops_is_logged_and_the_next_call_still_pops(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    rule = tmp_path / "rule.py"
    rule.write_text(
        "def on_call(call, cti):\n"
        "    if call.caller.endswith('06'):\n"
        "        raise RuntimeError('directory says no')\n"
        "    if call.caller.endswith('07'):\n"
        "        while True:\n"
        "            pass\n"
        "    cti.open_request_form(phone=call.caller_e164, ok='да')\n",
        encoding="utf-8",
    )
    data = lab_config(lab, tmp_path, receiver.url, rule={"trigger": "answer", "script": str(rule),
                                                         "timeout": 0.5})  # fmt: skip
    phones(lab)
    agent = start_agent(tmp_path, data)
    try:
        for caller in ("+79165550106", "+79165550107", "+79165550108"):
            lab.call("101", caller=caller, caller_name="Тест", talk=0.5)
            receiver.wait(lambda c=caller: receiver.of("screen_pop", caller=c), 30, caller)
            finish(lab)
    finally:
        agent.terminate()
    log = agent.text()
    assert f"{rule}:3: RuntimeError: directory says no" in log
    assert f"{rule}:5" in log or f"{rule}:6" in log
    assert "did not finish within 0.5 s" in log
    raised = receiver.of("screen_pop", caller="+79165550106")[0].json
    assert raised["open"] == [{"type": "request_form",
                               "fields": {"phone": "+79165550106", "caller_name": "Тест"}}]
    good = receiver.of("screen_pop", caller="+79165550108")[0].json
    assert good["open"] == [{"type": "request_form",
                             "fields": {"phone": "+79165550108", "ok": "да"}}]  # fmt: skip


def test_disabled_agent_holds_no_connection_and_enable_takes_effect_live(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    data = lab_config(lab, tmp_path, receiver.url)
    data["enabled"] = False
    path = tmp_path / "cti.toml"
    write_config(path, data)
    agent = AgentProcess(path, data["agent"]["listen"], tmp_path / "agent.log").start()
    try:
        agent.wait_log("integration disabled")
        code, body = agent.health()
        assert code == 503 and body["status"] == "degraded" and body["enabled"] is False
        assert "connecting to AMI" not in agent.text()
        data["enabled"] = True
        write_config(path, data)
        started = time.monotonic()
        agent.wait_healthy(10)
        assert time.monotonic() - started < 4.0
        phones(lab)
        caller = "+79165550109"
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=0.5)
        receiver.wait(lambda: receiver.of("screen_pop", caller=caller), 30, "screen_pop")
        finish(lab)
        # an invalid edit keeps the running config and says where the problem is
        path.write_text(path.read_text() + "\n[agent2]\nx = 1\n", encoding="utf-8")
        agent.wait_log("agent2: unknown key")
        assert agent.health()[0] == 200
    finally:
        assert agent.terminate() == 0
    assert lab.info.ami_secret not in agent.text()
    assert SECRET not in agent.text()


def test_asterisk_restart_agent_reconnects_ends_lost_calls_and_pops_the_next(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    phones(lab)
    agent = start_agent(tmp_path, lab_config(lab, tmp_path, receiver.url))
    try:
        caller = "+79165550110"
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=30.0)
        receiver.wait(lambda: receiver.of("screen_pop", caller=caller), 30, "screen_pop")
        lab.stop_asterisk(kill=True)  # a crash: the call dies with it, unseen by the agent
        time.sleep(1.0)
        lab.start_asterisk()
        back = time.monotonic()
        agent.wait_healthy(15)
        recovery = time.monotonic() - back
        assert recovery < 5.0, "back within 5 s of AMI returning"
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 10, "lost call.ended")
        ended = receiver.of("call.ended", caller=caller)[0].json
        assert ended["reason"] == "lost"
        assert ended["answered_by"] == ["101"]
        phones(lab)
        nxt = "+79165550111"
        lab.call("101", caller=nxt, caller_name="Мария", talk=0.5)
        receiver.wait(lambda: receiver.of("screen_pop", caller=nxt), 30, "next screen_pop")
        finish(lab)
    finally:
        agent.terminate()
    record(recovery_s=round(recovery, 1), lost_calls_ended=1,
           pops_delivered=len(receiver.of("screen_pop", caller=nxt)))  # fmt: skip


def test_ami_outage_call_answered_meanwhile_is_tracked_and_popped_once(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    """The call rings 101 before the outage and is answered during it: after reconnecting the
    agent attaches mid-call, pops 101 once, and follows the call to its normal end."""
    cutter = Proxy(lab.info.ami_port)  # an AMI outage while Asterisk and its calls carry on
    phones(lab, p101="noanswer")
    lab.phone("101", "answer", answer_after=3.0)
    data = lab_config(lab, tmp_path, receiver.url, host="127.0.0.1", port=cutter.port)
    agent = start_agent(tmp_path, data)
    try:
        caller = "+79165550112"
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=10.0)
        receiver.wait(lambda: receiver.of("call.ringing", caller=caller), 20, "call.ringing")
        cutter.cut()
        time.sleep(4.0)  # 101 answers while the agent is cut off
        cutter.restore()
        receiver.wait(lambda: receiver.of("screen_pop", caller=caller), 20, "screen_pop")
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 20, "call.ended")
        finish(lab)
        time.sleep(0.5)
    finally:
        agent.terminate()
        cutter.close()
        lab.phone("101", "answer")
    assert len(receiver.of("screen_pop", caller=caller)) == 1
    assert len(receiver.of("call.ringing", caller=caller)) == 1, "not reported twice"
    ended = receiver.of("call.ended", caller=caller)[0].json
    assert ended["reason"] == "completed" and ended["answered_by"] == ["101"]
    assert "reconciled" in agent.text()


async def _attended_transfer(lab: Any) -> None:
    info = lab.info
    client = AMIClient()
    await client.connect(info.ami_host, info.ami_port, timeout=10)
    await client.login(info.ami_user, info.ami_secret, events=False)
    try:
        channel = await _wait_channel(client, "PJSIP/101-", "Up")
        await client.action("Atxfer", Channel=channel, Exten="103", Context="from-internal")
        await _wait_channel(client, "PJSIP/103-", "Up")
        await asyncio.sleep(0.5)
        await client.action("Hangup", Channel=channel)  # 101 hangs up: the transfer completes
    finally:
        await client.close()


async def _wait_channel(client: AMIClient, prefix: str, state: str) -> str:
    for _ in range(150):
        for item in await client.action_list("CoreShowChannels"):
            name = item.get("Channel", "")
            if name.startswith(prefix) and item.get("ChannelStateDesc") == state:
                return name
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {prefix}… channel in state {state}")


def test_attended_transfer_to_a_team_member_pops_the_target(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    phones(lab)
    agent = start_agent(tmp_path, lab_config(lab, tmp_path, receiver.url))
    try:
        caller = "+79165550102"
        lab.call("101", caller=caller, caller_name="Мария Сидорова", talk=12.0)
        asyncio.run(_attended_transfer(lab))
        receiver.wait(lambda: len(receiver.of("screen_pop", caller=caller)) >= 2, 30, "2 pops")
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 30, "call.ended")
        finish(lab)
    finally:
        agent.terminate()
    pops = receiver.of("screen_pop", caller=caller)
    assert [p.json["operator"]["login"] for p in pops] == ["ivanov", "petrova"]
    assert pops[1].json["open"][0]["employee"]["id"] == "E-102"
    assert receiver.of("call.transferred", caller=caller)
    ended = receiver.of("call.ended", caller=caller)[0].json
    assert "103" in ended["answered_by"]


def test_rule_that_skips_sends_no_pop_and_does_not_hold_up_the_call_events(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    rule = tmp_path / "skip.py"
    rule.write_text(
        "def on_call(call, cti):\n"
        "    if call.caller.endswith('14'):\n"
        "        cti.skip('internal test line')\n"
        "        return\n"
        "    cti.open_request_form(phone=call.caller_e164)\n",
        encoding="utf-8",
    )
    data = lab_config(lab, tmp_path, receiver.url, rule={"trigger": "answer", "script": str(rule)})
    phones(lab)
    agent = start_agent(tmp_path, data)
    try:
        skipped, popped = "+79165550114", "+79165550115"
        lab.call("101", caller=skipped, caller_name="", talk=0.5)
        receiver.wait(lambda: receiver.of("call.ended", caller=skipped), 30, "call.ended")
        finish(lab)
        lab.call("101", caller=popped, caller_name="", talk=0.5)
        receiver.wait(lambda: receiver.of("screen_pop", caller=popped), 30, "next pop")
        finish(lab)
    finally:
        agent.terminate()
    assert receiver.of("screen_pop", caller=skipped) == []
    assert [h.event for h in receiver.accepted if h.json.get("caller") == skipped] == [
        "call.ringing", "call.answered", "call.ended"
    ]  # fmt: skip
    assert "rule skipped the pop for ivanov (101): internal test line" in agent.text()


def test_one_agent_follows_two_pbxs_and_each_pop_names_its_pbx(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    """`[[servers]]`: one agent, two lab Asterisks. `"main:101"` (ivanov) counts only on
    `main`; the bare `"101"` (petrova, listed after) takes 101 on every other PBX."""
    from lab import Lab

    second = Lab.start()
    agent: AgentProcess | None = None
    try:
        data = lab_config(lab, tmp_path, receiver.url, teams=[
            {"name": "Первая линия",
             "members": [{"login": "ivanov", "name": "Иван Иванов", "extensions": ["main:101"]}]},
            {"name": "Вторая линия",
             "members": [{"login": "petrova", "name": "Анна Петрова", "extensions": ["101"]}]},
        ])  # fmt: skip
        del data["server"], data["agent"]["pbx"]
        data["servers"] = [
            {"name": name, "host": pbx.info.ami_host, "port": pbx.info.ami_port,
             "login": pbx.info.ami_user, "password": pbx.info.ami_secret}
            for name, pbx in (("main", lab), ("branch", second))
        ]  # fmt: skip
        phones(lab)
        phones(second)
        agent = start_agent(tmp_path, data)
        code, health = agent.health()
        assert code == 200, health
        assert [(s["pbx"], s["connected"]) for s in health["servers"]] == [
            ("main", True), ("branch", True)
        ]  # fmt: skip
        metrics = httpx.get(f"http://{agent.listen}/metrics", timeout=2).text
        assert 'cti_ami_connected{pbx="branch"} 1.0' in metrics

        on_main, on_branch = "+79165550201", "+79165550202"
        lab.call("101", caller=on_main, caller_name="Иван Петров", talk=1.0)
        second.call("101", caller=on_branch, caller_name="Мария Сидорова", talk=1.0)
        for caller in (on_main, on_branch):
            receiver.wait(lambda c=caller: receiver.of("call.ended", caller=c), 40, "call.ended")
        lab.wait_idle(40)
        second.wait_idle(40)
        time.sleep(0.5)  # anything late would arrive now
    finally:
        if agent is not None:
            agent.terminate()
        second.stop()
    main_pops = receiver.of("screen_pop", caller=on_main)
    branch_pops = receiver.of("screen_pop", caller=on_branch)
    assert [(p.json["pbx"], p.json["operator"]["login"]) for p in main_pops] == [
        ("main", "ivanov")
    ]  # fmt: skip
    assert [(p.json["pbx"], p.json["operator"]["login"]) for p in branch_pops] == [
        ("branch", "petrova")
    ], "main:101 pops only for calls on main"  # fmt: skip
    for caller, pbx in ((on_main, "main"), (on_branch, "branch")):
        mine = [h for h in receiver.accepted if h.json.get("call", h.json).get("caller") == caller]
        assert mine and {h.json["pbx"] for h in mine} == {pbx}, "every event names its PBX"
        assert [h.event for h in mine][-1] == "call.ended"
    keys = [h.headers["x-cti-delivery"] for h in receiver.accepted]
    assert len(keys) == len(set(keys))


def _ami_event_counts(agent: AgentProcess) -> dict[str, int]:
    """`cti_ami_events_total` by event name: every event the agent received, read or not."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://{agent.listen}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "cti_ami_events":
            return {s.labels["event"]: int(s.value) for s in family.samples
                    if s.name == "cti_ami_events_total"}  # fmt: skip
    return {}


@pytest.mark.parametrize("user", ["all", "nosystem"])
def test_asterisk_sends_only_the_events_the_agent_reads_when_its_user_may_filter(
    lab: Any, tmp_path: Path, receiver: Receiver, user: str
) -> None:
    """With `write = system` the agent installs AMI event filters: Asterisk 22 never sends the
    VarSet/Newexten/DeviceStateChange flood of a call. Without it, Asterisk refuses them, the
    agent says so once and reads (and drops) every event itself. Either way the call pops."""
    caller = "+79165550109" if user == "all" else "+79165550108"
    phones(lab, p101="answer", p102="noanswer")
    data = lab_config(lab, tmp_path, receiver.url)
    if user == "nosystem":
        data["server"].update(login=lab.info.ami_nosystem_user,
                              password=lab.info.ami_nosystem_secret)  # fmt: skip
    agent = start_agent(tmp_path, data)
    try:
        lab.call("200", caller=caller, caller_name="Иван Петров", talk=1.0)
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 40, "call.ended")
        finish(lab)
        counts = _ami_event_counts(agent)
        log = agent.text()
        filters = agent.health()[1]["servers"][0]["event_filters"]
    finally:
        agent.terminate()
    assert len(receiver.of("screen_pop", caller=caller)) == 1
    noise = {name: n for name, n in counts.items()
             if name in ("VarSet", "Newexten", "DeviceStateChange")}  # fmt: skip
    assert counts.get("Newchannel", 0) >= 3 and counts.get("Hangup", 0) >= 3, counts
    if user == "all":
        assert "Asterisk sends only the 31 kinds of events the agent reads" in log, log[-2000:]
        assert not noise, f"Asterisk still sent events nobody reads: {noise}"
        assert filters is True  # /healthz says so
    else:
        assert "reading every event and dropping the unread ones here" in log, log[-2000:]
        assert "Permission denied" in log and "write = system" in log
        assert noise.get("VarSet", 0) > 10, counts
        assert filters is False
