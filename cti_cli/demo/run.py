"""`cti demo`: the simulated PBX, the real agent, a webhook receiver and the live board, in one
process and one temporary folder.

    SimPbx (loopback AMI) ──► Agent (the real `cti agent`: tracker, rule, outbox, webhooks)
          │                         └──► Receiver (checks signatures) ──► pops pane / JSON
          └──► AMIClient ──► CallTracker ──► CallBoard / JSON call events

The agent gets a config written into the folder like any other (`cti.toml`: the PBX, two
teams, operators 101–103, 104 in no team, the built-in rule on answer, an employee directory
CSV, one webhook), so `cti -c <folder>/cti.toml show` tells what it runs with.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import random
import secrets
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import SecretStr
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cti_cli import config as cfg
from cti_cli.ami.client import AMIClient
from cti_cli.ami.reconnect import ConnectionState
from cti_cli.calls import CallEvent, CallTracker, Ended
from cti_cli.cli.live_calls import CallBoard
from cti_cli.demo.pbx import DEFAULT_LOGIN, SimPbx
from cti_cli.demo.player import Player
from cti_cli.demo.receiver import Delivery, Receiver
from cti_cli.demo.scenarios import EMPLOYEES, TEAMS, PlannedCall, Traffic
from cti_cli.demo.templates import Timing
from cti_cli.textsafe import printable

__all__ = ["DemoOptions", "PbxOptions", "operator_links", "run_demo", "run_pbx", "write_setup"]

DEFAULT_RATE = 30.0  # calls per minute: a call every 2 s on average
DRAIN_SECONDS = 3.0  # at the end, calls in progress get this long to end on their own
FLUSH_SECONDS = 5.0  # then the agent's outbox gets this long to deliver
REFRESH_SECONDS = 0.5
POPS_SHOWN = 12


@dataclass
class DemoOptions:
    rate: float = DEFAULT_RATE
    duration: float | None = None  # seconds; None: until Ctrl-C
    seed: int | None = None
    headless: bool = False
    json: bool = False
    timing: Timing = field(default_factory=Timing)


@dataclass
class PbxOptions:
    host: str = "127.0.0.1"
    port: int = 5038
    login: str = DEFAULT_LOGIN
    password: str = "cti-demo"
    rate: float = DEFAULT_RATE
    duration: float | None = None
    seed: int | None = None
    timing: Timing = field(default_factory=Timing)


# ---------------------------------------------------------------------- the demo's setup


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_directory(path: Path) -> None:
    """The employee directory CSV (`;`-separated, UTF-8): Cyrillic and Latin names."""
    lines = ["id;name;phone;department;email"]
    lines += [";".join(row) for row in EMPLOYEES]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_setup(
    folder: Path, *, pbx_port: int, login: str, secret: str, hook_url: str, hook_secret: str
) -> tuple[Path, cfg.Config]:
    """The demo's `cti.toml` (and employees.csv, state folder) in `folder`."""
    directory = folder / "employees.csv"
    write_directory(directory)
    teams = [
        cfg.Team(name=team, members=[
            cfg.Member(login=user, name=name, extensions=[ext]) for user, name, ext in members
        ])
        for team, members in TEAMS
    ]  # fmt: skip
    config = cfg.Config(
        enabled=True,
        server=cfg.ServerConfig(
            host="127.0.0.1", port=pbx_port, login=login, password=SecretStr(secret)
        ),
        teams=teams,
        directory=cfg.DirectoryConfig(source=f"csv:{directory}", region="RU"),
        webhooks=[cfg.Webhook(url=hook_url, secret=SecretStr(hook_secret))],
        agent=cfg.AgentConfig(
            listen=f"127.0.0.1:{_free_port()}", state_dir=str(folder / "state"), pop_ttl=60
        ),
    )
    path = folder / "cti.toml"
    cfg.save(path, config)
    return path, cfg.load_file(path)


def operator_links(config: cfg.Config) -> list[str]:
    """HOOK: each team operator's personal page link (`cti operator link LOGIN`), as
    `login (ext): URL` lines; [] while the operator pages (cti_cli.agent.operators) are not
    there or cannot make links."""
    try:
        operators: Any = importlib.import_module("cti_cli.agent.operators")
        from cti_cli.agent.service import state_dir

        store = operators.TokenStore(state_dir(config) / operators.FILE_NAME)
        public = getattr(config.agent, "public_url", None)
        links = []
        for team in config.teams:
            for member in team.members:
                token = store.token(member.login)
                url = operators.page_url(public, config.agent.listen, token)
                ext = ",".join(member.extensions)
                links.append(f"{member.login} ({ext}, {team.name}): {url}")
        return links
    except Exception:  # the page module is optional here: no links rather than no demo
        return []


# ---------------------------------------------------------------------- the pops pane


def _pop_lines(body: dict[str, Any]) -> Text:
    """`12:01:03 102 Мария Петрова ← +79161234567 Пётр Сидоров` / card / form."""
    op = body.get("operator") or {}
    call = body.get("call") or {}
    caller = call.get("caller_e164") or call.get("caller") or "?"
    name = call.get("caller_name") or ""
    text = Text()
    text.append(time.strftime("%H:%M:%S "), style="dim")
    text.append(printable(f"{op.get('extension', '?')} {op.get('name') or op.get('login')}"),
                style="bold cyan")  # fmt: skip
    text.append(" ← ")
    text.append(printable(f"{caller} {name}".strip()), style="bold")
    for item in body.get("open") or []:
        kind = item.get("type")
        if kind == "employee_card":
            emp = item.get("employee") or {}
            line = f"card: {emp.get('id', '')} {emp.get('name', '')}"
            if emp.get("department"):
                line += f", {emp['department']}"
            text.append("\n    " + printable(line), style="green")
        elif kind == "request_form":
            fields = item.get("fields") or {}
            shown = ", ".join(f"{k}={v}" for k, v in fields.items() if v not in ("", None))
            text.append("\n    " + printable(f"form: {shown}"), style="yellow")
    return text


class DemoScreen:
    """The board of `cti watch` beside the pops the receiver accepted."""

    def __init__(self, board: CallBoard, header: Text, links: list[str]) -> None:
        self.board = board
        self.header = header
        self.links = links
        self.pops: deque[Text] = deque(maxlen=POPS_SHOWN)
        self.pop_count = 0

    def add_pop(self, body: dict[str, Any]) -> None:
        self.pop_count += 1
        self.pops.appendleft(_pop_lines(body))

    def render(self, now: float) -> RenderableType:
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=3)
        grid.add_column(ratio=2)
        pops: RenderableType = Group(*self.pops) if self.pops else Text(
            "none yet: a pop goes out when a team member answers", style="dim")  # fmt: skip
        grid.add_row(
            self.board.render(now),
            Panel(pops, title=f"screen pops delivered ({self.pop_count})", title_align="left"),
        )
        parts: list[RenderableType] = [self.header]
        if self.links:
            parts.append(Text("operator pages (open one in a browser to watch its pops):",
                              style="dim"))  # fmt: skip
            parts += [Text("  " + link, style="dim") for link in self.links]
        parts.append(grid)
        return Group(*parts)


# ---------------------------------------------------------------------- running


def _headless_line(event: CallEvent) -> str:
    data = event.to_dict()
    ext = data.get("extension") or data.get("to") or ""
    who = printable(f"{data['caller']} {data['caller_name']}".strip())
    if isinstance(event, Ended):
        by = ", ".join(data["answered_by"]) or "nobody"
        return f"{'ended':<12}{who} → {data['dialed']}: {data['reason']}, answered by {by}"
    return f"{data['event']:<12}{who} → {data['dialed']} {ext}"  # "transferred" is 11 wide


async def _follow(
    host: str, port: int, login: str, secret: str, tracker: CallTracker,
    emit: Callable[[list[CallEvent]], None], ready: asyncio.Event,
) -> None:  # fmt: skip
    client = AMIClient()
    try:
        await client.connect(host, port, timeout=5)
        await client.login(login, secret)
        ready.set()
        async for message in client.events():
            if call_events := tracker.feed(message):
                emit(call_events)
    finally:
        await client.close()


async def run_demo(options: DemoOptions, folder: Path, out: TextIO, console: Console) -> int:
    """The whole demo; returns the exit code (0 at the end or on Ctrl-C)."""
    loop = asyncio.get_running_loop()
    seed = options.seed if options.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    ami_secret = secrets.token_urlsafe(12)
    pbx = SimPbx(login=DEFAULT_LOGIN, secret=ami_secret, rng=random.Random(rng.random()))
    host, port = await pbx.start()
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    def hand_over(item: Delivery) -> None:  # from the receiver's thread
        loop.call_soon_threadsafe(deliveries.put_nowait, item)

    receiver = Receiver(secrets.token_urlsafe(16), hand_over).start()
    config_path, config = write_setup(
        folder, pbx_port=port, login=DEFAULT_LOGIN, secret=ami_secret, hook_url=receiver.url,
        hook_secret=receiver.secret,
    )  # fmt: skip
    _agent_logging(folder / "agent.log", options.headless)

    from cti_cli.agent.service import Agent

    agent = Agent(config_path, config, install_signals=False)
    agent_task = asyncio.create_task(agent.run(), name="agent")
    tracker = CallTracker()
    board = CallBoard(tracker, server=f"{host}:{port} (simulated Asterisk 22)")
    header = Text.assemble(
        ("cti demo", "bold"), f" — simulated PBX {host}:{port}, {options.rate:g} calls/min, "
        f"seed {seed}; folder {folder}; Ctrl-C stops", style="",
    )  # fmt: skip
    links = operator_links(config)
    screen = DemoScreen(board, header, links)

    def emit(events: list[CallEvent]) -> None:
        if options.json:
            for event in events:
                out.write(event.to_json() + "\n")
            out.flush()
        elif options.headless:
            for event in events:
                out.write(_headless_line(event) + "\n")
            out.flush()
        board.record(events, time.monotonic())

    def delivered(item: Delivery) -> None:
        if options.json:
            out.write(json.dumps({"webhook": item.body}, ensure_ascii=False,
                                 separators=(",", ":")) + "\n")  # fmt: skip
            out.flush()
        if item.event == "screen_pop":
            screen.add_pop(item.body)
            if options.headless and not options.json:
                out.write("pop       " + _pop_lines(item.body).plain.split("\n", 1)[0][9:] + "\n")
                out.flush()

    async def pump_deliveries() -> None:
        while True:
            delivered(await deliveries.get())

    ready = asyncio.Event()
    follower = asyncio.create_task(
        _follow(host, port, DEFAULT_LOGIN, ami_secret, tracker, emit, ready), name="board"
    )
    pumper = asyncio.create_task(pump_deliveries(), name="deliveries")
    player = Player(pbx, Traffic(rng, options.timing, options.rate), timing=options.timing,
                    rng=rng)  # fmt: skip
    code = 0
    live: Live | None = None
    try:
        if not await _wait_until(lambda: ready.is_set() and agent.connected, 10.0, agent_task):
            console.print(f"cti demo: the agent did not connect to the simulated PBX "
                          f"(see {folder / 'agent.log'})", markup=False)  # fmt: skip
            return 1
        board.set_connection(ConnectionState("connected"), time.monotonic())
        if options.headless:
            info = console if options.json else Console(file=out, highlight=False)
            info.print(header.plain, markup=False, soft_wrap=True)
            for link in links:
                info.print(f"operator page {link}", markup=False, soft_wrap=True)
        else:
            live = Live(screen.render(time.monotonic()), console=console, auto_refresh=False)
            live.start()
        generator = asyncio.create_task(player.generate(options.duration, stop))
        while not generator.done():
            await asyncio.wait({generator, follower}, timeout=REFRESH_SECONDS,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if follower.done():  # the board lost the PBX: nothing sensible to show
                stop.set()
            if live is not None:
                live.update(screen.render(time.monotonic()), refresh=True)
        generator.result()
        await _finish(player, tracker, agent, stop, live, screen)
    finally:
        stop.set()
        await player.cancel()
        agent.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(agent_task, 10.0)
        while not deliveries.empty():
            delivered(deliveries.get_nowait())
        for task in (follower, pumper):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if live is not None:
            live.update(screen.render(time.monotonic()), refresh=True)
            live.stop()
        receiver.stop()
        await pbx.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return code


async def _finish(
    player: Player, tracker: CallTracker, agent: Any, stop: asyncio.Event, live: Live | None,
    screen: DemoScreen,
) -> None:  # fmt: skip
    """Calls in progress end (at once after Ctrl-C), the board sees them end, the agent
    delivers what it has."""

    async def refresh_while(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        while not task.done():
            await asyncio.wait({task}, timeout=REFRESH_SECONDS)
            if live is not None:
                live.update(screen.render(time.monotonic()), refresh=True)
        task.result()

    await refresh_while(player.finish(0.0 if stop.is_set() else DRAIN_SECONDS))
    await refresh_while(_wait_until(lambda: not tracker.active_calls(), 2.0))
    outbox = agent.outbox
    await refresh_while(_wait_until(lambda: outbox is None or outbox.depth() == 0, FLUSH_SECONDS))


async def _wait_until(
    pred: Callable[[], bool], timeout: float, guard: asyncio.Task[Any] | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline or (guard is not None and guard.done()):
            return pred()
        await asyncio.sleep(0.05)
    return True


def _agent_logging(path: Path, headless: bool) -> None:
    """The agent's log goes to the demo folder (the screen is the board); warnings also to
    stderr when headless."""
    from cti_cli.agent.logs import SafeFormatter

    root = logging.getLogger("cti")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(SafeFormatter())
    root.addHandler(to_file)
    if headless:
        errors = logging.StreamHandler()
        errors.setLevel(logging.WARNING)
        errors.setFormatter(SafeFormatter())
        root.addHandler(errors)
    root.setLevel(logging.INFO)
    root.propagate = False


# ---------------------------------------------------------------------- cti demo pbx


async def run_pbx(options: PbxOptions, out: TextIO) -> int:
    """Only the simulated PBX (and its traffic), until Ctrl-C or `duration`."""
    loop = asyncio.get_running_loop()
    seed = options.seed if options.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pbx = SimPbx(login=options.login, secret=options.password, host=options.host,
                 port=options.port, rng=random.Random(rng.random()))  # fmt: skip
    try:
        host, port = await pbx.start()
    except OSError as exc:
        out.write(f"cti demo pbx: cannot listen on {options.host}:{options.port}: "
                  f"{exc.strerror or exc}\n")  # fmt: skip
        return 1

    def said(call: PlannedCall) -> None:
        exts = ", ".join(sorted(call.phones)) or "-"
        who = printable(f"{call.caller} {call.caller_name}".strip())
        out.write(f"call: {call.kind.label} ({exts}) from {who}\n")
        out.flush()

    out.write(
        f"simulated Asterisk 22 AMI on {host}:{port} — login {options.login}, password "
        f"{options.password}; {options.rate:g} calls/min, seed {seed}; Ctrl-C stops\n"
        f"try: cti configure --host {host} --port {port} --login {options.login} "
        f"--password-stdin <<< '{options.password}'\n"
        '     cti teams add Support; cti teams member Support --login ivanov --ext 101\n'
        "     cti enable; cti watch   (or cti agent)\n"
    )  # fmt: skip
    out.flush()
    player = Player(pbx, Traffic(rng, options.timing, options.rate), timing=options.timing,
                    rng=rng, on_call=said)  # fmt: skip
    try:
        await player.generate(options.duration, stop)
        if options.duration is not None and not stop.is_set():
            await player.finish(DRAIN_SECONDS)
    finally:
        await player.cancel()
        await pbx.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
