"""The `cti` command line keeps the conventions of a Unix tool: `-h` everywhere, placeholders
that are words, commands in the order an admin uses them, summaries within 80 columns, and
`cti watch` into a pipe printing a plain line per call change as it happens."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
from test_ami_client import SECRET, FakeAMI, read_action, reply, serve_login, wire
from typer.testing import CliRunner

from cti_cli import config as cfg
from cti_cli.cli.app import _register, app
from cti_cli.cli.helpstyle import ORDER

_register()

CTI = str(Path(sys.executable).parent / "cti")
ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPT = ROOT / "tests" / "transcripts" / "ast22_queue_101_answered.ami"


def command_paths() -> Iterator[list[str]]:
    """Every command and group of the tree, as the argv that names it."""

    def walk(command: object, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


ALL = list(command_paths())
TYPE_PLACEHOLDER = re.compile(r"<(str|int|float|bool|path|file|list\[[^]]*\]|[a-z]+ range)>")


def helptext(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "-h"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, (args, result.output)
    return result.output


def test_dash_h_is_help_at_the_top_in_a_process() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    for argv in (["-h"], ["teams", "-h"], ["teams", "member", "-h"]):
        done = subprocess.run([CTI, *argv], capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Usage: cti") and "-h, --help" in done.stdout


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "cti")
def test_dash_h_works_and_placeholders_are_words(path: list[str]) -> None:
    text = helptext(*path)
    assert "-h, --help" in text
    usage = text.splitlines()[0]
    assert "{" not in usage and "}" not in usage, usage  # no `{file}`
    for line in text.splitlines():
        # no Python types as placeholders: <str>, <list[str]>, <float range>, <path>
        assert not TYPE_PLACEHOLDER.search(line), (path, line)


def test_placeholders_say_what_goes_there() -> None:
    configure = helptext("configure")
    for shown in ("--cafile PATH", "--timeout SECONDS", "--rule FILE", "--host HOST",
                  "--port N", "--login NAME", "--dbaccess FILE", "--auth md5|plain"):  # fmt: skip
        assert shown in configure, shown
    assert "Path of the PEM file" in configure  # --cafile says it takes a path
    assert helptext("replay").startswith("Usage: cti replay [OPTIONS] FILE\n")
    assert helptext("teams", "member").startswith("Usage: cti teams member [OPTIONS] NAME\n")
    assert "--ext N" in helptext("teams", "member")
    assert "--login LOGIN" in helptext("teams", "member")
    assert "--filter HEADER=GLOB" in helptext("watch")
    assert "--timeout SECONDS" in helptext("enable")
    assert "--limit N" in helptext("calls")
    assert "-c, --config PATH" in helptext()


def test_commands_are_listed_in_the_order_an_admin_uses_them() -> None:
    text = helptext()
    listed = re.findall(r"^  (\S+)\s", text.split("Commands:\n", 1)[1], re.M)
    known = [name for name in ORDER if name in listed]
    assert listed[: len(known)] == known
    assert listed[0] == "demo" and listed[1] == "configure" and listed[-1] == "disable"


@pytest.mark.parametrize("path", [p for p in ALL if p == [] or len(p) == 1], ids=str)
def test_summaries_fit_in_80_columns(path: list[str]) -> None:
    text = helptext(*path)
    for line in text.splitlines():
        assert len(line) <= 80, line
    if "Commands:\n" in text:
        for line in text.split("Commands:\n", 1)[1].splitlines():
            assert not line.rstrip().endswith("..."), f"summary cut short: {line}"


def test_configure_rule_empty_goes_back_to_the_built_in_rule(tmp_path: Path) -> None:
    conf = tmp_path / "cti.toml"
    rule = tmp_path / "incoming.py"
    rule.write_text("card = 1\n", "utf-8")
    cfg.save(conf, cfg.Config.model_validate({"rule": {"script": str(rule)}}))
    result = CliRunner().invoke(app, ["-c", str(conf), "configure", "--rule", ""])
    assert result.exit_code == 0, result.output
    assert cfg.load_file(conf).rule.script is None


# ------------------------------------------------------------------ cti watch into a pipe
LINE = re.compile(
    r"^\d\d:\d\d:\d\d  (ringing|answered|transferred|ended)  (\d+\.\d+)  (.+) → (\S+)(  .*)?$"
)


class Pbx:
    """A fake AMI peer in a thread: logs in, lists no channels, then plays a recorded call."""

    def __init__(self, events: bytes) -> None:
        self.events = events
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),),
                                       daemon=True)  # fmt: skip

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        sent = False
        while True:
            action = await read_action(reader)
            if action["Action"] == "CoreShowChannels":
                aid = action["ActionID"]
                writer.write(reply(action, EventList="start", Message="Channels will follow"))
                writer.write(wire({"Event": "CoreShowChannelsComplete", "ActionID": aid,
                                   "EventList": "Complete", "ListItems": "0"}))  # fmt: skip
            else:
                writer.write(reply(action))
            await writer.drain()
            if not sent:
                sent = True
                writer.write(self.events)
                await writer.drain()

    async def run(self) -> None:
        async with FakeAMI(self.serve) as server:
            self.port = server.port
            self.ready.set()
            await self.stop.wait()

    def __enter__(self) -> Pbx:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


def test_watch_into_a_pipe_prints_one_plain_line_per_call_change(tmp_path: Path) -> None:
    lines_in = TRANSCRIPT.read_bytes().splitlines()[1:]  # the banner is the peer's own
    conf = tmp_path / "cti.toml"
    with Pbx(b"".join(line + b"\r\n" for line in lines_in)) as pbx:
        cfg.save(conf, cfg.Config.model_validate({"server": {
            "host": "127.0.0.1", "port": pbx.port, "login": "cti", "password": SECRET,
        }}))  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
        proc = subprocess.Popen([CTI, "-c", str(conf), "watch"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                line = proc.stdout.readline()  # arrives while cti still runs: flushed per line
                if not line:
                    break
                lines.append(line.rstrip("\n"))
                if "  ended  " in line:
                    break
        finally:
            proc.kill()  # as a user's kill: every line so far has been printed already
            proc.wait(10)
    assert lines, "no line before the call ended"
    kinds = []
    for line in lines:
        match = LINE.match(line)
        assert match, f"not one plain line: {line!r}"
        kinds.append(match.group(1))
        assert "\x1b" not in line  # no board, no colours
    assert kinds[0] == "ringing" and "answered" in kinds and kinds[-1] == "ended"
    uniqueids = {LINE.match(line).group(2) for line in lines}  # type: ignore[union-attr]
    assert len(uniqueids) == 1  # the caller's uniqueid, what `cti recordings` takes
    assert "ext 101" in next(line for line in lines if "answered" in line)
    assert "answered by 101" in lines[-1]


# ------------------------------------------------------------------ start-up (bench/startup.py)
HEAVY = ("pydantic", "pydantic_settings", "cti_cli.config", "cti_cli.config_model",
         "cti_cli.config_file", "cti_cli.config_env", "cti_cli.config_errors", "asyncio",
         "httpx", "pymysql", "cti_cli.calls.tracker", "cti_cli.notify", "rich.syntax",
         "rich.table")  # fmt: skip


def test_the_command_tree_imports_nothing_heavy() -> None:
    """`cti --help` builds every command: the modules that declare them import the config
    model, asyncio, httpx, pymysql… only inside the commands (see bench/startup.py)."""
    probe = (
        "import sys\n"
        "from cti_cli.cli.app import _register, app\n"
        "_register()\n"
        "import typer.main\n"
        "typer.main.get_command(app)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, check=True)  # fmt: skip
    assert done.stdout.strip() == "", f"imported for --help: {done.stdout.strip()}"
    helped = subprocess.run([sys.executable, "-X", "importtime", "-m", "cti_cli", "--help"],
                            capture_output=True, text=True, cwd=ROOT, check=True)  # fmt: skip
    imported = {line.rsplit("|", 1)[-1].strip() for line in helped.stderr.splitlines()}
    assert not imported & set(HEAVY), imported & set(HEAVY)


def test_webhook_events_in_the_help_are_the_configs() -> None:
    from cti_cli.config import WEBHOOK_EVENTS

    shown = " ".join(helptext("webhooks", "add").split())
    assert f"Comma-separated, of: {', '.join(WEBHOOK_EVENTS)}." in shown
