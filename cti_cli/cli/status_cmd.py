"""`cti status`: one screen — on or off, the agent, AMI, calls now, pops today, the outbox."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cti_cli.cli.common import console, load_config


def _servers(config: Any) -> str | None:
    """`host:port`, or with `[[servers]]` every PBX as `name host:port`, comma-separated."""
    if config.servers:
        return ", ".join(f"{s.name} {s.host or '(no host)'}:{s.port}" for s in config.servers)
    return f"{config.server.host}:{config.server.port}" if config.server.host else None


def gather(config: Any) -> dict[str, Any]:
    """Everything `status` shows, as plain data (no secret, no caller number)."""
    import httpx

    from cti_cli.agent.service import state_dir
    from cti_cli.notify.outbox import FILENAME, Outbox, OutboxError

    data: dict[str, Any] = {
        "enabled": config.enabled,
        "server": _servers(config),
        "asterisk_version": config.status.asterisk_version,
        "ami_version": config.status.ami_version,
    }
    listen = config.agent.admin_listen or config.agent.listen
    try:
        reply = httpx.get(f"http://{listen}/healthz", timeout=2)
        health = reply.json()
        data["agent"] = {"running": True, "status": health.get("status"),
                         "reason": health.get("reason"),
                         "ami_connected": health.get("ami", {}).get("connected"),
                         "active_calls": health.get("active_calls")}  # fmt: skip
    except (httpx.HTTPError, ValueError):
        data["agent"] = {"running": False, "listen": listen}
    path = Path(state_dir(config)) / FILENAME
    data["outbox"] = None
    if path.is_file():
        try:
            outbox = Outbox(path)
        except OutboxError as exc:
            data["outbox"] = {"error": str(exc)}
        else:
            try:
                now = time.localtime()
                midnight = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))
                counts = outbox.counts_since("screen_pop", midnight)
                today = {("waiting" if k == "pending" else k): v for k, v in counts.items() if v}
                oldest = outbox.oldest_pending()
                data["outbox"] = {
                    "pending": outbox.depth(),
                    "oldest_pending_s": None if oldest is None else round(time.time() - oldest),
                    "pops_today": today,
                }
            finally:
                outbox.close()
    return data


def status(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """On or off, the agent and its AMI connection, calls now, pops today, the outbox."""
    data = gather(load_config(ctx))
    if json_out:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    from rich.table import Table

    from cti_cli.textsafe import printable

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("integration", "enabled" if data["enabled"] else "disabled (cti enable)")
    server = data["server"] or "(not configured)"
    if data["asterisk_version"]:
        server += f"  Asterisk {data['asterisk_version']}, AMI {data['ami_version']}"
    grid.add_row("PBX", printable(server))
    agent = data["agent"]
    if agent["running"]:
        line = agent["status"] + (f": {agent['reason']}" if agent["reason"] else "")
        grid.add_row("agent", printable(line))
        grid.add_row("AMI", "logged in" if agent["ami_connected"] else "not connected")
        grid.add_row("calls now", str(agent["active_calls"]))
    else:
        grid.add_row("agent", f"not running (nothing answers on {agent['listen']})")
    box = data["outbox"]
    if box is None:
        grid.add_row("outbox", "none yet")
    elif "error" in box:
        grid.add_row("outbox", printable(box["error"]))
    else:
        today = ", ".join(f"{k} {v}" for k, v in sorted(box["pops_today"].items())) or "none"
        grid.add_row("pops today", today)
        oldest = box["oldest_pending_s"]
        waiting = f"{box['pending']} waiting" + (f", oldest {oldest} s" if oldest else "")
        grid.add_row("outbox", waiting)
    console.print(grid)
