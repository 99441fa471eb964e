"""`cti agent` and `cti rule` as a user meets them: clear one-line refusals, clean stops, dry runs.

These need no PBX: a disabled agent holds no AMI connection, and `cti rule test` reads a capture.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.agent_support import AgentProcess, free_port, write_config

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def base_config(tmp_path: Path, **agent: Any) -> dict[str, Any]:
    return {
        "enabled": False,
        "server": {"host": "127.0.0.1", "port": 5038, "login": "cti", "password": "pw-Секрет"},
        "teams": [{"name": "Поддержка", "members": [
            {"login": "smirnova", "name": "Ольга Смирнова", "extensions": ["102"]}]}],
        "agent": {"listen": f"127.0.0.1:{free_port()}", "state_dir": str(tmp_path / "state"),
                  **agent},
    }  # fmt: skip


def cti(config: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cti_cli", "--config", str(config), *args],
        capture_output=True, text=True, encoding="utf-8", timeout=timeout, check=False,
    )  # fmt: skip


def test_disabled_agent_says_so_answers_healthz_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    data = base_config(tmp_path)
    path = tmp_path / "cti.toml"
    write_config(path, data)
    agent = AgentProcess(path, data["agent"]["listen"], tmp_path / "agent.log").start()
    try:
        agent.wait_log("integration disabled")
        code, body = agent.health()
        assert code == 503
        assert body["status"] == "degraded" and body["reason"] == "integration disabled"
        assert body["ami"]["connected"] is False
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)  # re-read at once; still running, still healthy
        assert agent.health()[0] == 503
    finally:
        assert agent.terminate() == 0
    log = agent.text()
    assert log.count("integration disabled") == 1, "said once"
    assert "pw-Секрет" not in log
    assert (tmp_path / "state").stat().st_mode & 0o077 == 0, "state folder is private"


def test_invalid_config_refuses_to_start_with_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "cti.toml"
    path.write_text('[agent]\nlisten = "nowhere"\n', encoding="utf-8")
    result = cti(path, "agent")
    assert result.returncode == 2
    assert "cti.toml: agent.listen: must be HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_busy_listen_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        data = base_config(tmp_path, listen=f"127.0.0.1:{port}")
        path = tmp_path / "cti.toml"
        write_config(path, data)
        result = cti(path, "agent")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cti: cannot listen on 127.0.0.1:{port}:")
    assert "Traceback" not in result.stderr


def test_second_agent_on_the_same_state_dir_refuses(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    path = tmp_path / "cti.toml"
    write_config(path, data)
    first = AgentProcess(path, data["agent"]["listen"], tmp_path / "first.log").start()
    try:
        other = dict(data, agent={**data["agent"], "listen": f"127.0.0.1:{free_port()}"})
        path2 = tmp_path / "other.toml"
        write_config(path2, other)
        result = cti(path2, "agent")
        assert result.returncode == 1
        assert f"another cti agent (pid {first.proc.pid}) already uses" in result.stderr  # type: ignore[union-attr]
    finally:
        first.terminate()


def _rule_config(tmp_path: Path, rule: Path | None = None) -> Path:
    csv = tmp_path / "employees.csv"
    csv.write_text("id,name,phone,отдел\nE-1,Иван Петров,+31 6 12345678,Склад\n", encoding="utf-8")
    data = base_config(tmp_path)
    data["directory"] = {"source": f"csv:{csv}", "region": "NL"}
    if rule is not None:
        data["rule"] = {"script": str(rule)}
    path = tmp_path / "cti.toml"
    write_config(path, data)
    return path


def test_rule_test_shows_the_pop_for_the_answering_team_member(tmp_path: Path) -> None:
    path = _rule_config(tmp_path)
    result = cti(path, "rule", "test", str(TRANSCRIPTS / "ast18_queue_answered.ami"), "--json")
    assert result.returncode == 0, result.stderr
    pops = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(pops) == 1
    pop = pops[0]
    assert pop["operator"]["login"] == "smirnova" and pop["operator"]["extension"] == "102"
    assert pop["call"]["caller_e164"] == "+31612345678"
    assert pop["open"][0] == {
        "type": "employee_card",
        "employee": {"id": "E-1", "name": "Иван Петров", "phone": "+31 6 12345678",
                     "отдел": "Склад"},
    }  # fmt: skip
    human = cti(path, "rule", "test", str(TRANSCRIPTS / "ast18_queue_answered.ami"))
    assert human.returncode == 0
    assert "smirnova (102) ← 0612345678 \"Иван Петров\"" in human.stdout
    assert "1 pop(s) would be sent; nothing was sent" in human.stdout


def test_rule_test_with_a_broken_rule_names_its_line(tmp_path: Path) -> None:
    rule = tmp_path / "mine.py"
    rule.write_text("def on_call(call, cti):\n    cti.open_card(None)\n", encoding="utf-8")
    path = _rule_config(tmp_path, rule)
    result = cti(path, "rule", "test", str(TRANSCRIPTS / "ast18_queue_answered.ami"), "--json")
    assert result.returncode == 0
    assert f"{rule}:2: TypeError" in result.stderr
    assert json.loads(result.stdout)["open"][0]["type"] == "request_form"
    rule.write_text("def on_call(call, cti)\n", encoding="utf-8")
    result = cti(path, "rule", "test", str(TRANSCRIPTS / "ast18_queue_answered.ami"))
    assert result.returncode == 2
    assert f"{rule}:1:" in result.stderr and "Traceback" not in result.stderr


def test_rule_show_prints_the_built_in_rule(tmp_path: Path) -> None:
    result = cti(tmp_path / "none.toml", "rule", "show")
    assert result.returncode == 0
    assert "def on_call(call: Any, cti: Any) -> None:" in result.stdout
    compile(result.stdout, "rule", "exec")


def test_rule_test_missing_capture_is_one_line(tmp_path: Path) -> None:
    path = _rule_config(tmp_path)
    result = cti(path, "rule", "test", str(tmp_path / "nope.ami"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_webhooks_by_command_add_list_test_remove(tmp_path: Path) -> None:
    from tests.agent_support import SECRET, Receiver

    path = tmp_path / "cti.toml"
    write_config(path, base_config(tmp_path))
    receiver = Receiver().start()
    try:
        added = subprocess.run(
            [sys.executable, "-m", "cti_cli", "--config", str(path), "webhooks", "add",
             receiver.url, "--secret-stdin", "--events", "screen_pop,call.ended"],
            input=SECRET + "\n", capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        zammad = "https://sd.example.org/api/v1/cti/TOKEN123"
        assert cti(path, "webhooks", "add", zammad, "--format", "zammad").returncode == 0
        listed = cti(path, "webhooks", "list", "--json")
        hooks = json.loads(listed.stdout)
        assert hooks[0]["events"] == ["screen_pop", "call.ended"] and hooks[0]["secret"] == "••••••"
        assert hooks[1]["url"] == "https://sd.example.org/api/v1/cti/••••••"
        assert SECRET not in listed.stdout and "TOKEN123" not in cti(path, "show").stdout
        assert "TOKEN123" not in cti(path, "show", "--json").stdout
        pinged = cti(path, "webhooks", "test", "1")
        assert pinged.returncode == 0, pinged.stderr
        assert "HTTP 200" in pinged.stdout
        assert receiver.hits[-1].signature_ok and receiver.hits[-1].event == "ping"
        bad = cti(path, "webhooks", "add", "https://x.example/h", "--events", "screen-pop")
        assert bad.returncode == 2 and "did you mean 'screen_pop'?" in bad.stderr
        assert cti(path, "webhooks", "add", "ftp://x").returncode == 2
        pasted = cti(path, "webhooks", "add", zammad + "9 ", "--format", "zammad")
        assert pasted.returncode == 2 and "TOKEN123" not in pasted.stderr
        assert pasted.stderr.strip() == (
            'cti: url: must be an http:// or https:// URL (its port 1–65535), got '
            '"https://sd.example.org/••••••"')  # fmt: skip
        assert cti(path, "webhooks", "remove", zammad).returncode == 0
        assert len(json.loads(cti(path, "webhooks", "list", "--json").stdout)) == 1
        missing = cti(path, "webhooks", "remove", "7")
        assert missing.returncode == 2 and "no webhook '7'" in missing.stderr
    finally:
        receiver.stop()


def test_status_with_and_without_a_running_agent(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    path = tmp_path / "cti.toml"
    write_config(path, data)
    idle = json.loads(cti(path, "status", "--json").stdout)
    assert idle["agent"]["running"] is False and idle["enabled"] is False
    assert "not running" in cti(path, "status").stdout
    agent = AgentProcess(path, data["agent"]["listen"], tmp_path / "agent.log").start()
    try:
        running = json.loads(cti(path, "status", "--json").stdout)
    finally:
        agent.terminate()
    assert running["agent"]["running"] is True
    assert running["agent"]["reason"] == "integration disabled"
    assert running["outbox"]["pending"] == 0
