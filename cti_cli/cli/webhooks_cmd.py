"""`cti webhooks list|add|remove|test`: where screen pops and call events go, by command."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from cti_cli.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    console,
    fail,
    load_config,
    load_config_for_edit,
    save_config,
    say,
)
from cti_cli.config_choices import WEBHOOK_EVENTS, WebhookFormat

if TYPE_CHECKING:
    from cti_cli.config import Config

EVENTS_HELP = ", ".join(WEBHOOK_EVENTS)

webhooks_app = typer.Typer(
    help="Webhooks: where screen pops and call events are delivered.", no_args_is_help=True
)


def _find(config: Config, which: str) -> int:
    """A webhook by its number in `cti webhooks list` (1, 2, …) or its exact URL."""
    if which.isdigit() and 1 <= int(which) <= len(config.webhooks):
        return int(which) - 1
    for index, hook in enumerate(config.webhooks):
        if hook.url == which:
            return index
    fail(f"no webhook {which!r}; give its number from cti webhooks list, or its URL", EXIT_USAGE)


@webhooks_app.command("list")
def list_hooks(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The webhooks, numbered, secrets and URL tokens masked."""
    from cti_cli.cli.show import page_data

    config = load_config(ctx)
    hooks = page_data(config, ctx.find_root().obj.config_path)["webhooks"]
    if json_out:
        print(json.dumps(hooks, ensure_ascii=False, indent=2))
        return
    if not hooks:
        say("no webhooks; add one with: cti webhooks add URL --secret-stdin")
        return
    from rich.table import Table

    from cti_cli.textsafe import printable

    table = Table("#", "url", "format", "events", "secret")
    for number, hook in enumerate(hooks, 1):
        secret = hook["secret"] or (f"file {hook['secret_file']}" if hook["secret_file"] else "")
        events = ", ".join(hook["events"]) if hook["events"] else "all"
        table.add_row(str(number), printable(hook["url"]), hook["format"], events,
                      printable(secret) or "(none)")  # fmt: skip
    console.print(table)


@webhooks_app.command("add")
def add_hook(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(metavar="URL", help="http(s):// address to POST to.")],
    secret_stdin: Annotated[
        bool, typer.Option("--secret-stdin", help="Read the signing secret from stdin.")
    ] = False,
    secret_file: Annotated[
        str | None,
        typer.Option(metavar="PATH", help="Read the secret from this file at start (systemd)."),
    ] = None,
    fmt: Annotated[WebhookFormat, typer.Option("--format", help="json or zammad.")] = "json",
    events: Annotated[
        str | None,
        typer.Option(metavar="LIST", help=f"Comma-separated, of: {EVENTS_HELP}."),
    ] = None,
) -> None:
    """Add a webhook (the secret never on the command line)."""
    config = load_config_for_edit(ctx)
    if any(h.url == url for h in config.webhooks):
        fail(f"webhook {url} is already configured; remove it first to change it", EXIT_USAGE)
    secret = ""
    if secret_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
        if not secret:
            fail("--secret-stdin: stdin gave an empty line", EXIT_USAGE)
    chosen = [e.strip() for e in events.split(",") if e.strip()] if events else None
    from pydantic import SecretStr, ValidationError

    from cti_cli.config import Webhook, describe_errors

    try:
        hook = Webhook(url=url, secret=SecretStr(secret), secret_file=secret_file,
                       format=fmt, events=chosen)  # fmt: skip
    except ValidationError as exc:
        fail(next(describe_errors("webhook", exc)).removeprefix("webhook: "), EXIT_USAGE)
    if fmt == "json" and not secret and not secret_file:
        say("warning: no secret: receivers cannot verify X-CTI-Signature (use --secret-stdin)")
    config.webhooks.append(hook)
    save_config(ctx, config)
    say(f"webhook {len(config.webhooks)} added ({fmt}); a running agent uses it at once")


@webhooks_app.command("remove")
def remove_hook(
    ctx: typer.Context,
    which: Annotated[str, typer.Argument(metavar="N|URL", help="Number or URL.")],
) -> None:
    """Remove a webhook (what waits for it in the outbox stays there: cti outbox)."""
    config = load_config_for_edit(ctx)
    index = _find(config, which)
    del config.webhooks[index]
    save_config(ctx, config)
    say(f"webhook {index + 1} removed")


@webhooks_app.command("test")
def test_hook(
    ctx: typer.Context,
    which: Annotated[str, typer.Argument(metavar="N|URL", help="Number or URL.")] = "1",
) -> None:
    """Send a signed `ping` event and say what the receiver answered."""
    import httpx

    from cti_cli.notify.webhook import host_of, safe_url, send_ping

    config = load_config(ctx)
    if not config.webhooks:
        fail("no webhooks; add one with: cti webhooks add URL --secret-stdin", EXIT_USAGE)
    hook = config.webhooks[_find(config, which)]
    shown = safe_url(hook.url) if hook.format == "json" else host_of(hook.url)
    if hook.format == "zammad":
        fail("a zammad webhook takes only Zammad's call events; place a test call instead",
             EXIT_USAGE)  # fmt: skip
    secret = hook.secret.get_secret_value()
    started = time.perf_counter()
    try:
        reply = send_ping(hook)
    except httpx.HTTPError as exc:
        fail(f"ping → {shown}: {type(exc).__name__}: {exc}", EXIT_FAILURE)
    took = (time.perf_counter() - started) * 1000
    if 200 <= reply.status_code < 300:
        say(f"ping → {shown}: HTTP {reply.status_code} in {took:.0f} ms"
            + ("" if secret else " (unsigned: no secret)"))  # fmt: skip
        return
    fail(f"ping → {shown}: HTTP {reply.status_code} in {took:.0f} ms; the receiver refused it",
         EXIT_FAILURE)  # fmt: skip
