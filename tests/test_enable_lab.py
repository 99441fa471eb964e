"""`cti enable` against the real Asterisk 22 of the lab: what an admin sees for each outcome."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cti_cli import config as cfg
from cti_cli.cli.app import _register, app

_register()
pytestmark = pytest.mark.lab


class Outcome:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def run(conf: Path, *args: str, input: str | None = None) -> Outcome:
    env = {k: None for k in os.environ if k.startswith("CTI_") and k != "CTI_REQUIRE_LAB"}
    result = CliRunner().invoke(app, ["--config", str(conf), *args], input=input, env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def conf(tmp_path: Path, lab: Any) -> Path:
    rule = tmp_path / "incoming.py"
    rule.write_text("card = 'employee'\n", "utf-8")
    path = tmp_path / "cti.toml"
    info = lab.info
    cfg.save(path, cfg.Config.model_validate({
        "server": {"host": info.ami_host, "port": info.ami_port, "login": info.ami_user,
                   "password": info.ami_secret, "timeout": 5.0},
        "teams": [{"name": "L1", "members": [{"login": "ivanov", "extensions": ["101"]}]}],
        "rule": {"script": str(rule)},
    }))  # fmt: skip
    return path


def set_server(path: Path, **values: Any) -> None:
    config = cfg.load_file(path)
    for key, value in values.items():
        setattr(config.server, key, value)
    cfg.save(path, config)


@pytest.mark.parametrize("auth", ["md5", "plain"])
def test_enable_succeeds_and_records_versions(conf: Path, auth: str) -> None:
    set_server(conf, auth=auth)
    r = run(conf, "enable")
    assert r.code == 0, r.err
    assert "Asterisk 22" in r.out
    saved = cfg.load_file(conf)
    assert saved.enabled is True
    assert saved.status.ami_version is not None and saved.status.ami_version.startswith("11.")
    assert saved.status.asterisk_version is not None
    assert saved.status.asterisk_version.startswith("22")
    shown = json.loads(run(conf, "show", "--json").out)
    assert shown["enabled"] is True
    assert shown["status"]["asterisk_version"].startswith("22")


def test_wrong_password_says_authentication_failed(conf: Path, lab: Any) -> None:
    set_server(conf, password="wrong-" + lab.info.ami_secret)
    before = conf.read_bytes()
    r = run(conf, "enable")
    assert r.code == 1
    assert "authentication failed" in r.err.lower()
    assert lab.info.ami_secret not in r.err + r.out
    assert conf.read_bytes() == before


def test_user_without_call_events_is_permission_denied(conf: Path, lab: Any) -> None:
    set_server(conf, login=lab.info.ami_limited_user, password=lab.info.ami_limited_secret)
    r = run(conf, "enable")
    assert r.code == 1
    assert "permission denied" in r.err
    assert "read=" in r.err  # says which manager.conf setting to fix
    assert cfg.load_file(conf).enabled is False


def test_mariadb_port_is_not_an_ami_server(conf: Path, lab: Any) -> None:
    set_server(conf, port=lab.info.mysql_port)
    r = run(conf, "enable")
    assert r.code == 1
    assert "not an AMI server" in r.err
    assert cfg.load_file(conf).enabled is False


def test_tls_verified_with_ca_file(conf: Path, lab: Any) -> None:
    set_server(conf, port=lab.info.ami_tls_port, tls=True, cafile=str(lab.info.tls_ca_file))
    r = run(conf, "enable")
    assert r.code == 0, r.err
    assert cfg.load_file(conf).enabled is True


def test_tls_self_signed_without_ca_file_is_refused(conf: Path, lab: Any) -> None:
    set_server(conf, port=lab.info.ami_tls_port, tls=True)
    r = run(conf, "enable")
    assert r.code == 1
    assert "TLS" in r.err
    assert cfg.load_file(conf).enabled is False


def test_changing_connection_while_enabled_rechecks(conf: Path, lab: Any) -> None:
    assert run(conf, "enable").code == 0
    before = conf.read_bytes()
    r = run(conf, "configure", "--password-stdin", input="not-the-password\n")
    assert r.code == 1
    assert "authentication failed" in r.err.lower()
    assert conf.read_bytes() == before  # nothing written
    r = run(conf, "configure", "--password-stdin", "--disable", input="not-the-password\n")
    assert r.code == 0
    saved = cfg.load_file(conf)
    assert saved.enabled is False
    assert saved.server.password.get_secret_value() == "not-the-password"
    r = run(conf, "configure", "--password-stdin", input=lab.info.ami_secret + "\n")
    assert r.code == 0
    assert run(conf, "enable").code == 0


def test_least_privilege_user_enables_with_a_warning(conf: Path, lab: Any) -> None:
    set_server(conf, login=lab.info.ami_minimal_user, password=lab.info.ami_minimal_secret)
    r = run(conf, "enable")
    assert r.code == 0, r.err
    assert "could not read AMI user 'cti-minimal''s permissions" in r.err
    assert cfg.load_file(conf).enabled is True
