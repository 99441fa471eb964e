"""The agent fitting what admins run: Zammad's Generic CTI API and Prometheus, on the real lab.

The Zammad receiver checks every request the way Zammad's CTI controller does (token in the
path, JSON, `event`/`from`/`to`/`direction`/`callId`, newCall before answer and hangup, one of
each per call, a documented hangup cause) and answers like it (`{}`, or `{"action":"reject"}`
for a blocked caller).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.agent_support import SECRET, Receiver
from tests.test_agent_lab import finish, lab_config, phones, start_agent

pytestmark = pytest.mark.lab

TOKEN = "PhXp3ZG63QyJfcb1pVOnBKJWIbI"
CAUSES = {"normalClearing", "busy", "cancel", "noAnswer", "congestion", "notFound", "forwarded"}
BLOCKED = "+79165550299"


@dataclass
class Zammad:
    """A Generic CTI endpoint that validates like Zammad's Integration::CtiController."""

    calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/cti/{TOKEN}"

    def start(self) -> Zammad:
        zammad = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                code, answer = zammad.handle(self.path, self.headers.get("Content-Type", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def handle(self, path: str, ctype: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if path != f"/api/v1/cti/{TOKEN}":
            return 401, {"error": "Invalid token, please contact your admin!"}
        if not ctype.startswith("application/json"):
            self.problems.append(f"content type {ctype}")
            return 422, {"error": "not JSON"}
        params = json.loads(body)
        for key in ("event", "from", "to", "direction", "callId"):
            if not isinstance(params.get(key), str):
                self.problems.append(f"{key} missing in {params}")
        if params.get("direction") not in ("in", "out"):
            return 422, {"error": "Invalid direction!"}
        call_id = params.get("callId", "")
        if not call_id or len(call_id) > 250:
            self.problems.append(f"bad callId {call_id!r}")
        event = params.get("event")
        with self._lock:
            seen = self.calls.setdefault(call_id, [])
            names = [e["event"] for e in seen]
            if event == "newCall" and names:
                self.problems.append(f"second newCall for {call_id}")
            if event in ("answer", "hangup") and "newCall" not in names:
                self.problems.append(f"{event} before newCall for {call_id}")
            if event in names:
                self.problems.append(f"{event} twice for {call_id}")
            if event == "hangup" and params.get("cause") not in CAUSES:
                self.problems.append(f"undocumented cause {params.get('cause')}")
            if event == "newCall" and not isinstance(params.get("user"), list):
                self.problems.append("newCall without user[]")
            seen.append(params)
        if event == "newCall" and params.get("from") == BLOCKED:
            return 200, {"action": "reject", "reason": "busy"}
        return 200, {}

    def of(self, caller: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for events in self.calls.values() for e in events if e["from"] == caller]


@pytest.fixture
def zammad() -> Iterator[Zammad]:
    server = Zammad().start()
    yield server
    server.stop()


def test_zammad_gets_its_own_events_with_the_right_causes_and_prometheus_counts_them(
    lab: Any, tmp_path: Path, zammad: Zammad
) -> None:
    receiver = Receiver().start()
    data = lab_config(lab, tmp_path, receiver.url)
    data["webhooks"].append({"url": zammad.url, "format": "zammad"})
    agent = start_agent(tmp_path, data)
    try:
        phones(lab, p101="answer")
        lab.call("101", caller="+79165550201", caller_name="Иван Петров", talk=1.0)
        finish(lab)
        phones(lab, p101="noanswer")
        lab.call("111", caller="+79165550202", caller_name="", talk=1.0)  # 4 s ring, missed
        finish(lab)
        phones(lab, p101="noanswer", p102="noanswer")
        lab.call("200", caller="+79165550203", caller_name="Пётр", cancel_after=2.0)
        finish(lab)
        phones(lab, p101="decline")
        lab.call("101", caller="+79165550204", caller_name="", talk=1.0)
        finish(lab)
        phones(lab, p101="busy")
        lab.call("101", caller="+79165550205", caller_name="", talk=1.0)
        finish(lab)
        phones(lab, p101="answer")
        lab.call("101", caller=BLOCKED, caller_name="Спам", talk=0.5)
        finish(lab)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
            len(zammad.of("+79165550204")) == 2 and len(zammad.of(BLOCKED)) == 3
        ):
            time.sleep(0.1)
        metrics = httpx.get(f"http://{data['agent']['listen']}/metrics", timeout=5).text
    finally:
        agent.terminate()
        receiver.stop()
    assert zammad.problems == []

    def story(caller: str) -> list[tuple[str, Any]]:
        return [(e["event"], e.get("cause") or e.get("answeringNumber")) for e in zammad.of(caller)]

    assert story("+79165550201") == [
        ("newCall", None), ("answer", "ivanov"), ("hangup", "normalClearing")
    ]  # fmt: skip
    answered = zammad.of("+79165550201")
    assert answered[0]["user"] == ["Иван Иванов"] and answered[0]["to"] == "101"
    assert answered[0]["direction"] == "in"
    assert answered[1]["user"] == "Иван Иванов"
    assert story("+79165550202") == [("newCall", None), ("hangup", "noAnswer")]
    assert story("+79165550203") == [("newCall", None), ("hangup", "cancel")]
    assert zammad.of("+79165550203")[0]["queue"] == "support"
    assert story("+79165550204") == [("newCall", None), ("hangup", "busy")]
    assert story("+79165550205") == [], "a phone busy at once never rang: Zammad is not told"
    # Zammad's own events only: no screen_pop or lifecycle JSON reached it
    assert {e["event"] for events in zammad.calls.values() for e in events} <= {
        "newCall", "answer", "hangup"
    }  # fmt: skip
    log = agent.text()
    assert "Zammad answered action 'reject'" in log
    assert TOKEN not in log, "Zammad's token (in the URL path) never reaches the log"

    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    assert families["cti_ami_connected"].samples[0].value == 1.0
    events = {s.labels["event"]: s.value for s in families["cti_ami_events"].samples
              if s.name == "cti_ami_events_total"}  # fmt: skip
    assert events["Newchannel"] >= 12 and events["Hangup"] >= 12
    # the lab's AMI user may set event filters: Asterisk never sent the noise (events the agent
    # drops unread itself are counted too: test_asterisk_sends_only_the_events_the_agent_reads…)
    assert events.get("VarSet", 0) == 0 and events.get("Newexten", 0) == 0
    pops = {s.labels["outcome"]: s.value for s in families["cti_pops"].samples
            if s.name == "cti_pops_total"}  # fmt: skip
    assert pops["delivered"] == 2 and pops["dead"] == 0 and pops["rule_error"] == 0
    latency = [s for s in families["cti_webhook_latency_seconds"].samples
               if s.name.endswith("_count")]  # fmt: skip
    assert {s.labels["webhook"] for s in latency} == {
        f"http://127.0.0.1:{receiver.port}", f"http://127.0.0.1:{zammad.port}"
    }  # fmt: skip
    assert families["cti_ami_logins"].samples[0].value >= 1
    assert "cti_rule_seconds" in families and "cti_outbox_depth" in families
    for secret in (TOKEN, SECRET, lab.info.ami_secret, "79165550201"):
        assert secret not in metrics


def _cti(config: Path, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "cti_cli", "--config", str(config), *args],
        capture_output=True, text=True, encoding="utf-8", timeout=30, check=False,
    )  # fmt: skip


def test_outbox_commands_on_an_outbox_a_refusing_receiver_filled(
    lab: Any, tmp_path: Path
) -> None:
    refusing = True
    receiver = Receiver(status=lambda hit: 410 if refusing else 200).start()
    data = lab_config(lab, tmp_path, receiver.url)
    agent = start_agent(tmp_path, data)
    config = tmp_path / "cti.toml"
    caller = "+79165550301"
    try:
        phones(lab)
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=0.5)
        finish(lab)
        agent.wait_log("call.ended")
        listed = _cti(config, "outbox", "list", "--dead", "--json")
        assert listed.returncode == 0, listed.stderr
        dead = [json.loads(line) for line in listed.stdout.splitlines()]
        events = [row["event"] for row in dead]
        assert "screen_pop" in events and events[-1] == "call.ended"
        assert all("HTTP 410" in row["last_error"] for row in dead)
        assert {row["webhook"] for row in dead} == {f"http://127.0.0.1:{receiver.port}"}
        human = _cti(config, "outbox", "list", "--dead")
        assert "HTTP 410" in human.stdout and "screen_pop" in human.stdout
        shown = _cti(config, "outbox", "show", str(dead[0]["id"]))
        assert json.loads(shown.stdout)["body"]["caller"] == caller
        assert _cti(config, "outbox", "list").stdout.strip() == "no pending deliveries"

        refusing = False
        again = _cti(config, "outbox", "retry", "--dead")
        assert again.returncode == 0 and f"{len(dead)} deliveries queued again" in again.stdout
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 10, "retried call.ended")
        got = [h.event for h in receiver.accepted]
        assert got == events, "retried in the original order"
        assert _cti(config, "outbox", "list", "--dead").stdout.strip() == "no dead deliveries"
        missing = _cti(config, "outbox", "retry", "999999")
        assert missing.returncode == 2 and "not a dead or expired delivery" in missing.stderr
    finally:
        agent.terminate()
        receiver.stop()
