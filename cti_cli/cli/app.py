"""The `cti` command tree. Each command lives in its own module and registers itself here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cti_cli import __version__
from cti_cli.cli.common import State, err_console
from cti_cli.cli.helpstyle import HELP_OPTIONS, CtiGroup

app = typer.Typer(
    name="cti",
    help="Asterisk ↔ Service Desk CTI connector: screen pops for operators, live calls, CDRs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=CtiGroup,  # commands in the order an admin uses them, placeholders as words
    context_settings=HELP_OPTIONS,  # -h as well as --help, inherited by every subcommand
)


def _version(value: bool) -> None:
    if value:
        print(f"cti {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help="Config file (default: $CTI_CONFIG, else $XDG_CONFIG_HOME/cti/cti.toml).",
            dir_okay=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    from cti_cli.config_path import default_path  # not the model: no pydantic before a command

    ctx.obj = State(config_path=config.expanduser() if config else default_path())


def _register() -> None:
    # Imported for their side effect: each module adds its commands to `app`.
    from cti_cli.cli import (  # noqa: F401
        agent_cmd,
        configure,
        demo_cmd,
        doctor_cmd,
        events_cmd,
        operator_cmd,
        outbox_cmd,
        records_cmd,
        replay,
        rule_cmd,
        show_cmd,
        status_cmd,
        switch,
        teams,
        watch,
        webhooks_cmd,
    )


def run() -> None:
    _register()
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("cti: interrupted")
        raise SystemExit(130) from None
