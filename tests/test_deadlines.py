"""Deadlines that hold against peers that accept and then go silent (issue 11, items 9 and 11).

`cti enable --timeout 2` against an AMI peer that logs in and then answers nothing takes about
2 s in all and does not enable; `cti watch`'s connection honours `server.timeout`; a database
port that accepts and never answers fails `cti recordings` within connectTimeout, saying
"timed out". The peers are in-process (127.0.0.1, port 0).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr
from test_ami_client import SECRET, FakeAMI, Handler, aio, read_action, serve_login

from cti_cli import config as cfg
from cti_cli.ami.check import check_server
from cti_cli.ami.errors import ActionTimeout
from cti_cli.ami.reconnect import ConnectionState, ConnectParams, ReconnectingClient

pytestmark = pytest.mark.timeout(60)

CTI = Path(sys.executable).with_name("cti")


async def login_then_silence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await serve_login(reader, writer)
    while True:
        await read_action(reader)  # reads every action, answers none


def run_cti(conf: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    started = time.monotonic()
    proc = subprocess.run([str(CTI), "--config", str(conf), *args], capture_output=True,
                          text=True, env={**env, "COLUMNS": "200"}, timeout=50,
                          check=False)  # fmt: skip
    return proc, time.monotonic() - started


@contextmanager
def ami_in_thread(handler: Handler) -> Iterator[int]:
    """A fake AMI peer (``handler`` per connection) in a thread of its own; yields its port."""
    loop = asyncio.new_event_loop()
    ready: list[int] = []
    started = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        async with FakeAMI(handler) as server:
            ready.append(server.port)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield ready[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)


@pytest.fixture
def silent_ami() -> Iterator[int]:
    """Logs in, then never answers."""
    with ami_in_thread(login_then_silence) as port:
        yield port


def enabled_config(conf: Path, port: int, *, enabled: bool = False) -> None:
    config = cfg.Config()
    config.server.host, config.server.port = "127.0.0.1", port
    config.server.login = "cti"
    config.server.password = SecretStr(SECRET)
    config.teams.append(cfg.Team(name="Support", members=[cfg.Member(login="ivanov",
                                                                     extensions=["101"])]))
    config.enabled = enabled
    cfg.save(conf, config)


# -- item 9: one deadline for the whole AMI check --------------------------------------------
@aio
async def test_check_against_a_peer_silent_after_login_fails_within_the_timeout() -> None:
    async with FakeAMI(login_then_silence) as server:
        started = time.monotonic()
        with pytest.raises(ActionTimeout, match=r"did not answer CoreSettings within 1 s"):
            await check_server("127.0.0.1", server.port, "cti", SECRET, timeout=1.0)
        assert time.monotonic() - started < 1.8


def test_enable_with_timeout_2_against_a_silent_peer_takes_2_s_and_does_not_enable(
    tmp_path: Path, silent_ami: int
) -> None:
    conf = tmp_path / "cti.toml"
    enabled_config(conf, silent_ami)
    proc, took = run_cti(conf, "enable", "--timeout", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cannot enable" in proc.stderr and "within 2 s" in proc.stderr, proc.stderr
    assert "permission" not in proc.stderr
    assert 1.9 < took < 4.5, took  # 2 s plus the start-up of a Python process
    assert cfg.load_file(conf).enabled is False


@aio
async def test_watch_connection_honours_server_timeout() -> None:
    """The login and the keepalive wait `timeout` (server.timeout), not a fixed 10 s."""
    states: list[ConnectionState] = []

    async def banner_then_silence(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        while True:
            await read_action(reader)

    for handler, expect in ((banner_then_silence, "Challenge within 0.4 s"),
                            (login_then_silence, "did not answer Ping within 0.4 s")):  # fmt: skip
        states.clear()
        async with FakeAMI(handler) as server:
            params = ConnectParams("127.0.0.1", server.port, "cti", SECRET, timeout=0.4,
                                   ping_interval=0.1)  # fmt: skip
            client = ReconnectingClient(params, on_state=states.append, backoff_initial=5)
            started = time.monotonic()

            async def watch(client: ReconnectingClient = client) -> None:
                async for _ in client.events():
                    pass

            task = asyncio.create_task(watch())
            while not any(s.state == "error" for s in states):
                assert time.monotonic() - started < 3, states
                await asyncio.sleep(0.02)
            task.cancel()
            await client.close()
        errors = [s.error or "" for s in states if s.state == "error"]
        assert expect in errors[0], errors


# -- item 11: a database port that accepts and never answers ----------------------------------
@pytest.fixture
def silent_db_port() -> Iterator[int]:
    """Accepts TCP connections and never sends a byte (no MySQL greeting)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def test_recordings_against_a_silent_database_times_out_in_connect_timeout(
    tmp_path: Path, silent_db_port: int
) -> None:
    dbaccess = tmp_path / "dbaccess.properties"
    dbaccess.write_text(
        f"cti.cdr.url=jdbc:mysql://127.0.0.1:{silent_db_port}/asteriskcdrdb?connectTimeout=1500\n"
        "cti.cdr.user=cti_reader\ncti.cdr.password=pw\ncti.cdr.table=cdr\n",
        "utf-8",
    )
    (tmp_path / "rec").mkdir()
    conf = tmp_path / "cti.toml"
    conf.write_text(f'[cdr]\ndbaccess = "{dbaccess}"\nrecordings_dir = "{tmp_path / "rec"}"\n')
    proc, took = run_cti(conf, "recordings", "1795641007.0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "timed out" in proc.stderr and "1.5 s" in proc.stderr, proc.stderr
    assert "closed the connection" not in proc.stderr
    assert took < 4.5, took  # 1.5 s plus start-up, not 60 s
