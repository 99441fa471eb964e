"""The command tree is assembled in one place (cli/app.py `_register`): a command module
declares its function or sub-app and never imports the app, so there is no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import typer.main

from cti_cli.cli.app import _register, app
from cti_cli.cli.helpstyle import ORDER

CLI = Path(__file__).resolve().parent.parent / "cti_cli" / "cli"


def imports_the_app(source: Path) -> bool:
    for node in ast.walk(ast.parse(source.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            if any(alias.name == "cti_cli.cli.app" for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom) and (
            node.module == "cti_cli.cli.app"
            or (node.module == "cti_cli.cli" and any(a.name == "app" for a in node.names))
        ):
            return True
    return False


def test_no_command_module_imports_the_app() -> None:
    commands = [p for p in CLI.glob("*.py") if p.name not in ("__init__.py", "app.py")]
    offenders = {p.name for p in commands if imports_the_app(p)}
    assert not offenders, f"import cti_cli.cli.app: {sorted(offenders)}"


def test_every_command_is_registered_once_however_often_the_tree_is_assembled() -> None:
    _register()
    _register()
    names = [c.name or c.callback.__name__ for c in app.registered_commands if c.callback]
    names += [g.name or g.typer_instance.info.name for g in app.registered_groups]
    assert sorted(names) == sorted(ORDER)
    assert list(typer.main.get_command(app).list_commands(None)) == list(ORDER)
