"""One mapping from a configured AMI server to how `cti agent`, `cti watch` and `cti enable`
log in: every setting reaches the connection, an incomplete block is named, not dialled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti_cli import config as cfg
from cti_cli.ami.params import missing_setting, server_params
from cti_cli.ami.reconnect import ConnectParams
from cti_cli.cli.app import _register, app

_register()

COMPLETE = {"host": "pbx.example.org", "port": 5039, "login": "cti", "password": "s3cr3t",
            "tls": True, "cafile": "/etc/cti/ca.pem", "auth": "plain", "timeout": 2.5}  # fmt: skip


def server(**changes: object) -> cfg.ServerConfig:
    return cfg.Config.model_validate({"server": {**COMPLETE, **changes}}).server


def test_every_server_setting_reaches_the_connection() -> None:
    assert server_params(server()) == ConnectParams(
        host="pbx.example.org", port=5039, username="cti", secret="s3cr3t", tls=True,
        cafile="/etc/cti/ca.pem", auth="plain", timeout=2.5,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "missing"),
    [({"host": ""}, "host"), ({"login": ""}, "login"), ({"password": ""}, "password"),
     ({"host": "", "password": ""}, "host")],
)  # fmt: skip
def test_an_incomplete_server_names_its_first_missing_setting(
    changes: dict[str, str], missing: str
) -> None:
    incomplete = server(**changes)
    assert server_params(incomplete) is None
    assert missing_setting(incomplete) == missing
    assert missing_setting(server()) is None


def test_watch_without_a_password_says_which_setting_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("CTI_"):
            monkeypatch.delenv(name)
    conf = tmp_path / "cti.toml"
    cfg.save(conf, cfg.Config.model_validate({"server": {**COMPLETE, "password": ""}}))
    result = CliRunner().invoke(app, ["--config", str(conf), "watch"])
    assert result.exit_code == 2
    assert "server.password is not set" in result.stderr
