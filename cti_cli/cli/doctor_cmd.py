"""`cti doctor [--json]`: the whole integration checked, a line per check, with the fix."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated

import typer

from cti_cli.cli.common import EXIT_FAILURE, console, state

_STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}


def doctor(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    sample: Annotated[
        float,
        typer.Option("--sample", metavar="SECONDS", min=0.2, max=60,
                     help="How long to sample the AMI event stream."),
    ] = 5.0,
) -> None:
    """Check config, AMI, rule, directory, webhooks, CDR database, recordings and the agent.

    Exit 0 when no check FAILs (WARNs are allowed), 1 otherwise.
    """
    import asyncio

    from rich.text import Text

    from cti_cli.doctor import counts, diagnose
    from cti_cli.textsafe import printable

    path = state(ctx).config_path
    with contextlib.redirect_stdout(sys.stderr):  # a rule's print() during its trial run
        checks = asyncio.run(diagnose(path, sample=sample))
    totals = counts(checks)
    if json_out:
        data = {
            "config": str(path),
            "ok": totals["FAIL"] == 0,
            "counts": totals,
            "checks": [c.to_dict() for c in checks],
        }
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            line = Text()
            line.append(f"{check.status:<4}", style=_STYLE[check.status])
            line.append(f"  {check.name:<{width}}  ", style="bold")
            line.append(printable(check.detail))
            if check.fix:
                line.append(" → ", style="dim")
                line.append(printable(check.fix), style=_STYLE[check.status].split()[-1])
            console.print(line, soft_wrap=True)
            for extra in check.extra:
                console.print(Text("      " + printable(extra)), soft_wrap=True)
        summary = ", ".join(f"{n} {s}" for s, n in totals.items())
        console.print(Text(summary, style="bold"), soft_wrap=True)
    if totals["FAIL"]:
        raise typer.Exit(EXIT_FAILURE)
