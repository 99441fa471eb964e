"""`cti show`: the whole CTI admin page in one screen (or JSON), secrets masked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from cti_cli.cli.app import app
from cti_cli.cli.common import console, load_config, state
from cti_cli.config import SECRET_MASK, Config
from cti_cli.rules import RuleError, effective_rule, read_rule


def masked(secret: str) -> str:
    return SECRET_MASK if secret else ""


def page_data(config: Config, path: Path) -> dict[str, Any]:
    """Everything `show` displays, as plain data; no secret leaves this function."""
    server = config.server.model_dump()
    server["password"] = masked(config.server.password.get_secret_value())
    rule: dict[str, Any] = config.rule.model_dump()
    rule["source"] = None
    rule["error"] = None
    rule["effective"] = str(effective_rule(config.rule.script))
    try:
        rule["source"] = read_rule(Path(rule["effective"]))
    except RuleError as exc:
        rule["error"] = str(exc)
    return {
        "config_file": str(path),
        "enabled": config.enabled,
        "server": server,
        "teams": [t.model_dump() for t in config.teams],
        "rule": rule,
        "cdr": config.cdr.model_dump(),
        "calls": config.calls.model_dump(),
        "webhooks": [
            {"url": w.url, "secret": masked(w.secret.get_secret_value()), "format": w.format}
            for w in config.webhooks
        ],
        "status": config.status.model_dump(),
    }


def teams_table(config: Config) -> Table:
    table = Table("team", "login", "name", "extensions", expand=False)
    for team in config.teams:
        if not team.members:
            table.add_row(team.name, Text("(no members)", style="dim"), "", "")
        for i, member in enumerate(team.members):
            table.add_row(
                team.name if i == 0 else "", member.login, member.name, ", ".join(member.extensions)
            )
    return table


def _kv(rows: list[tuple[str, str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, Text(value))
    return grid


def _unset(value: object) -> str:
    return "(not set)" if value in (None, "") else str(value)


def render(data: dict[str, Any]) -> list[RenderableType]:
    s = data["server"]
    status = data["status"]
    on = data["enabled"]
    head = Text.assemble(
        ("CTI integration: ", "bold"),
        ("enabled" if on else "disabled", "bold green" if on else "bold red"),
        f"   ({data['config_file']})",
    )
    seen = (
        f"AMI {status['ami_version']}, Asterisk {status['asterisk_version']} "
        f"(checked {status['checked_at']})"
        if status["ami_version"]
        else "never checked; run cti enable"
    )
    connection = _kv([
        ("type", s["type"]), ("host", _unset(s["host"])), ("port", str(s["port"])),
        ("login", _unset(s["login"])), ("password", s["password"] or "(not set)"),
        ("tls", "on" if s["tls"] else "off"), ("cafile", _unset(s["cafile"])),
        ("auth", s["auth"]), ("timeout", f"{s['timeout']:g} s"), ("server seen", seen),
    ])  # fmt: skip
    rule = data["rule"]
    rule_parts: list[RenderableType] = [
        _kv(
            [
                ("script", rule["script"] or f"built-in ({rule['effective']})"),
                ("trigger", rule["trigger"]),
            ]
        )
    ]
    if rule["error"]:
        rule_parts.append(Text(rule["error"], style="red"))
    elif rule["source"] is not None:
        rule_parts.append(
            Syntax(rule["source"].rstrip("\n"), "python", line_numbers=True, word_wrap=True)
        )
    teams: RenderableType = (
        teams_table_from(data["teams"]) if data["teams"] else Text("(no teams)", style="dim")
    )
    hooks = Table("url", "secret", "format")
    for w in data["webhooks"]:
        hooks.add_row(w["url"], w["secret"] or "(none)", w["format"])
    cdr = data["cdr"]
    records = _kv([
        ("dbaccess", _unset(cdr["dbaccess"])), ("recordings", cdr["recordings_dir"]),
        ("extension pattern", _unset(data["calls"]["extension_pattern"])),
    ])  # fmt: skip
    return [
        head,
        Panel(connection, title="Connection parameters", title_align="left"),
        Panel(teams, title="Responsible teams", title_align="left"),
        Panel(Group(*rule_parts), title="Call handling rule", title_align="left"),
        Panel(
            hooks if data["webhooks"] else Text("(none)", style="dim"),
            title="Webhooks",
            title_align="left",
        ),
        Panel(records, title="Call records", title_align="left"),
    ]


def teams_table_from(teams: list[dict[str, Any]]) -> Table:
    return teams_table(Config.model_validate({"teams": teams}))


@app.command()
def show(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the configuration: connection, teams, rule, webhooks, on/off (secrets masked)."""
    config = load_config(ctx)
    data = page_data(config, state(ctx).config_path)
    if json_out:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    for part in render(data):
        console.print(part)
