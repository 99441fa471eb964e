"""The config file: round trip, env overlay, one clear line per invalid value, safe writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cti_cli import config as cfg

FULL = """\
enabled = false

[server]
type = "asterisk-ami"
host = "pbx.example.org"
port = 5038
login = "cti"
password = "s3cret"
tls = false
auth = "md5"
timeout = 5.0

[[teams]]
name = "Первая линия"

[[teams.members]]
login = "ivanov"
name = "Иван Иванов"
extensions = ["101", "102"]

[rule]
script = "/etc/cti/rules/incoming.py"
trigger = "answer"

[cdr]
dbaccess = "/etc/cti/dbaccess.properties"
recordings_dir = "/var/spool/asterisk/monitor"

[[webhooks]]
url = "https://sd.example.org/cti/events"
secret = "hook-secret"
format = "json"
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "cti.toml"
    p.write_text(FULL, encoding="utf-8")
    p.chmod(0o600)
    return p


def problems(path: Path, text: str) -> list[str]:
    path.write_text(text, encoding="utf-8")
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load_file(path)
    return info.value.problems


def test_round_trip_keeps_every_value_and_cyrillic_bytes(path: Path, tmp_path: Path) -> None:
    loaded = cfg.load_file(path)
    assert loaded.server.password.get_secret_value() == "s3cret"
    assert loaded.teams[0].members[0].name == "Иван Иванов"
    out = tmp_path / "again.toml"
    cfg.save(out, loaded)
    assert cfg.load_file(out) == loaded
    assert "Иван Иванов".encode() in out.read_bytes()
    assert "Первая линия".encode() in out.read_bytes()


def test_missing_file_gives_disabled_defaults(tmp_path: Path) -> None:
    config = cfg.load(tmp_path / "none.toml")
    assert config.enabled is False
    assert config.server.port == 5038
    assert config.server.auth == "md5"
    assert config.rule.trigger == "answer"


def test_environment_overrides_file_but_is_never_saved(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTI_SERVER__PASSWORD", "from-systemd")
    monkeypatch.setenv("CTI_SERVER__PORT", "5039")
    effective = cfg.load(path)
    assert effective.server.password.get_secret_value() == "from-systemd"
    assert effective.server.port == 5039
    assert effective.server.host == "pbx.example.org"  # nested merge keeps the rest
    on_disk = cfg.load_file(path)
    assert on_disk.server.password.get_secret_value() == "s3cret"
    cfg.save(path, on_disk)
    assert b"from-systemd" not in path.read_bytes()


def test_bad_environment_value_is_reported_not_raised(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTI_SERVER__PORT", "abc")
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(path)
    assert info.value.problems == [
        'CTI_SERVER__PORT: must be an integer 1–65535, got "abc" (environment)'
    ]


def test_config_path_env_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CTI_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert cfg.default_path() == tmp_path / "cti" / "cti.toml"
    monkeypatch.setenv("CTI_CONFIG", str(tmp_path / "x.toml"))
    assert cfg.default_path() == tmp_path / "x.toml"


PORT = "cti.toml: server.port: must be an integer 1–65535"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("port = 5038", 'port = "50x38"', f'{PORT}, got "50x38"'),
        ("port = 5038", "port = 0", f"{PORT}, got 0"),
        ("port = 5038", "port = 70000", f"{PORT}, got 70000"),
        ('auth = "md5"', 'auth = "sha1"',
         'cti.toml: server.auth: must be "md5" or "plain", got "sha1"'),
        ("tls = false", 'tls = "maybe"',
         'cti.toml: server.tls: must be true or false, got "maybe"'),
        ("timeout = 5.0", "timeout = -1", "cti.toml: server.timeout: must be a number of seconds, "
                                          "more than 0 and at most 300, got -1"),
        ('type = "asterisk-ami"', 'type = "freeswitch"',
         'cti.toml: server.type: must be "asterisk-ami", got "freeswitch"'),
        ('trigger = "answer"', 'trigger = "pickup"',
         'cti.toml: rule.trigger: must be "ring" or "answer", got "pickup"'),
        ('format = "json"', 'format = "xml"',
         'cti.toml: webhooks[0].format: must be "json" or "zammad", got "xml"'),
        ('url = "https://sd.example.org/cti/events"', 'url = "sd.example.org"',
         'cti.toml: webhooks[0].url: must be an http:// or https:// URL (its port 1–65535), '
         'got "sd.example.org"'),
        ("enabled = false", "enabled = 1", "cti.toml: enabled: must be true or false, got 1"),
    ],
)  # fmt: skip
def test_each_invalid_value_is_one_clear_line(
    path: Path, old: str, new: str, expected: str
) -> None:
    assert problems(path, FULL.replace(old, new)) == [expected]


def test_unknown_keys_suggest_the_right_one(path: Path) -> None:
    text = FULL.replace('host = "pbx.example.org"', 'hots = "pbx.example.org"')
    text = text.replace('trigger = "answer"', 'trigger = "answer"\ntriger = "ring"')
    found = problems(path, text)
    assert "cti.toml: server.hots: unknown key; did you mean 'host'?" in found
    assert "cti.toml: rule.triger: unknown key; did you mean 'trigger'?" in found


def test_all_problems_reported_at_once_and_secrets_not_echoed(path: Path) -> None:
    text = FULL.replace("port = 5038", 'port = "x"').replace('password = "s3cret"', "password = 5")
    found = problems(path, text)
    assert len(found) == 2
    assert not any("s3cret" in line for line in found)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://zammad.example.org/api/v1/cti/Zx9TokenSecret ", "https://zammad.example.org/••••••"),
        ("https://admin:Pw4@sd.example.org/hook x", "https://••••••@sd.example.org/••••••"),
        ("https://sd.example.org?token=Zx9TokenSecret x", "https://sd.example.org/••••••"),
        ("ftp://sd.example.org", "ftp://sd.example.org"),
    ],
)  # fmt: skip
def test_a_bad_webhook_url_is_named_without_its_token(path: Path, url: str, shown: str) -> None:
    # Zammad's CTI token is the URL's path; other desks put one in the query: a pasted URL
    # with a trailing space must not print it, in `cti show`, the agent's log or anywhere
    text = FULL + f'\n[[webhooks]]\nurl = "{url}"\nformat = "zammad"\n'
    found = problems(path, text)
    assert found == [
        "cti.toml: webhooks[1].url: must be an http:// or https:// URL (its port 1–65535), "
        f'got "{shown}"']
    assert not any(secret in line for line in found for secret in ("Zx9Token", "Pw4", "/hook"))


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ('[agent]\nlisten = "127.0.0.1:99999"',
         'agent.listen: must be HOST:PORT with a port 1–65535, e.g. "127.0.0.1:9377", got '
         '"127.0.0.1:99999"'),
        ('[agent]\nadmin_listen = "127.0.0.1:0"',
         'agent.admin_listen: must be HOST:PORT with a port 1–65535, e.g. "127.0.0.1:9378", '
         'got "127.0.0.1:0"'),
        ('[[webhooks]]\nurl = "https://sd.example.org:99999/x"',
         'webhooks[0].url: must be an http:// or https:// URL (its port 1–65535), got '
         '"https://sd.example.org:99999/••••••"'),
        ('[[publish]]\nurl = "nats://127.0.0.1:70000"',
         "publish[0].url: must be a nats://, tls://, amqp:// or amqps:// URL (no #fragment, "
         'its port 1–65535), got "nats://127.0.0.1:70000"'),
    ],
)  # fmt: skip
def test_a_port_past_65535_is_a_config_error(path: Path, block: str, problem: str) -> None:
    # before, the agent died binding 99999 with a traceback, and `cti webhooks test` blamed
    # name resolution for a URL whose port could never be reached
    assert problems(path, FULL.replace("[server]", f"{block}\n\n[server]", 1)) == [
        f"cti.toml: {problem}"]  # fmt: skip


def test_bad_extension_named(path: Path) -> None:
    found = problems(path, FULL.replace('"101", "102"', '"101", "10 2"'))
    assert found == [
        "cti.toml: teams[0].members[0].extensions: extension '10 2' must be digits/letters "
        "like 101 or main:101, got a list"
    ]


def test_invalid_toml_names_line(path: Path) -> None:
    found = problems(path, FULL.replace('host = "pbx.example.org"', "host = pbx.example.org"))
    assert len(found) == 1
    assert found[0].startswith(f"{path}: invalid TOML:")
    assert "line 5" in found[0]


def test_save_is_0600_even_with_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        p = tmp_path / "sub" / "cti.toml"
        cfg.save(p, cfg.Config())
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert cfg.permission_warning(p) is None


def test_world_readable_file_warns(path: Path) -> None:
    path.chmod(0o644)
    warning = cfg.permission_warning(path)
    assert warning is not None
    assert "chmod 600" in warning and "0644" in warning


def test_failed_write_leaves_old_file_and_no_temp(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = path.read_bytes()
    config = cfg.load_file(path)
    config.server.host = "changed.example.org"

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        cfg.save(path, config)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["cti.toml"]


def test_operator_extensions_map_to_members(path: Path) -> None:
    owners = cfg.load_file(path).operator_extensions()
    assert set(owners) == {"101", "102"}
    team, member = owners["102"]
    assert (team.name, member.login) == ("Первая линия", "ivanov")


def test_shipped_example_is_valid() -> None:
    example = Path(__file__).parent.parent / "config" / "cti.toml.example"
    config = cfg.load_file(example)
    assert config.enabled is False
    assert config.operator_extensions()["101"][1].name == "Иван Иванов"


def test_a_password_with_a_slash_in_a_url_is_told_to_be_percent_encoded(path: Path) -> None:
    # "desk:pa55/w0rd@": the URL's port reads "pa55"; nothing of the password is shown
    text = FULL + '\n[[webhooks]]\nurl = "http://desk:pa55/w0rd@127.0.0.1/h"\n'
    assert problems(path, text) == [
        "cti.toml: webhooks[1].url: must be a URL whose password has / ? # and @ "
        "percent-encoded (%2F %3F %23 %40): as written, part of it reads as the port, got "
        '"http://••••••@127.0.0.1/••••••"']  # fmt: skip
