"""Running under systemd: the unit verifies, secrets come from credential files or the
environment (list items included), and the agent logs JSON lines when asked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cti_cli.config import ConfigError, load
from tests.agent_support import AgentProcess, free_port, write_config

UNIT = Path(__file__).parent.parent / "deploy" / "cti-agent.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_unit_file_verifies(tmp_path: Path) -> None:
    cti = Path(sys.executable).with_name("cti")
    unit = tmp_path / "cti-agent.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/cti", str(cti)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = UNIT.read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=cti",
                 "LoadCredential=ami-password:", "Restart=on-failure"):  # fmt: skip
        assert line in text


def test_secrets_from_credential_files_and_list_items_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "ami-password").write_text("пароль-AMI\n")
    (creds / "hook").write_text("hook-secret\n")
    path = tmp_path / "cti.toml"
    write_config(path, {
        "server": {"host": "pbx", "login": "cti",
                   "password_file": "${CREDENTIALS_DIRECTORY}/ami-password"},
        "webhooks": [{"url": "https://a.example/x", "secret_file": "${CREDENTIALS_DIRECTORY}/hook"},
                     {"url": "https://b.example/x"}],
    })  # fmt: skip
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("CTI_WEBHOOKS__1__SECRET", "from-env")
    config = load(path)
    assert config.server.password.get_secret_value() == "пароль-AMI"
    assert [w.secret.get_secret_value() for w in config.webhooks] == ["hook-secret", "from-env"]
    assert [w.url for w in config.webhooks] == ["https://a.example/x", "https://b.example/x"]

    monkeypatch.setenv("CTI_WEBHOOKS__7__SECRET", "x")
    with pytest.raises(ConfigError, match=r"CTI_WEBHOOKS__7__SECRET: cti.toml has no webhooks\[7\] "
                       r"to change \(environment\); it lists 2,"):  # fmt: skip
        load(path)
    monkeypatch.delenv("CTI_WEBHOOKS__7__SECRET")
    (creds / "ami-password").unlink()
    with pytest.raises(ConfigError, match=r"server.password_file: cannot read .*ami-password"):
        load(path)
    os.mkfifo(creds / "ami-password")
    with pytest.raises(ConfigError, match="is not a regular file"):
        load(path)


def test_agent_logs_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "cti.toml"
    listen = f"127.0.0.1:{free_port()}"
    write_config(path, {"agent": {"listen": listen, "state_dir": str(tmp_path / "s")}})
    agent = AgentProcess(path, listen, tmp_path / "agent.log")
    env_args = ["--log-format", "json"]
    proc_env = {**os.environ, "CTI_CONFIG": str(path)}
    log = (tmp_path / "agent.log").open("ab")
    agent.proc = subprocess.Popen([sys.executable, "-m", "cti_cli", "agent", *env_args],
                                  stdout=log, stderr=log, env=proc_env)  # fmt: skip
    log.close()
    try:
        agent.wait_log("integration disabled")
    finally:
        assert agent.terminate() == 0
    lines = [json.loads(line) for line in agent.text().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    assert any("integration disabled" in e["message"] for e in lines)
