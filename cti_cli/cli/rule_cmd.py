"""`cti rule test|show`: try the incoming-call rule on a recorded call, see the built-in rule."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cti_cli.cli.app import app
from cti_cli.cli.common import EXIT_USAGE, fail, load_config, say

rule_app = typer.Typer(help="The incoming-call rule: dry runs and the built-in rule.",
                       no_args_is_help=True)  # fmt: skip
app.add_typer(rule_app, name="rule")


@rule_app.command("show")
def show_rule() -> None:
    """Print the built-in rule (a starting point for your own [rule] script)."""
    from cti_cli.rules import DEFAULT_RULE

    sys.stdout.write(DEFAULT_RULE.read_text(encoding="utf-8"))


@rule_app.command("test")
def test_rule(
    ctx: typer.Context,
    capture: Annotated[Path, typer.Argument(metavar="CAPTURE", help="Recorded AMI stream.")],
    rule: Annotated[
        Path | None, typer.Option("--rule", metavar="FILE", help="Rule to try (default: [rule]).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON screen_pop per line.")] = False,
) -> None:
    """Dry run: the pops the rule would send for a recorded call; nothing is sent."""
    from cti_cli.agent.directory import DirectoryError, normalize_number, open_directory
    from cti_cli.agent.pops import PopPlanner, operators_by_extension
    from cti_cli.agent.rule import RuleRunner
    from cti_cli.calls.replay import replay
    from cti_cli.calls.sources import ReplayInputError
    from cti_cli.rules import RuleError, effective_rule
    from cti_cli.textsafe import printable

    config = load_config(ctx)
    path = rule.expanduser() if rule else effective_rule(config.rule.script)
    try:
        directory = open_directory(config.directory)
    except DirectoryError as exc:
        fail(f"directory: {exc}", EXIT_USAGE)
    try:
        runner = RuleRunner(path, config.rule.timeout, directory.find if directory else None)
    except RuleError as exc:
        fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        fail(f"rule script {path}: {exc.strerror}", EXIT_USAGE)
    owners = operators_by_extension(config.teams)
    if not owners:
        fail("no team member has an extension, so no call pops; run cti teams member …",
             EXIT_USAGE)  # fmt: skip
    planner = PopPlanner(owners, config.rule.trigger, config.agent.pbx or config.server.host)
    try:
        stream = capture.open("rb")
    except OSError as exc:
        fail(f"cannot read {capture}: {exc.strerror}; check the path", EXIT_USAGE)

    async def run_all() -> int:
        count = 0
        for event in replay(stream, config.calls.extension_pattern):
            for pop in planner.plan(event).pops:
                call: dict[str, Any] = dict(pop.call)
                call["caller_e164"] = normalize_number(call["caller"], config.directory.region)
                call["trigger"] = pop.trigger
                outcome = await runner.run(call, pop.operator)
                count += 1
                if outcome.error:
                    print(f"cti: rule: {printable(outcome.error)}", file=sys.stderr)
                if json_out:
                    body = {"event": "screen_pop", "id": pop.key, "call": call,
                            "operator": pop.operator.to_dict(), "open": outcome.opened}  # fmt: skip
                    sys.stdout.write(json.dumps(body, ensure_ascii=False) + "\n")
                else:
                    say(_describe(call, pop.operator.login, pop.operator.extension, outcome.opened))
        return count

    try:
        count = asyncio.run(run_all())
    except ReplayInputError as exc:
        fail(f"{capture}: {exc}", EXIT_USAGE)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    finally:
        stream.close()
        runner.close()
    if not json_out:
        say(f"{count} pop(s) would be sent; nothing was sent")


def _describe(call: dict[str, Any], login: str, ext: str, opened: list[dict[str, Any]]) -> str:
    from cti_cli.textsafe import printable

    who = call.get("caller") or "unknown caller"
    if call.get("caller_name"):
        who += f' "{call["caller_name"]}"'
    parts = []
    for item in opened:
        if item["type"] == "employee_card":
            employee = item["employee"]
            parts.append(f"card {employee.get('name') or employee.get('id') or '?'}")
        else:
            fields = ", ".join(f"{k}={v}" for k, v in item.get("fields", {}).items())
            parts.append(f"request form ({fields})")
    opens = "; ".join(parts) or "nothing (the rule opened nothing)"
    return printable(f"{login} ({ext}) ← {who} → dialled {call.get('dialed') or '?'}: {opens}")
