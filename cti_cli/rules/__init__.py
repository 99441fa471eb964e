"""The incoming-call rule script: a Python file the administrator writes.

Only its existence and syntax are checked here, so a broken rule is refused when it is
configured, not discovered on the first call.
"""

from __future__ import annotations

from pathlib import Path

from cti_cli.files import read_small

RULE_SIZE_LIMIT = 1 << 20


class RuleError(Exception):
    """The rule file is missing, unreadable or does not compile."""


def read_rule(path: Path) -> str:
    """Return the rule's source text once it is known to compile."""
    try:
        source = read_small(path, RULE_SIZE_LIMIT).decode("utf-8")  # never a FIFO or a device
    except FileNotFoundError:
        raise RuleError(
            f"rule script {path} does not exist; give the path of a Python file"
        ) from None
    except IsADirectoryError:
        raise RuleError(f"rule script {path} is a folder; give the path of a Python file") from None
    except UnicodeDecodeError as exc:
        raise RuleError(f"rule script {path} is not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise RuleError(f"rule script {path}: cannot read: {exc.strerror}") from None
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise RuleError(f"{path}:{exc.lineno}: {exc.msg}; fix the rule script") from None
    except ValueError as exc:  # e.g. NUL bytes
        raise RuleError(f"rule script {path}: {exc}") from None
    return source


DEFAULT_RULE = Path(__file__).with_name("incoming.py")


def effective_rule(script: str | None) -> Path:
    """The rule that runs: the configured script, else the one shipped with cti."""
    return Path(script) if script else DEFAULT_RULE
