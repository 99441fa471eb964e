"""`cti doctor`: every part of the integration checked, one line each, with the fix.

A check is OK, WARN (works, but something is worth fixing) or FAIL (something does not work);
each WARN and FAIL carries one sentence saying what to do. Checks that depend on a failed one
are left out instead of failing too (no AMI login: no permission or event checks), and the
failed line says so, so every fault shows up as exactly one line.

`diagnose` runs the slow parts side by side: the AMI session (login, permissions, a sample of
the event stream), the rule's trial run, and the blocking checks (directory, webhooks, CDR
database, recordings folder, agent health) in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["OK", "WARN", "FAIL"]
STATUSES: tuple[Status, ...] = ("OK", "WARN", "FAIL")
DEFAULT_SAMPLE = 5.0


@dataclass
class Check:
    """One line of the report. `fix` is one sentence (empty for OK); `extra` are lines to
    paste somewhere (e.g. `eventfilter` lines for manager.conf)."""

    id: str
    name: str
    status: Status
    detail: str
    fix: str = ""
    extra: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            "extra": list(self.extra),
        }


def ok(id: str, name: str, detail: str) -> Check:
    return Check(id, name, "OK", detail)


def warn(id: str, name: str, detail: str, fix: str, extra: list[str] | None = None) -> Check:
    return Check(id, name, "WARN", detail, fix, list(extra or ()))


def fail(id: str, name: str, detail: str, fix: str) -> Check:
    return Check(id, name, "FAIL", detail, fix)


async def diagnose(config_path: Path, *, sample: float = DEFAULT_SAMPLE) -> list[Check]:
    """Every check, in report order."""
    from cti_cli.doctor.ami import ami_checks
    from cti_cli.doctor.local import blocking_checks, config_checks, enabled_check, rule_check

    checks, config = config_checks(config_path)
    if config is None:
        return checks
    checks.append(enabled_check(config))
    ami = asyncio.create_task(ami_checks(config, sample))
    rest = asyncio.create_task(asyncio.to_thread(blocking_checks, config))
    try:
        rule = await rule_check(config)
    except Exception as exc:
        rule = unexpected("rule", "rule", exc)
    try:
        ami_lines = await ami
    except Exception as exc:
        ami_lines = [unexpected("ami", "AMI", exc)]
    return [*checks, *ami_lines, rule, *await rest]


def unexpected(id: str, name: str, exc: Exception) -> Check:
    """A check that broke instead of answering: a FAIL line, never a traceback."""
    return fail(id, name, f"could not be checked: {type(exc).__name__}: {exc}",
                "Run cti doctor again; if it repeats, report this line.")  # fmt: skip


def counts(checks: list[Check]) -> dict[str, int]:
    return {status: sum(c.status == status for c in checks) for status in STATUSES}
