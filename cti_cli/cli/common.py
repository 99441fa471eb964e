"""What every command shares: the config path, loading with clean errors, one-line failures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from cti_cli import config as cfg

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_FAILURE = 1
EXIT_USAGE = 2


@dataclass
class State:
    """Global options, kept on the typer context."""

    config_path: Path


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State(config_path=cfg.default_path())
    return root.obj


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one line to stderr and exit: the only way commands report a user-facing failure."""
    err_console.print(f"cti: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    """One plain line to stdout: no markup, never wrapped (scripts grep these lines)."""
    console.print(message, markup=False, soft_wrap=True, highlight=False)


def warn(message: str) -> None:
    err_console.print(message, markup=False, soft_wrap=True, style="yellow")


def _load(ctx: typer.Context, *, effective: bool) -> cfg.Config:
    path = state(ctx).config_path
    if warning := cfg.permission_warning(path):
        warn(warning)
    try:
        return cfg.load(path) if effective else cfg.load_file(path)
    except cfg.ConfigError as exc:
        for line in exc.problems[:-1]:
            err_console.print(f"cti: {line}", markup=False, soft_wrap=True)
        fail(exc.problems[-1], EXIT_USAGE)


def load_config(ctx: typer.Context) -> cfg.Config:
    """The effective config (file + `CTI_*` environment), for commands that act on it."""
    return _load(ctx, effective=True)


def load_config_for_edit(ctx: typer.Context) -> cfg.Config:
    """The file exactly as written, for commands that change it and save it back."""
    return _load(ctx, effective=False)


def save_config(ctx: typer.Context, config: cfg.Config) -> None:
    path = state(ctx).config_path
    try:
        cfg.save(path, config)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}; check the folder exists and is writable")
