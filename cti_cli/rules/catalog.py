"""The rule catalog: the administrator's rule files in one folder, and the examples cti ships.

A catalog rule is `<catalog>/<NAME>.py`; its name is the file name without `.py` and its
description is the first line of its module docstring. The catalog is `[rule] catalog`, else
`/etc/cti/rules` for a config under `/etc/cti`, else `$XDG_CONFIG_HOME/cti/rules`
(`~/.config/cti/rules`). Examples live in the package (`cti_cli/rules/examples/*.py`).

`trial` is what `cti rule use` and `cti doctor` run before trusting a rule: compile it, then run
it once — in a worker thread with `[rule] timeout`, exactly as the agent does — on a built-in
sample call, with the configured employee directory.
"""

from __future__ import annotations

import ast
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cti_cli.rules import DEFAULT_RULE, RuleError, read_rule

if TYPE_CHECKING:
    from cti_cli.agent.pops import Operator
    from cti_cli.agent.rule import RuleOutcome
    from cti_cli.config import Config

EXAMPLES_DIR = Path(__file__).with_name("examples")
SYSTEM_DIR = Path("/etc/cti")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
BUILT_IN = ("built-in", "builtin")  # `cti rule use built-in`: back to the shipped rule

# The call every trial runs on: a caller from outside, to the support queue.
SAMPLE_CALL: dict[str, Any] = {
    "call_id": "1700000000.1",
    "uniqueid": "1700000000.1",
    "caller": "+79161234567",
    "caller_name": "Иван Петров",
    "dialed": "200",
    "queue": "support",
}


class CatalogError(Exception):
    """A catalog problem, one line naming the fix."""


@dataclass(frozen=True)
class Entry:
    """One rule file: its name, where it is, its first docstring line, and why it is broken."""

    name: str
    path: Path
    summary: str
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "summary": self.summary,
            "problem": self.problem,
        }


def default_catalog(config_path: Path) -> Path:
    """`/etc/cti/rules` for a config under `/etc/cti`, else `$XDG_CONFIG_HOME/cti/rules`."""
    where = Path(os.path.abspath(config_path.expanduser()))
    if SYSTEM_DIR in where.parents:
        return SYSTEM_DIR / "rules"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cti" / "rules"


def catalog_dir(config: Config, config_path: Path) -> Path:
    """The catalog folder in effect for this config."""
    if config.rule.catalog:
        return Path(os.path.abspath(Path(config.rule.catalog).expanduser()))
    return default_catalog(config_path)


def check_name(name: str) -> str:
    """A rule name as typed (`vip` or `vip.py`) → `vip`; CatalogError when it is not one."""
    bare = name.removesuffix(".py")
    if not NAME_PATTERN.fullmatch(bare):
        raise CatalogError(
            f"rule name {name!r}: use letters, digits, - and _ (at most 64, no folders), "
            "e.g. vip-callers"
        )
    return bare


def describe(path: Path, name: str | None = None) -> Entry:
    """The entry for one rule file; a file that does not compile gets `problem`."""
    name = name or path.stem
    try:
        source = read_rule(path)
    except RuleError as exc:
        return Entry(name, path, "", str(exc))
    try:
        doc = ast.get_docstring(ast.parse(source, str(path))) or ""
    except (SyntaxError, ValueError) as exc:  # read_rule compiled it; belt and braces
        return Entry(name, path, "", f"{path}: {exc}")
    lines = doc.strip().splitlines()
    return Entry(name, path, lines[0].strip() if lines else "")


def _rule_files(folder: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CatalogError(f"rule catalog {folder}: cannot read: {exc.strerror}") from None
    files = []
    for name in names:
        # a rule's name starts with a letter or digit: __init__.py, .swap files are no rules
        if name.endswith(".py") and NAME_PATTERN.fullmatch(name[:-3]) and (folder / name).is_file():
            files.append(folder / name)
    return files


def entries(folder: Path) -> list[Entry]:
    """The catalog's rules, by name; an absent folder is an empty catalog."""
    return [describe(path) for path in _rule_files(folder)]


def examples() -> list[Entry]:
    """The examples shipped with cti; `default` is the built-in rule itself."""
    return [describe(_example_file(name), name) for name in _example_names()]


def _example_names() -> list[str]:
    return ["default", *(p.stem for p in _rule_files(EXAMPLES_DIR))]


def example_file(name: str) -> Path:
    """Where example `name` lives (`default` is the built-in rule); may not exist."""
    return DEFAULT_RULE if name == "default" else EXAMPLES_DIR / f"{name}.py"


_example_file = example_file


def example_path(name: str) -> Path:
    bare = check_name(name)
    path = _example_file(bare)
    if not path.is_file():
        known = ", ".join(_example_names())
        raise CatalogError(f"no example {bare!r}; the examples are: {known} (cti rule examples)")
    return path


def rule_path(folder: Path, name: str) -> Path:
    """`<folder>/<name>.py`, which must exist."""
    bare = check_name(name)
    path = folder / f"{bare}.py"
    if path.is_file():
        return path
    hint = "cti rule list shows the catalog"
    if _example_file(bare).is_file():
        hint = f"{bare} is an example: copy it first with cti rule new {bare} --from {bare}"
    raise CatalogError(f"no rule {bare!r} in the catalog {folder}; {hint}")


def same_file(a: Path | str | None, b: Path) -> bool:
    if a is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


TEMPLATE = '''"""{name}: one line saying what this rule does (cti rule list shows it).

Say here what it opens, and when. `on_call(call, cti)` runs once per pop, for one operator;
docs/rules.md describes every field of `call` and every method of `cti`.

Try it on a recorded call:  cti rule test CAPTURE --rule {path}
Make it the rule in use:    cti rule use {name}
"""

from typing import Any


def on_call(call: Any, cti: Any) -> None:
    phone = call.caller_e164 or call.caller
    employee = cti.find_employee(call.caller)
    if employee is not None:
        cti.open_card(employee)
        cti.open_request_form(
            client_id=employee.get("id"), client_name=employee.get("name"), phone=phone
        )
    else:
        cti.open_request_form(phone=phone, caller_name=call.caller_name)
'''


def new_source(name: str, path: Path, example: str | None) -> str:
    """The text of a new rule: an example as shipped, or the documented template."""
    if example is not None:
        return example_path(example).read_text("utf-8")
    return TEMPLATE.format(name=name, path=path)


def create(folder: Path, name: str, source: str) -> Path:
    """Write `<folder>/<name>.py` (never over an existing file): folder 0750, file 0640,
    the file's group the folder's, so an agent running in that group can read it."""
    bare = check_name(name)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise CatalogError(f"cannot create the rule catalog {folder}: {exc.strerror}") from None
    path = folder / f"{bare}.py"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o640)  # fmt: skip
    except FileExistsError:
        raise CatalogError(
            f"{path} already exists; pick another name or edit that file"
        ) from None
    except OSError as exc:
        raise CatalogError(f"cannot create {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(source)
            try:
                group = os.stat(folder).st_gid
                if group != os.fstat(handle.fileno()).st_gid:
                    os.fchown(handle.fileno(), -1, group)
            except OSError:
                pass  # not allowed: the process's own group stays
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------- a trial run


@dataclass
class Trial:
    """One run of a rule on the sample call: what it opened, how long it took, what failed."""

    path: Path
    call: dict[str, Any]
    operator: Operator
    outcome: RuleOutcome | None = None  # None: it did not compile
    error: str | None = None  # compile error, or the run's error
    seconds: float = 0.0
    timeout: float = 0.0
    directory_problem: str | None = None
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def sample_operator(config: Config) -> Operator:
    from cti_cli.agent.pops import Operator, operators_by_extension

    owners = operators_by_extension(config.teams)
    if owners:
        return next(iter(owners.values()))
    return Operator("ivanov", "Иван Иванов", "Первая линия", "101")


async def trial(path: Path, config: Config) -> Trial:
    """Compile `path` and run it once on `SAMPLE_CALL` with the configured directory."""
    from cti_cli.agent.directory import DirectoryError, normalize_number, open_directory
    from cti_cli.agent.rule import RuleRunner

    operator = sample_operator(config)
    call = dict(SAMPLE_CALL)
    call["caller_e164"] = normalize_number(call["caller"], config.directory.region)
    call["trigger"] = config.rule.trigger
    result = Trial(path, call, operator, timeout=config.rule.timeout)
    directory: Any = None
    try:
        directory = open_directory(config.directory)
    except DirectoryError as exc:
        result.directory_problem = str(exc)
    try:
        try:
            runner = RuleRunner(path, config.rule.timeout, directory.find if directory else None)
        except RuleError as exc:
            result.error = str(exc)
            return result
        except OSError as exc:
            result.error = f"rule script {path}: {exc.strerror}"
            return result
        started = time.perf_counter()
        outcome = await runner.run(call, operator)
        result.seconds = time.perf_counter() - started
        runner.close()
        result.outcome = outcome
        result.error = outcome.error
        return result
    finally:
        close = getattr(directory, "close", None)
        if close is not None:
            close()


def describe_opened(opened: Sequence[Mapping[str, Any]]) -> str:
    """`card Иван Петров; request form (client_id, client_name, phone)` — for one line."""
    parts = []
    for item in opened:
        if item.get("type") == "employee_card":
            employee = item.get("employee") or {}
            parts.append(f"card {employee.get('name') or employee.get('id') or '?'}")
        else:
            fields = item.get("fields") or {}
            parts.append(f"request form ({', '.join(map(str, fields)) or 'no fields'})")
    return "; ".join(parts) or "nothing"


def trial_summary(result: Trial) -> str:
    """What the trial did, in one line (without the error)."""
    call, op = result.call, result.operator
    where = f"{call['caller']} → {call['dialed']}, operator {op.login} ({op.extension})"
    outcome = result.outcome
    if outcome is None:
        return f"does not compile ({where})"
    took = f"{result.seconds * 1000:.0f} ms"
    if outcome.skipped:
        return f"on a sample call ({where}) it skips the pop ({outcome.skip_reason}) in {took}"
    return f"on a sample call ({where}) it opens {describe_opened(outcome.opened)} in {took}"


def built_in() -> Path:
    return DEFAULT_RULE
