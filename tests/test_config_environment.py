"""`CTI_*` variables over the config file, as `cti` shows them: they change single keys and
single list items, and a wrong one is reported as that variable, never blamed on the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti_cli import config as cfg
from cti_cli.cli.app import _register, app

_register()

FILE = """\
[server]
host = "pbx.example.org"
login = "cti"

[[webhooks]]
url = "https://sd.example.org/cti/events"
"""


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("CTI_"):
            monkeypatch.delenv(name)
    path = tmp_path / "cti.toml"
    path.write_text(FILE, "utf-8")
    path.chmod(0o600)
    return path


def cti(conf: Path, *args: str) -> Result:
    result = CliRunner().invoke(app, ["--config", str(conf), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is a failure, not an answer
    return Result(result.exit_code, result.stdout, result.stderr)


def test_variables_change_one_key_and_one_list_item(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTI_SERVER__PORT", "5039")
    monkeypatch.setenv("CTI_WEBHOOKS__0__SECRET", "from-systemd")
    shown = cti(conf, "show", "--json")
    assert shown.code == 0, shown.err
    page = json.loads(shown.out)
    assert (page["server"]["host"], page["server"]["port"]) == ("pbx.example.org", 5039)
    assert page["webhooks"][0]["url"] == "https://sd.example.org/cti/events"  # the file's item
    assert page["webhooks"][0]["secret"] == cfg.SECRET_MASK
    assert "from-systemd" not in shown.out + shown.err


def test_a_misspelt_variable_is_named_and_the_file_is_not_blamed(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTI_SERVER__HSOT", "pbx2.example.org")
    shown = cti(conf, "show")
    assert shown.code == 2
    assert shown.err == (
        "cti: CTI_SERVER__HSOT: unknown setting (environment); did you mean CTI_SERVER__HOST?\n"
    )


def test_each_bad_value_names_where_it_came_from(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTI_SERVER__PORT", "abc")
    assert cti(conf, "show").err == (
        'cti: CTI_SERVER__PORT: must be an integer 1–65535, got "abc" (environment)\n'
    )
    monkeypatch.setenv("CTI_SERVER__PORT", "5039")
    conf.write_text(FILE.replace('login = "cti"', 'login = "cti"\ntimeout = -1'), "utf-8")
    assert cti(conf, "show").err == (
        "cti: cti.toml: server.timeout: must be a number of seconds, more than 0 and at most "
        "300, got -1\n"
    )
    conf.write_text(FILE, "utf-8")
    hooks = [{"url": "ftp://sd.example.org", "secret": "hunter2"}]
    monkeypatch.setenv("CTI_WEBHOOKS", json.dumps(hooks))
    shown = cti(conf, "show")
    assert shown.code == 2
    assert shown.err == (
        "cti: CTI_WEBHOOKS: webhooks[0].url: must be an http:// or https:// URL (its port "
        "1–65535), "
        'got "ftp://sd.example.org" (environment)\n'
    )
    assert "hunter2" not in shown.out + shown.err


def test_settings_arguments_in_the_file_are_unknown_keys(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `_env_prefix` once switched the CTI_* overrides off, silently
    conf.write_text('_env_prefix = "X_"\n_secrets_dir = "/run"\n' + FILE, "utf-8")
    monkeypatch.setenv("CTI_SERVER__PASSWORD", "from-systemd")
    shown = cti(conf, "show")
    assert shown.code == 2
    lines = shown.err.splitlines()
    assert [line.split(";")[0] for line in lines] == [
        "cti: cti.toml: _env_prefix: unknown key", "cti: cti.toml: _secrets_dir: unknown key"
    ]  # fmt: skip


def test_a_missing_list_item_and_bad_json_are_one_line_each(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTI_WEBHOOKS__3__SECRET", "s3cret")
    shown = cti(conf, "show")
    assert shown.code == 2
    assert shown.err == (
        "cti: CTI_WEBHOOKS__3__SECRET: cti.toml has no webhooks[3] to change (environment); "
        "it lists 1, numbered from 0: add that entry to the file first\n"
    )
    monkeypatch.delenv("CTI_WEBHOOKS__3__SECRET")
    monkeypatch.setenv("CTI_TEAMS", '[{"name": "L1"')
    shown = cti(conf, "show")
    assert shown.code == 2
    assert shown.err.startswith("cti: CTI_TEAMS: not valid JSON (environment);")
    assert len(shown.err.splitlines()) == 1


def test_configure_names_a_bad_variable_and_saves_nothing(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf.write_text("enabled = true\n" + FILE.replace('login = "cti"', 'login = "cti"\n'
                    'password = "pw"'), "utf-8")  # fmt: skip
    before = conf.read_bytes()
    monkeypatch.setenv("CTI_SERVER__TIMEOUT", "soon")
    changed = cti(conf, "configure", "--host", "pbx2.example.org")
    assert changed.code == 2
    assert changed.err == (
        "cti: CTI_SERVER__TIMEOUT: must be a number of seconds, more than 0 and at most 300, "
        'got "soon" (environment)\n'
    )
    assert conf.read_bytes() == before
