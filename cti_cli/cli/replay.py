"""`cti replay FILE`: what cti understood of a captured AMI stream, call by call."""

from __future__ import annotations

from typing import Annotated

import typer

from cti_cli.cli.app import app


@app.command()
def replay(
    file: Annotated[
        str, typer.Argument(help="Raw AMI capture, JSON array or JSON Lines; - reads stdin.")
    ],
    json_out: Annotated[bool, typer.Option("--json", help="Call events as JSON Lines.")] = False,
    extension_pattern: Annotated[
        str | None,
        typer.Option(
            metavar="REGEX", help="Regex with a group for the extension in device channel names."
        ),
    ] = None,
) -> None:
    """Replay a captured AMI stream through the call tracker (per-call summary or --json)."""
    from cti_cli.cli.replay_cmd import replay_command

    raise typer.Exit(replay_command(file, json_out, extension_pattern))
