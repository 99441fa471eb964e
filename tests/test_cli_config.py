"""The admin page as commands: configure, teams, show, enable/disable — what an admin sees."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti_cli import config as cfg
from cti_cli.cli.app import _register, app

_register()

Run = Callable[..., "Result"]


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "cti.toml"


@pytest.fixture
def cti(conf: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    for name in list(os.environ):
        if name.startswith("CTI_"):
            monkeypatch.delenv(name)

    def run(*args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(app, ["--config", str(conf), *args], input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def rule(tmp_path: Path) -> Path:
    p = tmp_path / "incoming.py"
    p.write_text('# Правило: открыть карточку звонящего\ncard = caller["number"]\n', "utf-8")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_configure_flags_and_password_from_stdin(cti: Run, conf: Path, rule: Path) -> None:
    r = cti("configure", "--host", "pbx.example.org", "--port", "5039", "--login", "cti",
            "--password-stdin", "--tls", "--auth", "plain", "--rule", str(rule),
            "--trigger", "ring", input="Пароль-1\n")  # fmt: skip
    assert r.code == 0, r.err
    saved = cfg.load_file(conf)
    assert saved.server.host == "pbx.example.org"
    assert saved.server.port == 5039
    assert saved.server.tls is True
    assert saved.server.auth == "plain"
    assert saved.server.password.get_secret_value() == "Пароль-1"
    assert saved.rule.script == str(rule)
    assert saved.rule.trigger == "ring"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert "Пароль-1" not in r.out + r.err


def test_password_is_never_a_command_line_value(cti: Run, conf: Path) -> None:
    r = cti("configure", "--password", "hunter2")
    assert r.code == 2
    assert not conf.exists()


def test_invalid_flag_value_exit_2_and_nothing_written(cti: Run, conf: Path) -> None:
    assert cti("configure", "--host", "pbx").code == 0
    before = conf.read_bytes()
    r = cti("configure", "--port", "70000")
    assert r.code == 2
    assert "server.port: must be an integer 1–65535, got 70000" in r.err
    assert conf.read_bytes() == before


def test_rule_with_syntax_error_names_file_and_line(cti: Run, conf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\nif x\n    pass\n", "utf-8")
    r = cti("configure", "--rule", str(bad))
    assert r.code == 2
    assert f"{bad}:2:" in r.err
    assert "Traceback" not in r.err
    assert not conf.exists()


def test_missing_rule_file(cti: Run, tmp_path: Path) -> None:
    r = cti("configure", "--rule", str(tmp_path / "nope.py"))
    assert r.code == 2
    assert "does not exist" in r.err


def test_no_flags_without_terminal_is_refused(cti: Run, conf: Path) -> None:
    r = cti("configure")
    assert r.code == 2
    assert "nothing to change" in r.err


def test_teams_lifecycle(cti: Run, conf: Path) -> None:
    assert cti("teams", "add", "Первая линия").code == 0
    assert cti("teams", "member", "Первая линия", "--login", "ivanov", "--name", "Иван Иванов",
               "--ext", "101", "--ext", "102").code == 0  # fmt: skip
    assert cti("teams", "add", "Second").code == 0
    clash = cti("teams", "member", "Second", "--login", "petrov", "--ext", "102")
    assert clash.code == 2 and "102 already belongs to ivanov" in clash.err
    assert cti("teams", "member", "Second", "--login", "petrov", "--ext", "103").code == 0
    listed = json.loads(cti("teams", "list", "--json").out)
    assert [t["name"] for t in listed] == ["Первая линия", "Second"]
    assert listed[0]["members"][0] == {
        "login": "ivanov",
        "name": "Иван Иванов",
        "extensions": ["101", "102"],
    }
    assert "Иван Иванов".encode() in conf.read_bytes()
    assert cti("teams", "unmember", "Second", "--login", "petrov").code == 0
    assert cti("teams", "remove", "Second").code == 0
    missing = cti("teams", "remove", "Second")
    assert missing.code == 2 and "no team named 'Second'" in missing.err
    assert [t.name for t in cfg.load_file(conf).teams] == ["Первая линия"]


def test_show_masks_secrets_and_json_parses(cti: Run, conf: Path, rule: Path) -> None:
    config = cfg.Config.model_validate({
        "server": {"host": "pbx", "login": "cti", "password": "topsecret-1"},
        "rule": {"script": str(rule)},
        "webhooks": [{"url": "https://sd.example.org/hook", "secret": "hooksecret-2"}],
        "teams": [{"name": "L1", "members": [{"login": "ivanov", "extensions": ["101"]}]}],
    })  # fmt: skip
    cfg.save(conf, config)
    human = cti("show")
    assert human.code == 0
    assert "topsecret-1" not in human.out and "hooksecret-2" not in human.out
    assert "••••••" in human.out
    assert "disabled" in human.out
    assert "Правило" in human.out  # the rule text is shown
    data = json.loads(cti("show", "--json").out)
    assert data["server"]["password"] == "••••••"
    assert data["webhooks"][0]["secret"] == "••••••"
    assert data["enabled"] is False
    assert data["teams"][0]["members"][0]["extensions"] == ["101"]
    assert data["rule"]["source"].startswith("# Правило")
    assert "topsecret-1" not in json.dumps(data)


def test_broken_config_is_one_line_per_problem_exit_2(cti: Run, conf: Path) -> None:
    conf.parent.mkdir(parents=True)
    conf.write_text('[server]\nport = "50x38"\nhots = "x"\n', "utf-8")
    conf.chmod(0o600)
    r = cti("show")
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert lines == [
        'cti: cti.toml: server.port: must be an integer 1–65535, got "50x38"',
        "cti: cti.toml: server.hots: unknown key; did you mean 'host'?",
    ]


def test_world_readable_config_warns(cti: Run, conf: Path) -> None:
    cfg.save(conf, cfg.Config())
    conf.chmod(0o644)
    r = cti("show")
    assert r.code == 0
    assert "readable by others" in r.err


def test_enable_refuses_incomplete_blocks_by_name(cti: Run, conf: Path, rule: Path) -> None:
    r = cti("enable")
    assert r.code == 2
    assert "connection parameters: server.host is not set" in r.err
    cfg.save(conf, cfg.Config.model_validate(
        {"server": {"host": "127.0.0.1", "login": "cti", "password": "x"}}
    ))  # fmt: skip
    r = cti("enable")
    assert r.code == 2 and "responsible teams" in r.err
    assert cfg.load_file(conf).enabled is False


def _complete(conf: Path, rule: Path, port: int) -> None:
    cfg.save(conf, cfg.Config.model_validate({
        "server": {"host": "127.0.0.1", "port": port, "login": "cti", "password": "pw-secret",
                   "timeout": 2.0},
        "teams": [{"name": "L1", "members": [{"login": "ivanov", "extensions": ["101"]}]}],
        "rule": {"script": str(rule)},
    }))  # fmt: skip


def test_enable_refuses_a_rule_that_does_not_compile_before_connecting(
    cti: Run, conf: Path, rule: Path
) -> None:
    _complete(conf, rule, free_port())
    rule.write_text("def card(:\n", "utf-8")
    r = cti("enable")
    assert r.code == 2
    assert r.err.startswith("cti: cannot enable: call handling rule: ")
    assert "connection refused" not in r.err
    assert cfg.load_file(conf).enabled is False


def test_enable_closed_port_stays_disabled(cti: Run, conf: Path, rule: Path) -> None:
    _complete(conf, rule, free_port())
    before = conf.read_bytes()
    r = cti("enable")
    assert r.code == 1
    assert "cannot enable: connection refused: " in r.err
    assert "disabled" in r.err
    assert "pw-secret" not in r.out + r.err
    assert conf.read_bytes() == before


def test_enable_unresolvable_host(cti: Run, conf: Path, rule: Path) -> None:
    _complete(conf, rule, 5038)
    data = cfg.load_file(conf)
    data.server.host = "no-such-host.invalid"
    cfg.save(conf, data)
    r = cti("enable")
    assert r.code == 1
    assert "no-such-host.invalid" in r.err
    assert cfg.load_file(conf).enabled is False


def test_disable_keeps_config(cti: Run, conf: Path, rule: Path) -> None:
    _complete(conf, rule, 5038)
    data = cfg.load_file(conf)
    data.enabled = True
    cfg.save(conf, data)
    assert cti("disable").code == 0
    after = cfg.load_file(conf)
    assert after.enabled is False
    assert after.server.password.get_secret_value() == "pw-secret"


def test_show_highlights_the_rule_in_colour_and_pipes_the_same_text(
    conf: Path, rule: Path
) -> None:
    cfg.save(conf, cfg.Config.model_validate({"rule": {"script": str(rule)}}))
    argv = [str(Path(sys.executable).parent / "cti"), "-c", str(conf), "show"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CTI_", "NO_COLOR"))}
    env.update(COLUMNS="100", TERM="xterm-256color")
    piped = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    coloured = subprocess.run(argv, capture_output=True, text=True, env={**env, "FORCE_COLOR": "1"},
                              check=True).stdout  # fmt: skip
    assert re.search(r"\x1b\[[0-9;]*m=\x1b\[0m", coloured)  # the rule's `=`, highlighted
    assert "\x1b" not in piped and 'card = caller["number"]' in piped
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == piped


def test_console_script_version_and_no_traceback(conf: Path) -> None:
    cti_bin = Path(sys.executable).parent / "cti"
    out = subprocess.run([str(cti_bin), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("cti ")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("[server\n", "utf-8")
    bad = subprocess.run([str(cti_bin), "-c", str(conf), "show"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "invalid TOML" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_ca_file_must_be_a_pem_ca(cti: Run, conf: Path, tmp_path: Path) -> None:
    missing = cti("configure", "--tls", "--cafile", str(tmp_path / "none.pem"))
    assert missing.code == 2 and "no such file" in missing.err
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n", "utf-8")
    bad = cti("configure", "--tls", "--cafile", str(junk))
    assert bad.code == 2 and "not a PEM CA certificate" in bad.err
    assert not conf.exists()


def test_host_with_space_or_url_refused(cti: Run, conf: Path) -> None:
    for host in ("bad host", "tcp://pbx:5038"):
        r = cti("configure", "--host", host)
        assert r.code == 2
        assert "server.host: must be a host name or IP address" in r.err
    assert not conf.exists()
