"""`cti rule list|show|new|use|examples|test`: the rule catalog, the shipped examples, dry runs.

The catalog is a folder of rule files (`[rule] catalog`, see `cti_cli.rules.catalog`); `use`
compiles a rule and runs it once on a sample call before it becomes `[rule] script`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

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
    warn,
)

rule_app = typer.Typer(
    help="The incoming-call rule: the catalog, shipped examples, dry runs.", no_args_is_help=True
)


def _catalog(ctx: typer.Context) -> tuple[Any, Path]:
    from cti_cli.cli.common import state
    from cti_cli.rules.catalog import catalog_dir

    config = load_config(ctx)
    return config, catalog_dir(config, state(ctx).config_path)


@rule_app.command("list")
def list_rules(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The catalog's rules: name, what each does, which one is in use."""
    from cti_cli.rules import effective_rule
    from cti_cli.rules.catalog import CatalogError, entries, same_file

    config, folder = _catalog(ctx)
    try:
        found = entries(folder)
    except CatalogError as exc:
        fail(str(exc))
    script = config.rule.script
    in_use = effective_rule(script)
    inside = any(same_file(script, e.path) for e in found)
    if json_out:
        data = {
            "catalog": str(folder),
            "in_use": str(in_use),
            "built_in": script is None,
            "rules": [dict(e.to_dict(), in_use=same_file(script, e.path)) for e in found],
        }
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    say(f"catalog {folder}")
    if not found:
        say("  no rules yet; create one: cti rule new NAME [--from EXAMPLE] (cti rule examples)")
    width = max((len(e.name) for e in found), default=0)
    for entry in found:
        mark = "*" if same_file(script, entry.path) else " "
        text = entry.summary or "(no description: add a docstring)"
        if entry.problem:
            text = f"BROKEN: {entry.problem}"
        say(f"{mark} {entry.name:<{width}}  {text}")
    if script is None:
        say("in use: the built-in rule (cti rule show prints it)")
    elif not inside:
        say(f"in use: {script} (outside the catalog)")


@rule_app.command("show")
def show_rule(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(metavar="[NAME]", help="A catalog rule or an example; none: the built-in."),
    ] = None,
) -> None:
    """Print a rule (highlighted on a terminal); without NAME, the built-in rule as it is."""
    from cti_cli.rules import DEFAULT_RULE, RuleError, read_rule
    from cti_cli.rules.catalog import CatalogError, check_name, example_file, rule_path

    if name is None:
        sys.stdout.write(DEFAULT_RULE.read_text(encoding="utf-8"))
        return
    _config, folder = _catalog(ctx)
    try:
        bare = check_name(name)
        path = folder / f"{bare}.py"
        if not path.is_file() and example_file(bare).is_file():
            path = example_file(bare)
        else:
            path = rule_path(folder, bare)
    except CatalogError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        source = read_rule(path)
    except RuleError as exc:
        warn(f"cti: warning: {exc}")
        try:
            source = path.read_bytes().decode("utf-8", "replace")
        except OSError as os_exc:
            fail(f"cannot read {path}: {os_exc.strerror}")
    if not console.is_terminal:
        sys.stdout.write(source)
        return
    from rich.syntax import Syntax

    console.print(f"# {path}", style="dim", markup=False, highlight=False)
    console.print(Syntax(source.rstrip("\n"), "python", line_numbers=True, word_wrap=True))


@rule_app.command("examples")
def list_examples(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The example rules shipped with cti (copy one: cti rule new NAME --from EXAMPLE)."""
    from cti_cli.rules.catalog import examples

    found = examples()
    if json_out:
        print(json.dumps([e.to_dict() for e in found], ensure_ascii=False, indent=2))
        return
    width = max(len(e.name) for e in found)
    for entry in found:
        say(f"{entry.name:<{width}}  {entry.summary}")
    say("see one: cti rule show EXAMPLE; copy one: cti rule new NAME --from EXAMPLE")


@rule_app.command("new")
def new_rule(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new rule's name, e.g. vip.")],
    from_example: Annotated[
        str | None,
        typer.Option("--from", metavar="EXAMPLE", help="Start from this example."),
    ] = None,
) -> None:
    """Create a rule in the catalog from a template or an example; opens $EDITOR on a terminal."""
    import os
    import shlex
    import subprocess

    from cti_cli.rules import RuleError, read_rule
    from cti_cli.rules.catalog import CatalogError, check_name, create, new_source

    _config, folder = _catalog(ctx)
    try:
        bare = check_name(name)
        path = folder / f"{bare}.py"
        path = create(folder, bare, new_source(bare, path, from_example))
    except CatalogError as exc:
        fail(str(exc), EXIT_USAGE)
    origin = f"example {from_example}" if from_example else "the template"
    say(f"created {path} from {origin}")
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if sys.stdin.isatty() and sys.stdout.isatty():
        if editor:
            try:
                subprocess.run([*shlex.split(editor), str(path)], check=False)
            except (OSError, ValueError) as exc:
                warn(f"cti: warning: cannot start the editor {editor!r}: {exc}")
        else:
            say(f"set $EDITOR to edit it here; now open {path} in your editor")
    try:
        read_rule(path)
    except RuleError as exc:
        warn(f"cti: warning: {exc}")
        return
    say(f"try it: cti rule test CAPTURE --rule {path}; use it: cti rule use {bare}")


@rule_app.command("use")
def use_rule(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="A catalog rule, or built-in for the shipped one.")
    ],
) -> None:
    """Make a catalog rule [rule] script, once it compiles and runs on a sample call."""
    import asyncio

    from cti_cli.rules import DEFAULT_RULE
    from cti_cli.rules.catalog import BUILT_IN, CatalogError, rule_path, trial, trial_summary

    config, folder = _catalog(ctx)
    builtin = name in BUILT_IN
    try:
        path = DEFAULT_RULE if builtin else rule_path(folder, name)
    except CatalogError as exc:
        fail(str(exc), EXIT_USAGE)
    with contextlib.redirect_stdout(sys.stderr):  # a rule's print() ≠ our output
        result = asyncio.run(trial(path, config))
    if result.directory_problem:
        warn(f"cti: warning: directory: {result.directory_problem} (the trial ran without it)")
    if result.error:
        fail(f"{result.error}; [rule] script is unchanged", EXIT_FAILURE)
    say(f"{path}: compiles; {trial_summary(result)}")
    edited = load_config_for_edit(ctx)
    edited.rule.script = None if builtin else str(path)
    save_config(ctx, edited)
    what = "the built-in rule" if builtin else str(path)
    say(f"[rule] script: {what}; a running agent switches to it within a second")


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
    import asyncio

    from cti_cli.agent import logs
    from cti_cli.agent.directory import DirectoryError, normalize_number, open_directory
    from cti_cli.agent.pops import PopPlanner, operators_by_extension, rule_call, screen_pop_body
    from cti_cli.agent.rule import RuleRunner
    from cti_cli.calls.replay import replay
    from cti_cli.calls.sources import ReplayInputError
    from cti_cli.rules import RuleError, effective_rule
    from cti_cli.textsafe import printable

    config = load_config(ctx)
    logs.setup()  # the rule's cti.log(...) lines, on stderr
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
    pbx = config.servers[0].name if config.servers else config.agent.pbx or config.server.host
    planner = PopPlanner(owners, config.rule.trigger, pbx)  # [[servers]]: keys as on the first
    try:
        stream = capture.open("rb")
    except OSError as exc:
        fail(f"cannot read {capture}: {exc.strerror}; check the path", EXIT_USAGE)

    damaged: list[str] = []
    skipped: list[str] = []

    def skip(where: str, why: str) -> None:
        if not damaged:
            warn(f"cti: warning: {capture}: {where}: skipped a damaged message ({why})")
        damaged.append(where)

    async def run_all() -> int:
        count = 0
        for event in replay(stream, config.calls.extension_pattern, skip):
            for pop in planner.plan(event).pops:
                e164 = normalize_number(pop.call["caller"], config.directory.region)
                call = rule_call(pop, e164)
                with contextlib.redirect_stdout(sys.stderr):  # a rule's print() ≠ our output
                    outcome = await runner.run(call, pop.operator)
                if outcome.error:
                    print(f"cti: rule: {printable(outcome.error)}", file=sys.stderr)
                if outcome.skipped:
                    skipped.append(pop.operator.login)
                    note = (f"{pop.operator.login} ({pop.operator.extension}): no pop, the rule "
                            f"skipped it ({outcome.skip_reason})")  # fmt: skip
                    if json_out:
                        print(f"cti: rule: {printable(note)}", file=sys.stderr)
                    else:
                        say(note)
                    continue
                count += 1
                if json_out:
                    body = screen_pop_body(pop, call, outcome.opened)
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
        more = f", {len(skipped)} skipped by the rule" if skipped else ""
        say(f"{count} pop(s) would be sent{more}; nothing was sent")


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
