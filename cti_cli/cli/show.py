"""The page of `cti show` (show_cmd.py): the whole CTI admin page as data and as rich
renderables, secrets masked. Imported when a command runs, not for `cti --help`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from cti_cli.cli.common import plain
from cti_cli.config import SECRET_MASK, Config
from cti_cli.rules import RuleError, effective_rule, read_rule


def masked(secret: str) -> str:
    return SECRET_MASK if secret else ""


def page_data(config: Config, path: Path) -> dict[str, Any]:
    """Everything `show` displays, as plain data; no secret leaves this function."""
    server = config.server.model_dump()
    server["password"] = masked(config.server.password.get_secret_value())
    servers = []
    for entry in config.servers:  # several PBXs: each its own connection
        one = entry.model_dump()
        one["password"] = masked(entry.password.get_secret_value())
        servers.append(one)
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
        "servers": servers,
        "teams": [t.model_dump() for t in config.teams],
        "rule": rule,
        "cdr": config.cdr.model_dump(),
        "calls": config.calls.model_dump(),
        "webhooks": [
            {
                "url": mask_url(w.url, zammad=w.format == "zammad"),
                "secret": masked(w.secret.get_secret_value()),
                "secret_file": w.secret_file,
                "format": w.format,
                "events": w.events,
                "timeout": w.timeout,
            }
            for w in config.webhooks
        ],
        "publish": [
            {
                "url": mask_url(b.url),
                "target": _bus_target(b),
                "stream": b.stream,
                "subject": b.subject,
                "events": b.events,
                "timeout": b.timeout,
            }
            for b in config.publish
        ],
        "directory": _directory(config),
        "agent": _agent(config),
        "status": config.status.model_dump(),
    }


def _bus_target(publish: Any) -> str:
    from cti_cli.notify.bus import bus_target  # the bus (asyncio, httpx): only when configured

    return str(bus_target(publish))


def mask_url(url: str, *, zammad: bool = False) -> str:
    """A URL with its credentials masked: user:password@, query values, and for Zammad the
    token that ends its path (`/api/v1/cti/<token>`)."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return SECRET_MASK
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{SECRET_MASK}@{host}"
    path = parts.path
    if zammad and "/" in path.rstrip("/"):
        path = path.rstrip("/").rpartition("/")[0] + "/" + SECRET_MASK
    query = "&".join(
        f"{k}={v if _placeholder(v) else SECRET_MASK}" for k, v in parse_qsl(parts.query, True)
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _placeholder(value: str) -> bool:
    """`{e164}`: a directory URL placeholder, not a secret."""
    return value.startswith("{") and value.endswith("}") and value[1:-1].isidentifier()


def _agent(config: Config) -> dict[str, Any]:
    data = config.agent.model_dump()
    if data.get("lease"):
        data["lease"] = mask_url(data["lease"])  # redis://:password@host
    return data


def _directory(config: Config) -> dict[str, Any]:
    data = config.directory.model_dump()
    source = data["source"] or ""
    if source.startswith(("http://", "https://")):
        # placeholders stay readable; only credentials are hidden
        data["source"] = mask_url(source)
    data["headers"] = {
        k: v if v.startswith("{file:") and v.endswith("}") else SECRET_MASK
        for k, v in data["headers"].items()
    }
    return data


def teams_table(config: Config) -> Table:
    table = Table("team", "login", "name", "extensions", expand=False)
    for team in config.teams:
        if not team.members:
            table.add_row(plain(team.name), Text("(no members)", style="dim"), "", "")
        for i, member in enumerate(team.members):
            table.add_row(
                plain(team.name if i == 0 else ""), plain(member.login), plain(member.name),
                ", ".join(member.extensions),
            )  # fmt: skip
    return table


def _kv(rows: list[tuple[str, str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, plain(value))
    return grid


def _unset(value: object) -> str:
    return "(not set)" if value in (None, "") else str(value)


def render(data: dict[str, Any], *, highlight: bool = True) -> list[RenderableType]:
    """The page as rich renderables; `highlight=False` (no colours: a pipe, NO_COLOR) gives
    the same text without lexing the rule as Python (about 25 ms)."""
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
    connection: RenderableType
    if data.get("servers"):
        connection = Group(_servers_table(data["servers"]), _kv([("servers seen", seen)]))
    else:
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
        lexer = "python" if highlight else "text"
        code = rule["source"].rstrip("\n")
        rule_parts.append(Syntax(code, lexer, line_numbers=True, word_wrap=True))
    teams: RenderableType = (
        teams_table_from(data["teams"]) if data["teams"] else Text("(no teams)", style="dim")
    )
    hooks = Table("url", "secret", "format", "events")
    for w in data["webhooks"]:
        secret = w["secret"] or (f"file {w['secret_file']}" if w["secret_file"] else "(none)")
        events = ", ".join(w["events"]) if w["events"] else "all"
        hooks.add_row(plain(w["url"]), plain(secret), w["format"], events)
    directory = data["directory"]
    agent = data["agent"]
    service = _kv([
        ("directory", _unset(directory["source"])), ("region", directory["region"]),
        ("listen", agent["listen"]), ("admin listen", _unset(agent["admin_listen"])),
        ("state dir", _unset(agent["state_dir"])), ("pop ttl", f"{agent['pop_ttl']:g} s"),
        ("lease", _unset(agent.get("lease")) + (f" (ttl {agent['lease_ttl']:g} s)"
                                                if agent.get("lease") else "")),
    ])  # fmt: skip
    buses = Table("url", "stream", "subject", "events")
    for b in data.get("publish", []):
        events = ", ".join(b["events"]) if b["events"] else "all"
        buses.add_row(plain(b["url"]), plain(b["stream"]), plain(b["subject"]), events)
    cdr = data["cdr"]
    records = _kv([
        ("dbaccess", _unset(cdr["dbaccess"])), ("recordings", cdr["recordings_dir"]),
        ("extension pattern", _unset(data["calls"]["extension_pattern"])),
    ])  # fmt: skip
    none = Text("(none)", style="dim")
    return [
        head,
        _panel("Connection parameters", connection),
        _panel("Responsible teams", teams),
        _panel("Call handling rule", Group(*rule_parts)),
        _panel("Webhooks", hooks if data["webhooks"] else none),
        _panel("Event bus", buses if data.get("publish") else none),
        _panel("Agent and directory", service),
        _panel("Call records", records),
    ]


def _servers_table(servers: list[dict[str, Any]]) -> Table:
    """`[[servers]]`: one row per PBX, in the order the agent connects to them."""
    table = Table("pbx", "type", "host", "port", "login", "password", "tls", "auth")
    for one in servers:
        table.add_row(
            plain(one["name"]), one["type"], plain(_unset(one["host"])), str(one["port"]),
            plain(_unset(one["login"])), one["password"] or "(not set)",
            "on" if one["tls"] else "off", one["auth"],
        )  # fmt: skip
    return table


def _panel(title: str, body: RenderableType) -> Panel:
    # a Text title: a str one is parsed as markup with emoji codes (rich loads its emoji table)
    return Panel(body, title=Text(title), title_align="left")


def teams_table_from(teams: list[dict[str, Any]]) -> Table:
    return teams_table(Config.model_validate({"teams": teams}))
