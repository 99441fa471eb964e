"""Faults on the real lab, each run against `cti watch --json` and `cti agent` at once: the AMI
password changed under them, Asterisk stalled (SIGSTOP) and SIGKILLed mid-call, a slow
service desk, the agent's config replaced by invalid TOML. What a user would see is checked
(one-line diagnoses, /healthz, the next call shown and popped) and what was measured is kept
for docs/reliability.md (tests/fault_support.record)."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cti_cli import config as cfg
from tests.agent_support import AgentProcess, Receiver, write_config
from tests.fault_support import (
    WatchProcess,
    add_ami_user,
    kick_ami_user,
    peak_rss_mib,
    record,
    remove_ami_user,
    set_ami_secret,
)
from tests.test_agent_lab import finish, lab_config, phones, start_agent

pytestmark = pytest.mark.lab

DELAY = re.compile(r"reconnecting in (\d+(?:\.\d+)?) s")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def watch_config(tmp_path: Path, lab: Any, user: str, secret: str, **server: Any) -> Path:
    path = tmp_path / "watch.toml"
    cfg.save(path, cfg.Config.model_validate({
        "server": {"host": lab.info.ami_host, "port": lab.info.ami_port, "login": user,
                   "password": secret, **server},
    }))  # fmt: skip
    return path


def counters(agent: AgentProcess, family: str, label: str) -> dict[str, int]:
    """`cti_<family>_total` from the agent's /metrics, by `label`."""
    text = httpx.get(f"http://{agent.listen}/metrics", timeout=5).text
    for found in text_string_to_metric_families(text):
        if found.name == family:
            return {s.labels[label]: int(s.value) for s in found.samples
                    if s.name == f"{family}_total"}  # fmt: skip
    return {}


def pop_counts(receiver: Receiver, callers: list[str]) -> dict[str, int]:
    """Pops delivered / lost (a caller without one) / duplicated (a key seen twice)."""
    keys = [h.headers["x-cti-delivery"] for h in receiver.accepted if h.event == "screen_pop"]
    got = [c for c in callers if receiver.of("screen_pop", caller=c)]
    return {"pops_delivered": len(got), "pops_lost": len(callers) - len(got),
            "pops_duplicated": len(keys) - len(set(keys))}  # fmt: skip


def test_ami_password_changed_under_watch_and_agent_is_diagnosed_backed_off_and_recovered(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    """manager.conf gets new secrets and the sessions are kicked: both say in one line that the
    password was changed, retry ever more slowly, the agent's /healthz says why; `watch` logs in
    again once the old secret is back, the agent once its config has the new one (re-read live),
    and the next call is shown and popped."""
    tag = secrets.token_hex(3)
    w_user, a_user = f"cti-w-{tag}", f"cti-a-{tag}"
    old_w, old_a, new_a = (secrets.token_urlsafe(12) for _ in range(3))
    add_ami_user(lab, w_user, old_w)
    add_ami_user(lab, a_user, old_a)
    watch = agent = None
    try:
        phones(lab)
        data = lab_config(lab, tmp_path, receiver.url)
        data["server"].update(login=a_user, password=old_a)
        agent = start_agent(tmp_path, data)
        watch = WatchProcess(watch_config(tmp_path, lab, w_user, old_w), "--json")
        watch.wait_connected()

        set_ami_secret(lab, w_user, "changed-" + secrets.token_urlsafe(8))
        set_ami_secret(lab, a_user, new_a)
        changed = time.monotonic()
        assert kick_ami_user(lab, w_user) == 1 and kick_ami_user(lab, a_user) == 1
        agent.wait_log(f"AMI user '{a_user}'", 15)
        watch.err.wait(lambda line: "was the AMI password changed" in line, 15, changed)
        time.sleep(10.0)  # retrying meanwhile: how often?
        code, health = agent.health()
        assert code == 503 and health["status"] == "degraded"
        assert "was the AMI password changed in Asterisk's manager.conf?" in health["reason"]
        assert f"fix server.password in {agent.config}" in health["reason"]

        # the agent: its config gets the new password; it re-reads it and logs in at once
        data["server"]["password"] = new_a
        write_config(agent.config, data)
        fixed = time.monotonic()
        agent.wait_healthy(15)
        agent_back = time.monotonic() - fixed
        # watch: the old secret comes back in Asterisk; its next retry logs in
        set_ami_secret(lab, w_user, old_w)
        restored = time.monotonic()
        watch_back = watch.wait_connected(70, restored) - restored

        caller = "+79165550401"
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=0.5)
        receiver.wait(lambda: receiver.of("screen_pop", caller=caller), 30, "next screen_pop")
        watch.wait_event(caller, "ended", 30)
        finish(lab)
        rss = peak_rss_mib(agent.proc.pid) if agent.proc else None
    finally:
        code = watch.interrupt() if watch is not None else 0
        if agent is not None:
            agent.terminate()
        remove_ami_user(lab, w_user)
        remove_ami_user(lab, a_user)
    log, err = agent.text(), watch.err.text()
    assert code == 0
    for text in (log, err, watch.out.text()):
        assert "Traceback" not in text
        for secret in (old_w, old_a, new_a):
            assert secret not in text
    # one line each, naming the user and saying what to do
    refused = [line for line in err.splitlines() if "authentication failed" in line]
    assert refused and all(
        f"authentication failed for AMI user '{w_user}'" in line
        and "was the AMI password changed" in line and "fix server.password (cti configure)" in line
        for line in refused
    ), refused
    # growing backoff, not a retry every second (the agent starts at 0.5 s, watch at 1 s)
    a_lines = log.splitlines()
    start = next(i for i, line in enumerate(a_lines) if f"AMI user '{a_user}'" in line)
    upto = next(i for i, line in enumerate(a_lines) if "config reloaded" in line)
    a_delays = [float(m[1]) for line in a_lines[start:upto] if (m := DELAY.search(line))]
    w_delays = [float(m[1]) for at, line in watch.err.timed()
                if changed <= at < restored and (m := DELAY.search(line))]  # fmt: skip
    for delays in (a_delays, w_delays):
        assert len(delays) >= 3, (a_delays, w_delays, log[-3000:], err)
        assert all(b > a for a, b in itertools.pairwise(delays)), delays
    a_failures = sum(f"AMI user '{a_user}'" in line for line in a_lines[start:upto])
    assert a_failures <= 6, f"{a_failures} logins in ~12 s"
    assert agent_back < 5.0, "the agent logs in within 5 s of its config being fixed"
    assert watch_back < 1.2 * max(w_delays) + 5.0
    assert len(receiver.of("screen_pop", caller=caller)) == 1
    record(
        agent_recovery_s=round(agent_back, 1), watch_recovery_s=round(watch_back, 1),
        agent_retry_delays_s=a_delays, watch_retry_delays_s=w_delays,
        **pop_counts(receiver, [caller]), peak_rss_mib=rss,
    )  # fmt: skip


def test_stalled_asterisk_is_found_dead_within_two_ping_intervals_by_watch_and_agent(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    """Asterisk stopped (SIGSTOP: sockets stay open, nothing answers): the keepalive Ping
    (every 20 s, answered within server.timeout) finds it dead; both reconnect once it runs
    again and the next call is shown and popped."""
    from cti_cli.ami.reconnect import ConnectParams

    interval = ConnectParams("h", 1, "u", "p").ping_interval
    assert interval is not None
    phones(lab)
    data = lab_config(lab, tmp_path, receiver.url)
    data["server"]["timeout"] = 3.0
    agent = start_agent(tmp_path, data)
    watch = WatchProcess(watch_config(tmp_path, lab, lab.info.ami_user, lab.info.ami_secret,
                                      timeout=3.0), "--json")  # fmt: skip
    pid = lab.asterisk.pid
    stopped = False
    try:
        watch.wait_connected()
        time.sleep(1.0)
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        stalled = time.monotonic()
        agent.wait_log("did not answer", 2 * interval + 5)
        agent_found = time.monotonic() - stalled
        watch_found = watch.err.wait(lambda line: "error:" in line, 2 * interval + 5, stalled)
        watch_found -= stalled
        assert agent.health()[0] == 503
        os.kill(pid, signal.SIGCONT)
        stopped = False
        resumed = time.monotonic()
        agent.wait_healthy(40)
        agent_back = time.monotonic() - resumed
        watch_back = watch.wait_connected(40, resumed) - resumed
        caller = "+79165550402"
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=0.5)
        receiver.wait(lambda: receiver.of("screen_pop", caller=caller), 30, "next screen_pop")
        watch.wait_event(caller, "ended", 30)
        finish(lab)
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        code = watch.interrupt()
        agent.terminate()
    assert code == 0 and "Traceback" not in watch.err.text() + agent.text()
    assert agent_found < 2 * interval, f"found after {agent_found:.1f} s"
    assert watch_found < 2 * interval, f"found after {watch_found:.1f} s"
    record(
        ping_interval_s=interval, agent_detected_s=round(agent_found, 1),
        watch_detected_s=round(watch_found, 1), agent_recovery_s=round(agent_back, 1),
        watch_recovery_s=round(watch_back, 1), **pop_counts(receiver, [caller]),
    )  # fmt: skip


def test_asterisk_killed_mid_call_watch_ends_it_lost_and_shows_the_next(
    lab: Any, tmp_path: Path
) -> None:
    """SIGKILL while a call talks: no Hangup ever comes; after Asterisk is back `watch` ends
    the call as lost (reconcile) and shows the next one."""
    phones(lab)
    watch = WatchProcess(watch_config(tmp_path, lab, lab.info.ami_user, lab.info.ami_secret),
                         "--json")  # fmt: skip
    try:
        watch.wait_connected()
        caller, nxt = "+79165550403", "+79165550404"
        lab.call("101", caller=caller, caller_name="Мария", talk=30.0)
        watch.wait_event(caller, "answered", 30)
        lab.stop_asterisk(kill=True)
        killed = time.monotonic()
        time.sleep(1.0)
        lab.start_asterisk()
        back = time.monotonic()
        watch_back = watch.wait_connected(70, back) - back
        ended = watch.wait_event(caller, "ended", 10)
        lab.call("101", caller=nxt, caller_name="Пётр", talk=0.5)
        watch.wait_event(nxt, "ended", 30)
        finish(lab)
        rss = peak_rss_mib(watch.proc.pid)
    finally:
        code = watch.interrupt()
    assert code == 0 and "Traceback" not in watch.err.text()
    assert ended["reason"] == "lost" and ended["answered_by"] == ["101"]
    assert [e["event"] for e in watch.of(caller)].count("ended") == 1
    assert watch.of(nxt)[-1]["reason"] != "lost"
    record(outage_s=round(back - killed, 1), watch_recovery_s=round(watch_back, 1),
           lost_calls_ended=1, peak_rss_mib=rss)  # fmt: skip


def test_slow_service_desk_gets_every_pop_once_in_order_and_the_calls_keep_flowing(
    lab: Any, tmp_path: Path
) -> None:
    """The receiver takes 2 s per request, and 3 s (past the 1 s webhook timeout) for the
    first 8 s: pops and call events of calls in quick succession all arrive, in order per
    call; what timed out comes again with the same key; AMI is never dropped."""
    slow_until = time.time() + 8.0

    def status(hit: Any) -> int:
        time.sleep(3.0 if hit.at < slow_until else 2.0)
        return 200

    receiver = Receiver(status=status).start()
    phones(lab)
    data = lab_config(lab, tmp_path, receiver.url)
    data["webhooks"][0]["timeout"] = 2.5
    callers = [f"+7916555041{i}" for i in range(4)]
    agent = start_agent(tmp_path, data)
    try:
        slow_until = time.time() + 8.0
        for caller in callers:
            lab.call("101", caller=caller, caller_name="Иван Петров", talk=0.5)
            time.sleep(1.5)
        finish(lab)
        for caller in callers:
            receiver.wait(lambda c=caller: receiver.of("call.ended", caller=c), 90, caller)
        events = sum(counters(agent, "cti_ami_events", "event").values())
        outcomes = counters(agent, "cti_pops", "outcome")
        rss = peak_rss_mib(agent.proc.pid) if agent.proc else None
    finally:
        agent.terminate()
        receiver.stop()
    log = agent.text()
    assert "reconnecting" not in log, "a slow desk never costs the AMI connection"
    assert "Traceback" not in log
    for caller in callers:
        story = [h.event for h in receiver.accepted if h.json.get("call", h.json).get("caller")
                 == caller]  # fmt: skip
        seen = list(dict.fromkeys(story))  # a retried key counts once
        assert seen == ["call.ringing", "screen_pop", "call.answered", "call.ended"], story
    bodies: dict[str, set[bytes]] = {}
    for hit in receiver.accepted:
        bodies.setdefault(hit.headers["x-cti-delivery"], set()).add(hit.body)
    assert all(len(b) == 1 for b in bodies.values()), "a key sent again is the same message"
    timed_out = sum("timed out after" in line and "will retry" in line for line in log.splitlines())
    assert timed_out >= 1, "the first requests met the timeout"
    assert outcomes.get("delivered") == len(callers) and not outcomes.get("dead"), outcomes
    keys = [h.headers["x-cti-delivery"] for h in receiver.accepted]
    record(
        calls=len(callers), webhook_timeouts=timed_out, ami_events=events,
        same_key_redeliveries=len(keys) - len(set(keys)),
        **pop_counts(receiver, callers), peak_rss_mib=rss,
    )  # fmt: skip


def test_config_replaced_by_invalid_toml_keeps_the_running_config_and_pops(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    """An editor saves a half-written file over the config (a new inode, invalid TOML): the
    agent logs where the problem is, stays healthy on the last good config and pops; the
    fixed file is picked up."""
    phones(lab)
    data = lab_config(lab, tmp_path, receiver.url)
    agent = start_agent(tmp_path, data)
    try:
        broken = agent.config.with_name("cti.toml.new")
        broken.write_text('enabled = true\n[server\nhost = "127.0.0.1"\n', encoding="utf-8")
        broken.chmod(0o600)
        os.replace(broken, agent.config)
        agent.wait_log("previous config keeps running", 10)
        assert agent.health()[0] == 200
        caller = "+79165550420"
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=0.5)
        receiver.wait(lambda: receiver.of("screen_pop", caller=caller), 30, "screen_pop")
        finish(lab)
        data["rule"]["timeout"] = 1.5  # fixed, and changed: a reload says so
        write_config(agent.config, data)
        agent.wait_log("config reloaded", 10)
        assert agent.health()[0] == 200
    finally:
        agent.terminate()
    log = agent.text()
    problem = next(line for line in log.splitlines() if "previous config keeps running" in line)
    assert str(agent.config) in problem and "line 2" in problem, problem
    assert "Traceback" not in log and "reconnecting" not in log
    record(**pop_counts(receiver, [caller]))
