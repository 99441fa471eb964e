"""`cti configure`: change the connection parameters and the call handling rule.

A password is never a command-line value (it would land in shell history and `ps`): it comes
from stdin with `--password-stdin`, from a hidden prompt, or from `CTI_SERVER__PASSWORD`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer

from cti_cli.cli.common import (
    EXIT_USAGE,
    console,
    fail,
    load_config_for_edit,
    save_config,
    say,
    state,
    warn,
)
from cti_cli.config_choices import AuthMethod, Trigger

if TYPE_CHECKING:
    from cti_cli import config as cfg

CONNECTION_KEYS = ("host", "port", "login", "password", "tls", "cafile", "auth", "timeout")


def configure(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(metavar="HOST", help="AMI server host name or address.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(metavar="N", help="AMI port (5038; TLS usually 5039).")
    ] = None,
    login: Annotated[
        str | None, typer.Option(metavar="NAME", help="AMI user (manager.conf section).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the AMI password from stdin.")
    ] = False,
    tls: Annotated[bool | None, typer.Option("--tls/--no-tls", help="AMI over TLS.")] = None,
    cafile: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="Path of the PEM file of the CA that signs the AMI TLS certificate "
            "('' to unset: the system CAs).",
        ),
    ] = None,
    auth: Annotated[
        AuthMethod | None, typer.Option(help="md5 (secret never sent) or plain.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="How long to wait for the server.")
    ] = None,
    rule: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Incoming-call rule script (Python); '' for the built-in rule."
        ),
    ] = None,
    trigger: Annotated[
        Trigger | None, typer.Option(help="Pop the card when the phone rings or on answer.")
    ] = None,
    dbaccess: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="dbaccess.properties with the CDR database access."),
    ] = None,
    recordings_dir: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Folder of call recordings (Asterisk's monitor dir)."),
    ] = None,
    disable: Annotated[
        bool,
        typer.Option(
            "--disable", help="If the new connection fails the check, save anyway and switch off."
        ),
    ] = False,
) -> None:
    """Set the AMI connection and the call handling rule (prompts when run with no options)."""
    from pydantic import ValidationError

    from cti_cli import config as cfg
    from cti_cli.rules import RuleError, read_rule

    config = load_config_for_edit(ctx)
    data = cfg.to_toml_dict(config)
    server: dict[str, Any] = data.setdefault("server", {})
    rule_block: dict[str, Any] = data.setdefault("rule", {})
    cdr_block: dict[str, Any] = data.setdefault("cdr", {})

    flags = {
        "host": host, "port": port, "login": login, "tls": tls, "cafile": cafile,
        "auth": auth, "timeout": timeout,
    }  # fmt: skip
    given = any(v is not None for v in flags.values()) or any(
        v is not None for v in (rule, trigger, dbaccess, recordings_dir)
    )
    if password_stdin:
        server["password"] = _read_password_stdin()
    elif not given:
        if not sys.stdin.isatty():
            fail(
                "nothing to change: give options (cti configure --help) or run it on a terminal",
                EXIT_USAGE,
            )
        _prompt_all(server, rule_block)
    for key, value in flags.items():
        if value is not None:
            if key == "cafile" and value == "":
                server.pop("cafile", None)
            else:
                server[key] = value
    if rule is not None and str(rule) in ("", "."):  # `--rule ''`: back to the built-in rule
        rule_block.pop("script", None)
    elif rule is not None:
        rule_block["script"] = str(rule.expanduser().absolute())
    if trigger is not None:
        rule_block["trigger"] = trigger
    if dbaccess is not None:
        cdr_block["dbaccess"] = str(dbaccess.expanduser().absolute())
    if recordings_dir is not None:
        cdr_block["recordings_dir"] = str(recordings_dir.expanduser().absolute())

    new_script = rule_block.get("script")
    if new_script and (rule is not None or new_script != config.rule.script):
        try:
            read_rule(Path(new_script))
        except RuleError as exc:
            fail(str(exc), EXIT_USAGE)

    if cafile:
        _check_cafile(cafile)
    try:
        updated = cfg.Config.model_validate(data)
    except ValidationError as exc:
        problems = list(cfg.describe_errors(state(ctx).config_path.name, exc))
        for line in problems[:-1]:
            warn(f"cti: {line}")
        fail(problems[-1], EXIT_USAGE)

    if updated.enabled and _connection(updated) != _connection(config):
        _recheck(updated, disable, state(ctx).config_path.name)
    save_config(ctx, updated)
    say(f"saved {state(ctx).config_path}")


def _connection(config: cfg.Config) -> tuple[Any, ...]:
    server = config.server
    return tuple(
        server.password.get_secret_value() if k == "password" else getattr(server, k)
        for k in CONNECTION_KEYS
    )


def _recheck(updated: cfg.Config, disable: bool, filename: str) -> None:
    """The integration is on: the new connection must pass the enable check before it is saved."""
    from cti_cli import config as cfg
    from cti_cli.cli.switch import record_check, run_check

    try:
        server = cfg.with_environment(updated, filename).server
    except cfg.ConfigError as exc:  # a CTI_* variable is wrong: nothing is checked or saved
        for line in exc.problems[:-1]:
            warn(f"cti: {line}")
        fail(exc.problems[-1], EXIT_USAGE)
    if disable:
        try:
            info = run_check(server, failure="the new connection fails the check: {reason}")
        except typer.Exit:
            updated.enabled = False
            warn("the new connection failed the check: saved, and the integration is now disabled")
            return
    else:
        info = run_check(  # exits 1, nothing written
            server,
            failure="the new connection fails the check: {reason}; nothing was saved and the "
            "integration keeps running with the old settings (to save anyway and switch it "
            "off: cti configure ... --disable)",
        )
    record_check(updated, info)


def _check_cafile(path: str) -> None:
    """A CA file must load as PEM certificates now, not fail at the next connection."""
    import ssl

    try:
        ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        fail(f"--cafile {path}: no such file; give the PEM file of the CA that signed the "
             "AMI certificate", EXIT_USAGE)  # fmt: skip
    except (OSError, ssl.SSLError) as exc:
        fail(f"--cafile {path}: not a PEM CA certificate file ({exc}); give the CA in PEM form",
             EXIT_USAGE)  # fmt: skip


def _read_password_stdin() -> str:
    """The first line of stdin, read as bytes: a text layer with universal newlines would
    silently cut a password at a CR (which `server.password` then refuses, as AMI would)."""
    binary = getattr(sys.stdin, "buffer", None)
    if binary is None:
        line = sys.stdin.readline()
    else:
        raw = binary.readline(1 << 16)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            fail("--password-stdin: the password is not UTF-8 text", EXIT_USAGE)
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        fail("--password-stdin: stdin gave an empty password; pipe the password in", EXIT_USAGE)
    return password


def _prompt_all(server: dict[str, Any], rule_block: dict[str, Any]) -> None:
    console.print("[bold]Connection parameters[/bold]")
    server["host"] = typer.prompt("AMI host", default=server.get("host") or None)
    server["port"] = typer.prompt("AMI port", default=server.get("port", 5038), type=int)
    server["login"] = typer.prompt("AMI login", default=server.get("login") or None)
    has_password = bool(server.get("password"))
    password = typer.prompt(
        "AMI password" + (" (Enter keeps the current one)" if has_password else ""),
        default="" if has_password else None,
        hide_input=True,
        show_default=False,
    )
    if password:
        server["password"] = password
    server["tls"] = typer.confirm("Use TLS", default=bool(server.get("tls", False)))
    if server["tls"]:
        cafile = typer.prompt(
            "CA file for the server certificate (empty: system CAs)",
            default=server.get("cafile", ""),
            show_default=bool(server.get("cafile")),
        )
        if cafile:
            server["cafile"] = cafile
        else:
            server.pop("cafile", None)
    server["auth"] = _choose("Authentication", server.get("auth", "md5"), get_args(AuthMethod))
    server["timeout"] = typer.prompt(
        "Timeout, seconds", default=server.get("timeout", 5.0), type=float
    )
    console.print("[bold]Call handling rule[/bold]")
    current = rule_block.get("script") or ""
    builtin = "'-' = the built-in rule" if current else "empty = the built-in rule"
    script = str(
        typer.prompt(
            f"Rule script ({builtin})",
            default=current,
            show_default=bool(current),
        )
    ).strip()
    if script in ("", "-"):
        rule_block.pop("script", None)
    else:
        rule_block["script"] = str(Path(script).expanduser().absolute())
    rule_block["trigger"] = _choose(
        "Open the card on", rule_block.get("trigger", "answer"), get_args(Trigger)
    )


def _choose(text: str, default: str, choices: tuple[str, ...]) -> str:
    while True:
        answer = str(typer.prompt(f"{text} ({'/'.join(choices)})", default=default)).strip()
        if answer in choices:
            return answer
        say(f"choose one of: {', '.join(choices)}")
