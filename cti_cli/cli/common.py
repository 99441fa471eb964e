"""What every command shares: the config path, loading with clean errors, one-line failures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from cti_cli.textsafe import printable, shorten

if TYPE_CHECKING:  # the config (pydantic) is imported when a command loads it, not for --help
    from cti_cli import config as cfg

console = Console(highlight=False, emoji=False)  # `:smile:` in a caller name stays as written
err_console = Console(stderr=True, highlight=False, emoji=False)

EXIT_FAILURE = 1
EXIT_USAGE = 2


@dataclass
class State:
    """Global options, kept on the typer context."""

    config_path: Path
    edit_lock: cfg.EditLock | None = None


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        from cti_cli.config_path import default_path

        root.obj = State(config_path=default_path())
    return root.obj


def plain(text: str, style: str = "") -> Text:
    """Hostile text (caller names, file names, a peer's error) ready to print: control
    characters escaped (`textsafe.printable`), rich markup shown as written."""
    return Text(printable(text), style=style)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one line to stderr and exit: the only way commands report a user-facing failure."""
    err_console.print(f"cti: {printable(shorten(message))}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    """One plain line to stdout: no markup, never wrapped (scripts grep these lines)."""
    console.print(printable(message), markup=False, soft_wrap=True, highlight=False)


def format_duration(seconds: float) -> str:
    """`42` → `0:42`, `3725` → `1:02:05`: talk times and call ages as a clock shows them
    (negative, from clock skew: `0:00`)."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def warn(message: str) -> None:
    err_console.print(printable(shorten(message)), markup=False, soft_wrap=True, style="yellow")


def _load(ctx: typer.Context, *, effective: bool) -> cfg.Config:
    from cti_cli import config as cfg

    path = state(ctx).config_path
    if warning := cfg.permission_warning(path):
        warn(warning)
    try:
        return cfg.load(path) if effective else cfg.load_file(path)
    except cfg.ConfigError as exc:
        for line in exc.problems[:-1]:
            err_console.print(f"cti: {printable(shorten(line))}", markup=False, soft_wrap=True)
        fail(exc.problems[-1], EXIT_USAGE)


def load_config(ctx: typer.Context) -> cfg.Config:
    """The effective config (file + `CTI_*` environment), for commands that act on it."""
    return _load(ctx, effective=True)


def load_config_for_edit(ctx: typer.Context) -> cfg.Config:
    """The file exactly as written, for commands that change it and save it back.

    Takes the config's edit lock first and holds it until `save_config` (or the end of the
    command): a parallel edit waits instead of overwriting this one's update or losing its own.
    """
    from cti_cli import config as cfg

    st = state(ctx)
    if st.edit_lock is None:
        try:
            st.edit_lock = cfg.lock_for_edit(st.config_path)
        except cfg.ConfigLocked as exc:
            fail(exc.problems[-1])
        except OSError as exc:
            fail(f"cannot lock {st.config_path} for editing: {exc.strerror}; "
                 "check the folder exists and is writable")  # fmt: skip
        ctx.find_root().call_on_close(_release_lock(st))
    return _load(ctx, effective=False)


def _release_lock(st: State) -> Callable[[], None]:
    def release() -> None:
        lock, st.edit_lock = st.edit_lock, None
        if lock is not None:
            lock.release()

    return release


def save_config(ctx: typer.Context, config: cfg.Config) -> None:
    from cti_cli import config as cfg

    st = state(ctx)
    path = st.config_path
    try:
        cfg.save(path, config)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}; check the folder exists and is writable")
    finally:
        _release_lock(st)()
