"""Per-module mutation score of the last `mutmut run` (docs/mutation.md), as a Markdown table.

    .venv/bin/mutmut run --max-children 1      # writes mutants/
    .venv/bin/python scripts/mutation_score.py [--survivors]

Reads mutmut's own verdicts (`mutants/**/*.py.meta`) and sets apart one kind of mutant as
equivalent: a header name whose letters changed case (`ev.get("Uniqueid")` ->
`ev.get("UNIQUEID")`). AMI header lookups ignore case (cti_cli/ami/message.py), so no test can
tell those apart; any other survivor counts. Score = killed / (killed + survived + no tests).
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import tokenize
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
KILLED = {1, 3}
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {24, -24, 36, 152, 255}
# Calls whose string arguments are header names (or `Dest`/`Transferee`... name prefixes), and
# the `prefix + "Name"` form.
_NAME_CALLS = {"get", "_find", "get_all", "_state_of", "_get", "_party", "_extension_or_number"}
# Codec names (`"utf-8"` / `"UTF-8"`) are looked up ignoring case too.
_CODEC_CALLS = {"encode", "decode"}
_MUTANT = re.compile(r"^(?P<func>.+)__mutmut_(?P<n>\d+)$")


def _functions(path: Path) -> dict[str, str]:
    """Source of every function in a mutmut-rewritten module, methods included, by name."""
    text = path.read_text("utf-8")
    lines = text.splitlines()
    out: dict[str, str] = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.end_lineno is not None:
            out[node.name] = "\n".join(lines[node.lineno - 1 : node.end_lineno])
    return out


def _strings(line: str) -> list[tuple[int, str, str, str]]:
    """(index, literal, previous token, next token) for each string literal in `line`."""
    try:
        tokens = [
            t
            for t in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline)
            if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        ]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    found = []
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.STRING:
            before = "+" if i >= 1 and tokens[i - 1].string == "+" else _callee(tokens, i)
            if before in _CODEC_CALLS and tokens[i - 1].string != "(":
                before = ""  # an error handler ("replace"), not the codec name
            after = tokens[i + 1].string if i + 1 < len(tokens) else ""
            found.append((i, tok.string, before, after))
    return found


def _callee(tokens: list[tokenize.TokenInfo], i: int) -> str:
    """The name of the call whose argument token `i` is ("" if none)."""
    depth = 0
    for j in range(i - 1, -1, -1):
        text = tokens[j].string
        if text in ")]}":
            depth += 1
        elif text in "[{":
            depth -= 1
        elif text == "(":
            if depth == 0:
                return tokens[j - 1].string if j >= 1 else ""
            depth -= 1
    return ""


def is_case_of_a_header_name(orig: str, mutant: str) -> bool:
    """Only one line differs, in one string literal, by letter case, used as a header name."""
    a, b = orig.splitlines(), mutant.splitlines()
    if len(a) != len(b):
        return False
    changed = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if len(changed) != 1:
        return False
    old, new = (_strings(line) for line in changed[0])
    if len(old) != len(new):
        return False
    diffs = [(o, n) for o, n in zip(old, new, strict=True) if o[1] != n[1]]
    if len(diffs) != 1:
        return False
    (_, lit_a, before, after), (_, lit_b, _, _) = diffs[0]
    if lit_a.lower() != lit_b.lower() or lit_a.isascii() is False:
        return False
    return before in _NAME_CALLS or before == "+" or after == "in" or before in _CODEC_CALLS


_GET_DEFAULT = re.compile(r"\.get\((?P<name>[^,()]+),\s*(?P<default>[^()]*)\)")


def survivor_kind(orig: str, mutant: str) -> str:
    """A rough class of what a counted survivor changed, for the notes in docs/mutation.md."""
    a, b = orig.splitlines(), mutant.splitlines()
    changed = [(x.strip(), y.strip()) for x, y in zip(a, b, strict=False) if x != y]
    if len(a) != len(b) or len(changed) != 1:
        return "other"
    old, new = changed[0]
    olds = {m["name"]: m["default"] for m in _GET_DEFAULT.finditer(old)}
    news = {m["name"]: m["default"] for m in _GET_DEFAULT.finditer(new)}
    if (olds.keys() == news.keys() and olds != news) or (
        len(olds) > len(news) and set(news) <= set(olds)
    ):
        return "default for an absent header"
    if "XX" in new and "XX" not in old:
        return "header or value never absent/other in the tests"
    if re.search(r"\bNone\b", new) and re.search(r"\b(ev|out)\b", old) and len(new) < len(old):
        return "ev/out argument dropped or None"
    return "other"


def verdicts() -> dict[str, Counter[str]]:
    """Per source module: killed, survived, equivalent, no tests, timeout, not checked."""
    by_module: dict[str, Counter[str]] = {}
    survivors: list[str] = []
    unchecked: list[str] = []
    kinds: Counter[str] = Counter()
    for meta in sorted(MUTANTS.glob("cti_cli/**/*.py.meta")):
        source = meta.with_suffix("")
        module = str(source.relative_to(MUTANTS))
        data = json.loads(meta.read_text("utf-8"))
        functions = _functions(source)
        counts: Counter[str] = Counter()
        for key, code in data["exit_code_by_key"].items():
            short = key.rsplit(".", 1)[-1]
            if code in KILLED:
                counts["killed"] += 1
            elif code in SURVIVED:
                match = _MUTANT.match(short)
                orig = functions.get(f"{match['func']}__mutmut_orig", "") if match else ""
                mutant = functions.get(short, "")
                if (
                    orig
                    and mutant
                    and is_case_of_a_header_name(orig.split("\n", 1)[1], mutant.split("\n", 1)[1])
                ):
                    counts["equivalent"] += 1
                else:
                    counts["survived"] += 1
                    survivors.append(key)
                    if orig and mutant:
                        body = (orig.split("\n", 1)[1], mutant.split("\n", 1)[1])
                        kinds[survivor_kind(*body)] += 1
            elif code in NO_TESTS:
                counts["no tests"] += 1
                survivors.append(key)
            elif code in TIMEOUT:
                counts["killed"] += 1  # an endless loop is a failure a user notices
            elif code is None:
                counts["not checked"] += 1
                unchecked.append(key)
            else:
                counts[f"exit {code}"] += 1
        by_module[module] = counts
    verdicts.survivors = survivors  # type: ignore[attr-defined]
    verdicts.unchecked = unchecked  # type: ignore[attr-defined]
    verdicts.kinds = kinds  # type: ignore[attr-defined]
    return by_module


def score(c: Counter[str]) -> float:
    counted = c["killed"] + c["survived"] + c["no tests"]
    return 100.0 * c["killed"] / counted if counted else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true", help="list the counted survivors")
    args = parser.parse_args()
    by_module = verdicts()
    total: Counter[str] = Counter()
    print("| module | mutants | killed | survived | no tests | equivalent (case) | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for module, c in by_module.items():
        total.update(c)
        print(
            f"| {module} | {sum(c.values())} | {c['killed']} | {c['survived']} | "
            f"{c['no tests']} | {c['equivalent']} | {score(c):.1f} % |"
        )
    print(
        f"| **all** | {sum(total.values())} | {total['killed']} | {total['survived']} | "
        f"{total['no tests']} | {total['equivalent']} | **{score(total):.1f} %** |"
    )
    print(
        "\nsurvivors by kind: "
        + ", ".join(
            f"{kind} {n}"
            for kind, n in verdicts.kinds.most_common()  # type: ignore[attr-defined]
        )
    )
    if total["not checked"]:
        print(f"\n{total['not checked']} mutants not checked yet")
    if args.survivors:  # what to run again: `mutmut run $(... --survivors | grep ^cti_cli)`
        print()
        for key in verdicts.survivors + verdicts.unchecked:  # type: ignore[attr-defined]
            print(key)


if __name__ == "__main__":
    main()
