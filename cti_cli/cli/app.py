"""The `cti` command tree: the root command and its options, and (`_register`) every command,
each declared in its own module."""

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


_registered = False


def _register() -> None:
    """Add every command to `app`: the one place the command tree is assembled. The command
    modules declare plain functions and sub-apps and never import this module. Once only:
    tests and `run()` both call it."""
    global _registered
    if _registered:
        return
    _registered = True
    from cti_cli.cli import (
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

    # In the order they used to register themselves; `cti -h` lists them in helpstyle.ORDER.
    app.command()(agent_cmd.agent)
    app.command()(configure.configure)
    app.add_typer(demo_cmd.demo_app)
    app.command()(doctor_cmd.doctor)
    app.add_typer(events_cmd.events_app, name="events")
    app.add_typer(operator_cmd.operator_app, name="operator")
    app.add_typer(outbox_cmd.outbox_app, name="outbox")
    app.command()(records_cmd.recordings)
    app.command()(records_cmd.calls)
    app.command()(replay.replay)
    app.add_typer(rule_cmd.rule_app, name="rule")
    app.command()(show_cmd.show)
    app.command()(status_cmd.status)
    app.command()(switch.enable)
    app.command()(switch.disable)
    app.add_typer(teams.teams_app, name="teams")
    app.command()(watch.watch)
    app.add_typer(webhooks_cmd.webhooks_app, name="webhooks")


def run() -> None:
    _register()
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("cti: interrupted")
        raise SystemExit(130) from None
