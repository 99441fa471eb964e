"""`cti demo` / `cti demo pbx`: the product working end to end with no Asterisk at hand."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from cti_cli.cli.common import EXIT_USAGE, err_console, fail

demo_app = typer.Typer(
    name="demo",
    help="Try cti with no Asterisk: a simulated PBX, the real agent, screen pops on screen.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """`30`, `30s`, `2m`, `1h` → seconds; None stays None (until Ctrl-C)."""
    if text is None:
        return None
    match = _DURATION.match(text.lower())
    if not match or float(match.group(1)) <= 0:
        fail(f"--duration {text!r}: give seconds like 30, 30s, 2m or 1h", EXIT_USAGE)
    return float(match.group(1)) * _UNIT[match.group(2)]


RateOption = Annotated[
    float,
    typer.Option("--rate", min=0, help="Calls per minute (the first starts at once; 0: none)."),
]
DurationOption = Annotated[
    str | None,
    typer.Option(
        "--duration",
        metavar="DURATION",
        help="How long to make calls: 30, 30s, 2m, 1h (default: until Ctrl-C).",
    ),
]
SeedOption = Annotated[
    int | None, typer.Option("--seed", help="Same seed, same calls (default: a random one).")
]


@demo_app.callback()
def demo(
    ctx: typer.Context,
    rate: RateOption = 30.0,
    duration: DurationOption = None,
    seed: SeedOption = None,
    headless: Annotated[
        bool, typer.Option("--headless", help="No live board: print lines (scripts, CI).")
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help="With --headless: call events and delivered webhooks as JSON Lines."
        ),
    ] = False,
) -> None:
    """Simulated PBX + the real agent + a webhook receiver; calls ring, pops arrive."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio
    import shutil
    import tempfile

    from cti_cli.demo.run import DemoOptions, run_demo

    if json_out and not headless:
        headless = True  # JSON Lines are for scripts: no board around them
    options = DemoOptions(rate=rate, duration=parse_duration(duration), seed=seed,
                          headless=headless, json=json_out)  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="cti-demo-"))
    try:
        code = asyncio.run(run_demo(options, folder, sys.stdout, err_console))
    except KeyboardInterrupt:
        code = 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    raise typer.Exit(code)


@demo_app.command("pbx")
def demo_pbx(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="AMI port (0: any free).")] = 5038,
    login: Annotated[str, typer.Option(help="The AMI user name it accepts.")] = "cti",
    password: Annotated[
        str, typer.Option(help="The AMI secret it accepts (a demo secret, not a real one).")
    ] = "cti-demo",
    rate: RateOption = 30.0,
    duration: DurationOption = None,
    seed: SeedOption = None,
) -> None:
    """Only the simulated PBX: try cti configure / enable / watch / agent against it."""
    import asyncio

    from cti_cli.demo.run import PbxOptions, run_pbx

    options = PbxOptions(host=host, port=port, login=login, password=password, rate=rate,
                         duration=parse_duration(duration), seed=seed)  # fmt: skip
    try:
        code = asyncio.run(run_pbx(options, sys.stdout))
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


__all__ = ["demo", "demo_pbx", "parse_duration"]
