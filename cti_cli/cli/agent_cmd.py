"""`cti agent`: run the screen-pop service in the foreground (systemd runs it so)."""

from __future__ import annotations

import enum
import errno
import logging
from typing import Annotated

import typer

from cti_cli.cli.common import EXIT_FAILURE, EXIT_USAGE, fail, load_config, state


class LogFormat(enum.StrEnum):
    text = "text"
    json = "json"


def agent(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log every delivery, not only problems.")
    ] = False,
    log_format: Annotated[
        LogFormat,
        typer.Option("--log-format", help="text (default) or json lines for journald/Loki."),
    ] = LogFormat.text,
) -> None:
    """Run the service: follow calls, run the rule, deliver screen pops and call events."""
    import asyncio

    from cti_cli.agent import logs
    from cti_cli.agent.rule import compile_rule
    from cti_cli.agent.service import Agent, StateDirBusy
    from cti_cli.notify.outbox import OutboxError
    from cti_cli.rules import RuleError, effective_rule

    config = load_config(ctx)
    rule = effective_rule(config.rule.script)
    try:
        compile_rule(rule)  # a rule that cannot run is refused now, not found on the first call
    except RuleError as exc:
        fail(f"{exc}; fix [rule] script (cti rule test tries it)", EXIT_USAGE)
    logs.setup(logging.DEBUG if verbose else logging.INFO, log_format.value)
    service = Agent(state(ctx).config_path, config)
    try:
        code = asyncio.run(service.run())
    except (OutboxError, StateDirBusy) as exc:
        fail(str(exc), EXIT_FAILURE)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            fail(
                f"cannot listen on {config.agent.listen}: {exc.strerror}; "
                "set [agent] listen to a free HOST:PORT",
                EXIT_USAGE,
            )
        fail(f"{exc.strerror or exc}", EXIT_FAILURE)
    raise typer.Exit(code)
