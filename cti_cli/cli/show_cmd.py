"""`cti show`: the whole CTI admin page in one screen (or JSON), secrets masked.

The page itself (rich, the config model, the rule) is in show.py, imported when the command
runs: `cti --help` does not pay for it.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cti_cli.cli.common import console, load_config, state


def show(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the configuration: connection, teams, rule, webhooks, on/off (secrets masked)."""
    from cti_cli.cli.show import page_data, render

    config = load_config(ctx)
    data = page_data(config, state(ctx).config_path)
    if json_out:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    for part in render(data, highlight=console.color_system is not None):
        console.print(part)
