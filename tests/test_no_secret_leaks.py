"""No command shows a secret: the AMI password and a webhook secret are in the config, and the
main commands — configure, show, show --json, enable (wrong host), watch (nothing there),
replay, rule test — are run as a user runs them; neither secret is in any stdout or stderr."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cti_cli import config as cfg

CTI = Path(sys.executable).with_name("cti")
TRANSCRIPT = Path(__file__).parent / "transcripts" / "ast18_queue_answered.ami"
PASSWORD = "Pa55-sekret-Ω-7f3a"
WEBHOOK_SECRET = "whsec-9d8c7b6a5f4e"

pytestmark = pytest.mark.timeout(120)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    return {**clean, "COLUMNS": "200"}


def run(conf: Path, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([str(CTI), "--config", str(conf), *args], input=stdin,
                          capture_output=True, text=True, encoding="utf-8", env=env(),
                          timeout=60, check=False)  # fmt: skip
    return proc.stdout + proc.stderr


def run_briefly(conf: Path, *args: str, seconds: float = 2.5) -> str:
    """A long-running command (watch), interrupted like Ctrl-C after a while."""
    proc = subprocess.Popen([str(CTI), "--config", str(conf), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env())  # fmt: skip
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    return (out + err).decode("utf-8", "replace")


def test_no_command_prints_a_secret(tmp_path: Path) -> None:
    conf = tmp_path / "cti.toml"
    outputs: dict[str, str] = {}
    port = str(closed_port())
    outputs["configure"] = run(
        conf, "configure", "--host", "127.0.0.1", "--port", port, "--login", "cti",
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert cfg.load_file(conf).server.password.get_secret_value() == PASSWORD
    config = cfg.load_file(conf)
    config.webhooks.append(cfg.Webhook(url="https://sd.example.org/cti", secret=WEBHOOK_SECRET))
    cfg.save(conf, config)
    outputs["teams add"] = run(conf, "teams", "add", "Support")
    outputs["teams member"] = run(conf, "teams", "member", "Support", "--login", "ivanov",
                                  "--ext", "101", "--ext", "102")  # fmt: skip
    outputs["show"] = run(conf, "show")
    outputs["show --json"] = run(conf, "show", "--json")
    outputs["enable (closed port)"] = run(conf, "enable", "--timeout", "2")
    outputs["configure bad"] = run(conf, "configure", "--password-stdin",
                                   stdin=PASSWORD + "\rx\n")  # fmt: skip
    outputs["watch --json"] = run_briefly(conf, "watch", "--json")
    outputs["watch"] = run_briefly(conf, "watch")
    outputs["watch --events"] = run_briefly(conf, "watch", "--events")
    outputs["replay"] = run(conf, "replay", str(TRANSCRIPT))
    outputs["replay --json"] = run(conf, "replay", str(TRANSCRIPT), "--json")
    outputs["rule test"] = run(conf, "rule", "test", str(TRANSCRIPT))
    outputs["rule test --json"] = run(conf, "rule", "test", str(TRANSCRIPT), "--json")
    outputs["configure unresolvable"] = run(conf, "configure", "--host", "pbx.invalid")
    outputs["enable (unresolvable)"] = run(conf, "enable", "--timeout", "2")

    assert "••••••" in outputs["show"] and '"password": "••••••"' in outputs["show --json"]
    assert "cannot enable" in outputs["enable (closed port)"]
    assert "cannot enable" in outputs["enable (unresolvable)"]
    assert "pop(s) would be sent" in outputs["rule test"]
    assert "reconnecting" in outputs["watch --json"]
    for name, text in outputs.items():
        for secret in (PASSWORD, WEBHOOK_SECRET):
            assert secret not in text, f"{name} printed a secret:\n{text}"
