"""`cti events tail`: read the event bus (`[[publish]]`) back — for admins and tests."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from cti_cli.cli.common import EXIT_FAILURE, EXIT_USAGE, fail, load_config
from cti_cli.textsafe import whole_json

events_app = typer.Typer(
    help="The event bus ([[publish]]): read call events and screen pops back.",
    no_args_is_help=True,
)


def _summary(event: str | None, body: dict[str, Any]) -> str:
    from cti_cli.textsafe import printable

    inner = body.get("call")
    call: dict[str, Any] = inner if isinstance(inner, dict) else body
    caller = str(call.get("caller") or "?")
    if event == "screen_pop":
        operator = body.get("operator") or {}
        text = f"{caller} → {operator.get('login')} ({operator.get('extension')})"
    else:
        ext = body.get("extension") or ", ".join(body.get("answered_by") or [])
        text = f"{caller} {ext}".rstrip()
        if body.get("reason"):
            text += f" {body['reason']}"
    return printable(text)


@events_app.command("tail")
def tail(
    ctx: typer.Context,
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject",
            help="Pattern, NATS style: cti.pbx1.pop.*, cti.> (default: "
            "everything under the [[publish]] subject).",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON Lines: subject, id, event, body.")
    ] = False,
    bus: Annotated[int, typer.Option("--bus", help="Which [[publish]] block (0 = first).")] = 0,
    history: Annotated[
        bool, typer.Option("--all", help="NATS: first what the stream still holds, then live.")
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Exit after this many messages.")
    ] = None,
    seconds: Annotated[
        float | None, typer.Option("--for", min=0.0, help="Exit after this many seconds.")
    ] = None,
) -> None:
    """Follow the call events and pops the agent publishes, as they arrive (Ctrl-C stops)."""
    import asyncio

    from cti_cli.notify.bus import read_bus

    config = load_config(ctx)
    if not config.publish:
        fail("no [[publish]] event bus is configured (add one to cti.toml)", EXIT_USAGE)
    if not 0 <= bus < len(config.publish):
        fail(f"--bus {bus}: there are {len(config.publish)} [[publish]] blocks (0–"
             f"{len(config.publish) - 1})", EXIT_USAGE)  # fmt: skip
    publish = config.publish[bus]

    def ready() -> None:
        print(f"listening on {publish.kind} {subject or publish.subject + '.>'}",
              file=sys.stderr, flush=True)  # fmt: skip

    async def run() -> None:
        seen = 0
        async for message in read_bus(publish, subject, history=history, ready=ready):
            try:
                body: Any = whole_json(json.loads(message.body))
            except (ValueError, RecursionError):
                body = message.body.decode("utf-8", "replace")
            if json_out:
                out = {"subject": message.subject, "id": message.key, "event": message.event,
                       "body": body}  # fmt: skip
                print(json.dumps(out, ensure_ascii=False), flush=True)
            else:
                summary = _summary(message.event, body) if isinstance(body, dict) else ""
                print(f"{time.strftime('%H:%M:%S')} {message.subject} {message.key} {summary}",
                      flush=True)  # fmt: skip
            seen += 1
            if count is not None and seen >= count:
                return

    async def bounded() -> None:
        if seconds is None:
            await run()
            return
        try:
            async with asyncio.timeout(seconds):
                await run()
        except TimeoutError:
            pass

    try:
        asyncio.run(bounded())
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot reach {publish.kind} bus: {exc.strerror or exc}", EXIT_FAILURE)
    except Exception as exc:  # the brokers' own errors (no servers, auth, …)
        fail(f"event bus: {type(exc).__name__}: {exc}", EXIT_FAILURE)
