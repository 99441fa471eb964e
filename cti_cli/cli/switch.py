"""`cti enable` / `cti disable`: the on/off switch, guarded by a live check of the AMI server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cti_cli.cli.common import (
    EXIT_USAGE,
    fail,
    load_config,
    load_config_for_edit,
    save_config,
    say,
    warn,
)

if TYPE_CHECKING:  # imported when a command runs: `cti --help` stays fast
    from cti_cli.ami.check import ServerInfo
    from cti_cli.config import Config, ServerConfig


def run_check(
    server: ServerConfig,
    timeout: float | None = None,
    *,
    failure: str = "cannot enable: {reason}; the integration stays disabled",
) -> ServerInfo:
    """Prove the AMI server is reachable and accepts the login; exit 1 with the exact reason
    (``failure`` says it, and what that means for the caller)."""
    import asyncio

    from cti_cli.ami import errors
    from cti_cli.ami.check import check_server
    from cti_cli.ami.params import missing_setting, server_params

    params = server_params(server)
    if params is None:
        missing = f"server.{missing_setting(server)} is not set"
        fail(failure.format(reason=f"the connection parameters are incomplete ({missing})"))
    try:
        return asyncio.run(
            check_server(
                params.host,
                params.port,
                params.username,
                params.secret,
                tls=params.tls,
                auth=params.auth,
                timeout=timeout or params.timeout,
                cafile=params.cafile,
            )
        )
    except errors.AMIError as exc:
        fail(failure.format(reason=exc.describe()))


def record_check(config: Config, info: ServerInfo) -> None:
    config.status.ami_version = info.ami_version
    config.status.asterisk_version = info.asterisk_version
    config.status.checked_at = datetime.now(UTC).isoformat(timespec="seconds")


def enable(
    ctx: typer.Context,
    timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="How long to wait for the AMI server (default: server.timeout).",
            min=0.1,
        ),
    ] = None,
) -> None:
    """Check the AMI server, then switch the integration on."""
    from cti_cli.config import enable_problems

    effective = load_config(ctx)
    if missing := enable_problems(effective):
        fail(f"cannot enable: {missing[0]}", EXIT_USAGE)
    several = bool(effective.servers)
    checked: list[tuple[str, ServerConfig, ServerInfo]] = []
    for name, server in effective.pbx_servers():  # every PBX answers, or nothing is switched on
        failure = (
            f"cannot enable: PBX {name} ({server.host}:{server.port}): {{reason}}; "
            "the integration stays disabled"
            if several
            else "cannot enable: {reason}; the integration stays disabled"
        )
        info = run_check(server, timeout, failure=failure)
        if not info.call_events_verified:
            warn(
                f"warning: could not read AMI user {server.login!r}'s permissions "
                f"{f'on PBX {name} ' if several else ''}(GetConfig/Command not allowed); make "
                "sure its manager.conf section has read=call (or read=all), or no calls will "
                "be seen"
            )
        checked.append((name, server, info))
    config = load_config_for_edit(ctx)
    config.enabled = True
    record_check(config, checked[0][2])
    save_config(ctx, config)
    for name, server, info in checked:
        say(
            f"enabled: {f'{name} ' if several else ''}{server.host}:{server.port} answers "
            f"(AMI {info.ami_version}, Asterisk {info.asterisk_version})",
        )
    from cti_cli.rules import DEFAULT_RULE

    rule = effective.rule
    which = rule.script or f"the built-in rule ({DEFAULT_RULE})"
    say(f"rule: {which} runs on {rule.trigger}")


def disable(ctx: typer.Context) -> None:
    """Switch the integration off (the config is kept)."""
    config = load_config_for_edit(ctx)
    was = config.enabled
    config.enabled = False
    save_config(ctx, config)
    say("disabled" if was else "already disabled")
