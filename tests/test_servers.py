"""`[[servers]]`: several PBXs in one config — validation, names, `"pbx:ext"` team entries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cti_cli import config as cfg
from cti_cli.agent.pops import Operator, PopPlanner, delivery_key, operators_by_extension
from cti_cli.calls.events import Answered


def load(tmp_path: Path, text: str) -> cfg.Config:
    path = tmp_path / "cti.toml"
    path.write_text(text, encoding="utf-8")
    return cfg.load_file(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(cfg.ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


SERVERS = """
[[servers]]
name = "main"
host = "10.0.0.5"
login = "cti"
password = "a"

[[servers]]
name = "branch-2"
host = "10.0.1.5"
port = 5039
login = "cti"
password = "b"
"""


def test_servers_are_listed_in_order_with_their_names(tmp_path: Path) -> None:
    config = load(tmp_path, SERVERS)
    assert [(n, s.host, s.port) for n, s in config.pbx_servers()] == [
        ("main", "10.0.0.5", 5038), ("branch-2", "10.0.1.5", 5039)
    ]  # fmt: skip
    assert config.incomplete() == [
        "responsible teams: no team has a member with an extension; "
        "run cti teams add NAME and cti teams member NAME --login L --ext 101"
    ]


def test_one_server_is_named_after_agent_pbx_or_its_host(tmp_path: Path) -> None:
    plain = load(tmp_path, '[server]\nhost = "pbx.example.org"\n')
    assert [n for n, _ in plain.pbx_servers()] == ["pbx.example.org"]
    named = load(tmp_path, '[server]\nhost = "pbx.example.org"\n[agent]\npbx = "main"\n')
    assert [n for n, _ in named.pbx_servers()] == ["main"]
    assert [n for n, _ in cfg.Config().pbx_servers()] == ["pbx"]


def test_a_name_is_required_unique_and_slug_safe(tmp_path: Path) -> None:
    assert problems(tmp_path, '[[servers]]\nhost = "a"\n') == [
        "cti.toml: servers[0].name: is required"
    ]
    twice = '[[servers]]\nname = "main"\n[[servers]]\nname = "main"\n'
    assert problems(tmp_path, twice) == [
        "cti.toml: [[servers]] name 'main' is used twice; names are unique"
    ]
    for bad in ("main east", "main.east", "-main", "", "a/b", "ä"):
        assert problems(tmp_path, f'[[servers]]\nname = "{bad}"\n')[0].startswith(
            "cti.toml: servers[0].name: must be a PBX name"
        ), bad


def test_servers_take_the_keys_of_server_and_no_others(tmp_path: Path) -> None:
    assert problems(tmp_path, '[[servers]]\nname = "m"\nport = 0\n') == [
        "cti.toml: servers[0].port: must be an integer 1–65535, got 0"
    ]
    assert problems(tmp_path, '[[servers]]\nname = "m"\nhots = "x"\n') == [
        "cti.toml: servers[0].hots: unknown key; did you mean 'host'?"
    ]


def test_server_and_servers_together_are_refused(tmp_path: Path) -> None:
    text = '[server]\nhost = "a"\n[[servers]]\nname = "m"\nhost = "b"\n'
    assert problems(tmp_path, text) == ["cti.toml: use either [server] or [[servers]], not both"]


def test_enable_names_the_server_that_is_incomplete(tmp_path: Path) -> None:
    config = load(tmp_path, SERVERS + '\n[[servers]]\nname = "west"\nhost = "h"\nlogin = "l"\n')
    assert config.incomplete()[0] == (
        "connection parameters (west): servers[2].password is not set; "
        "set it (or servers[2].password_file) in the file"
    )


def test_password_file_per_server(tmp_path: Path) -> None:
    secret = tmp_path / "west.secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    path = tmp_path / "cti.toml"
    path.write_text(f'[[servers]]\nname = "west"\npassword_file = "{secret}"\n', encoding="utf-8")
    assert cfg.load(path).servers[0].password.get_secret_value() == "s3cret"


def test_team_extensions_may_name_their_pbx(tmp_path: Path) -> None:
    text = """
[[teams]]
name = "Первая линия"
[[teams.members]]
login = "ivanov"
extensions = ["main:101", "102"]
[[teams]]
name = "Вторая линия"
[[teams.members]]
login = "petrova"
extensions = ["101"]
"""
    config = load(tmp_path, text)
    on_main = operators_by_extension(config.teams, "main")
    on_branch = operators_by_extension(config.teams, "branch")
    assert (on_main["101"].login, on_main["101"].extension) == ("ivanov", "101")
    assert on_branch["101"].login == "petrova", "main:101 counts only on main"
    assert on_main["102"].login == on_branch["102"].login == "ivanov", "a bare 102: every PBX"
    assert problems(tmp_path, '[[teams]]\nname = "t"\n[[teams.members]]\nlogin = "x"\n'
                    'extensions = ["main east:101"]\n')[0].startswith(
        "cti.toml: teams[0].members[0].extensions: extension 'main east:101'"
    )  # fmt: skip
    assert problems(tmp_path, '[[teams]]\nname = "t"\n[[teams.members]]\nlogin = "x"\n'
                    'extensions = ["main:"]\n')  # fmt: skip


def test_keys_per_pbx_and_unchanged_for_one_pbx() -> None:
    """Each PBX's planner keys with its own name: the single-[server] keys stay as they were."""
    op = {"101": Operator("ivanov", "", "t", "101")}
    event = Answered("c1", "c1", "+7916", "", "200", None, "1.0", "101")
    keys = {}
    for pbx in ("lab", "branch"):
        plan = PopPlanner(op, "answer", pbx).plan(event)
        assert plan.pops[0].pbx == pbx
        keys[pbx] = plan.pops[0].key
        assert keys[pbx] == delivery_key(pbx, "c1", "screen_pop", "ivanov@answer", 1)
    assert keys["lab"] != keys["branch"]


def test_enable_checks_every_server_and_names_the_one_that_failed(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    path = tmp_path / "cti.toml"
    path.write_text(
        f'[[servers]]\nname = "main"\nhost = "127.0.0.1"\nport = {closed}\nlogin = "cti"\n'
        'password = "pw"\ntimeout = 2\n'
        '[[teams]]\nname = "t"\n[[teams.members]]\nlogin = "x"\nextensions = ["main:101"]\n',
        encoding="utf-8",
    )
    path.chmod(0o600)
    run = subprocess.run(
        [sys.executable, "-m", "cti_cli", "--config", str(path), "enable"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run
    assert f"cannot enable: PBX main (127.0.0.1:{closed}): " in run.stderr
    assert "the integration stays disabled" in run.stderr
    assert "enabled = true" not in path.read_text(encoding="utf-8")


def test_watch_shows_several_pbxs_on_one_board_with_a_pbx_column() -> None:
    from rich.console import Console

    from cti_cli.calls import CallTracker
    from cti_cli.calls.events import Ringing
    from cti_cli.cli.live_calls import CallBoard, MultiBoard
    from cti_cli.cli.watch import call_json, call_line

    main, branch = CallBoard(CallTracker(), "10.0.0.5:5038"), CallBoard(CallTracker(), "h:5039")
    console = Console(record=True, width=160, color_system=None)
    console.print(MultiBoard({"main": main, "branch": branch}).render(0.0))
    text = console.export_text()
    assert "AMI main 10.0.0.5:5038" in text and "AMI branch h:5039" in text
    assert text.index("pbx") < text.index("caller")
    ringing = Ringing("c1", "c1", "+7916", "", "200", None, "1700000000.0", "101")
    assert '"pbx"' not in call_json(ringing), "one PBX: the JSON is as before"
    assert call_json(ringing, "branch").startswith('{"pbx": "branch", "event": "ringing"')
    assert call_line(ringing, pbx="branch").split("  ")[1:3] == ["branch", "ringing"]
    assert call_line(ringing).split("  ")[1] == "ringing"


def test_show_lists_every_pbx_with_its_password_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from cti_cli.cli.app import _register, app

    for name in [n for n in os.environ if n.startswith("CTI_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "cti.toml"
    path.write_text(SERVERS.replace('password = "b"', 'password = "branch-secret"'), "utf-8")
    path.chmod(0o600)
    _register()
    runner = CliRunner()
    human = runner.invoke(app, ["--config", str(path), "show"], env={"COLUMNS": "120"})
    assert human.exit_code == 0, human.output
    rows = [line for line in human.stdout.splitlines() if "10.0." in line]
    assert len(rows) == 2
    assert "main" in rows[0] and "10.0.0.5" in rows[0] and "5038" in rows[0]
    assert "branch-2" in rows[1] and "10.0.1.5" in rows[1] and "5039" in rows[1]
    assert "branch-secret" not in human.stdout and "••••••" in rows[1]
    data = json.loads(runner.invoke(app, ["--config", str(path), "show", "--json"]).stdout)
    assert [(s["name"], s["host"], s["password"]) for s in data["servers"]] == [
        ("main", "10.0.0.5", "••••••"), ("branch-2", "10.0.1.5", "••••••")
    ]  # fmt: skip
    assert "branch-secret" not in json.dumps(data)


def test_status_names_every_pbx(tmp_path: Path) -> None:
    from cti_cli.cli.status_cmd import gather

    config = load(
        tmp_path, SERVERS + f'\n[agent]\nlisten = "127.0.0.1:1"\nstate_dir = "{tmp_path}"\n'
    )
    assert gather(config)["server"] == "main 10.0.0.5:5038, branch-2 10.0.1.5:5039"
