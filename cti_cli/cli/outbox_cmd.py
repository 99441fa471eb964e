"""`cti outbox`: what waits for the service desk, and what to do about dead letters.

Works while the agent runs: the outbox is SQLite in WAL mode, readers never block the agent,
and a `retry` is picked up by the running agent within two seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cti_cli.cli.common import EXIT_USAGE, console, fail, load_config, say

outbox_app = typer.Typer(
    help="Deliveries waiting in the agent's outbox: list, show, retry, purge.",
    no_args_is_help=True,
)


def _open(ctx: typer.Context) -> Any:
    from cti_cli.agent.service import state_dir
    from cti_cli.notify.outbox import FILENAME, Outbox, OutboxError

    path: Path = state_dir(load_config(ctx)) / FILENAME
    if not path.is_file():
        fail(f"no outbox at {path} yet (the agent has not run with this [agent] state_dir)",
             EXIT_USAGE)  # fmt: skip
    try:
        return Outbox(path)
    except OutboxError as exc:
        fail(str(exc))


def _shown(target: str) -> str:
    from cti_cli.notify.webhook import host_of

    return host_of(target)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@outbox_app.command("list")
def list_items(
    ctx: typer.Context,
    dead: Annotated[bool, typer.Option("--dead", help="Dead letters instead of pending.")] = False,
    all_: Annotated[bool, typer.Option("--all", help="Every state, delivered too.")] = False,
    limit: Annotated[int, typer.Option(metavar="N", help="At most N rows.", min=1)] = 200,
    json_out: Annotated[bool, typer.Option("--json", help="JSON Lines.")] = False,
) -> None:
    """What is waiting: id, webhook, event, call, age, attempts, next try, last error."""
    from cti_cli.textsafe import printable

    states = ("pending", "dead", "expired", "delivered") if all_ else (
        ("dead",) if dead else ("pending",)
    )  # fmt: skip
    outbox = _open(ctx)
    try:
        rows = outbox.rows(states, limit=limit)
    finally:
        outbox.close()
    now = time.time()
    if json_out:
        for row in rows:
            row["webhook"] = _shown(str(row.pop("target")))
            row["building"] = bool(row["building"])
            print(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        say(f"no {'dead' if dead else 'pending'} deliveries" if not all_ else "the outbox is empty")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("id", "webhook", "event", "call", "state", "age", "tries", "next", "last error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = "building" if row["building"] and row["state"] == "pending" else str(row["state"])
        pending = row["state"] == "pending"
        table.add_row(
            str(row["id"]),
            _shown(str(row["target"])),
            str(row["event"]),
            printable(str(row["grp"])),
            state,
            _age(now - float(row["created"])),
            str(row["attempts"]),
            _age(float(row["next_at"]) - now) if pending else "",
            printable(str(row["last_error"] or "")),
        )
    console.print(table, markup=False, highlight=False)


@outbox_app.command("show")
def show_item(
    ctx: typer.Context,
    item_id: Annotated[int, typer.Argument(metavar="ID", help="Row id from cti outbox list.")],
) -> None:
    """One delivery with its body (JSON)."""
    outbox = _open(ctx)
    try:
        row = outbox.row(item_id)
    finally:
        outbox.close()
    if row is None:
        fail(f"no outbox row {item_id}; see cti outbox list --all", EXIT_USAGE)
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "target":
            out["webhook"] = _shown(str(value))
        elif isinstance(value, bytes):
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value.decode("utf-8", "replace")
        else:
            out[key] = value
    print(json.dumps(out, ensure_ascii=False, indent=2))


@outbox_app.command("retry")
def retry(
    ctx: typer.Context,
    item_id: Annotated[
        int | None, typer.Argument(metavar="[ID]", help="A dead or expired row to send again.")
    ] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead letter.")] = False,
) -> None:
    """Send dead letters again (after fixing the webhook); the running agent picks them up."""
    if (item_id is None) == (not dead):
        fail("give a row ID or --dead (every dead letter)", EXIT_USAGE)
    outbox = _open(ctx)
    try:
        count = outbox.requeue(None if dead else [item_id], now=time.time())
    finally:
        outbox.close()
    if item_id is not None and count == 0:
        fail(f"row {item_id} is not a dead or expired delivery; see cti outbox list --dead",
             EXIT_USAGE)  # fmt: skip
    say(f"{count} deliver{'y' if count == 1 else 'ies'} queued again")


@outbox_app.command("purge")
def purge(
    ctx: typer.Context,
    dead: Annotated[bool, typer.Option("--dead", help="Delete every dead letter.")] = False,
) -> None:
    """Delete dead letters you have given up on."""
    if not dead:
        fail("say what to purge: --dead", EXIT_USAGE)
    outbox = _open(ctx)
    try:
        count = outbox.purge("dead")
    finally:
        outbox.close()
    say(f"{count} dead letter{'' if count == 1 else 's'} deleted")
