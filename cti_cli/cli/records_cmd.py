"""`cti recordings UNIQUEID` and `cti calls`: their options here, their work in records.py
(pymysql, the CDR code, rich), imported only when one of them runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def recordings(
    ctx: typer.Context,
    uniqueid: Annotated[str, typer.Argument(metavar="UNIQUEID", help="e.g. 1795641007.0")],
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    copy_to: Annotated[
        Path | None,
        typer.Option(
            "--copy-to", metavar="DIR", help="Copy each recording here (never overwrites)."
        ),
    ] = None,
) -> None:
    """A call's CDR rows (every dialled leg) and its recording file; optionally copy it out."""
    from cti_cli.cli import records

    records.recordings(ctx, uniqueid, json_out, copy_to)


def calls(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="1h|2026-11-25", help="Only calls since then."),
    ] = None,
    number: Annotated[
        str | None,
        typer.Option(
            "--number",
            metavar="N",
            help="Calls from/to this number (8 916… = +7916…); last 30 days unless --since.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10000, metavar="N", help="At most N calls.")
    ] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The call journal: recent calls, answered or missed, who answered, recording present."""
    from cti_cli.cli import records

    records.calls(ctx, since, number, limit, json_out)
