"""Start-up time of the `cti` command: `cti --help` and `cti show` against a bare interpreter.

Runs `python -c pass` (the floor: interpreter and site, the editable install's finder included),
`cti --help` and `cti show` (a small config: a server, a team, a webhook; the built-in rule)
N times each, interleaved round by round so that a busy machine slows all of them alike, and
prints the median and the spread side by side. Goal: `cti --help` and `cti show` ≤ 150 ms.

Output goes to /dev/null, as into a pipe: no colours. `cti show (colours)` is the same command
with FORCE_COLOR=1, what a terminal pays: rich then highlights the rule as Python. `typer, one
bare command` is the floor of any `cti` command: a typer app whose command does nothing (typer
0.29 imports pydantic to coerce option values, whatever the command). `pydantic model + rich
console` is the floor of `cti show` without typer: validate a two-field pydantic model and print
one line through rich.

    .venv/bin/python bench/startup.py            # N = 21
    .venv/bin/python bench/startup.py -n 51 --markdown
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CONFIG = """\
[server]
host = "pbx.example.org"
login = "cti"
password = "bench-secret"

[[teams]]
name = "Первая линия"
members = [{ login = "ivanov", name = "Иван Иванов", extensions = ["101"] }]

[[webhooks]]
url = "https://sd.example.org/cti/events"
secret = "bench"
"""
BARE_TYPER_APP = """\
import typer

app = typer.Typer(add_completion=False)


@app.callback()
def main() -> None:
    pass


@app.command()
def bare() -> None:
    pass


app()
"""

# What `cti show` cannot do without: validate a (tiny) pydantic model and print through rich.
PYDANTIC_AND_RICH = """\
import pydantic
from rich.console import Console


class Server(pydantic.BaseModel):
    host: str
    port: int = 5038


Console().print(Server.model_validate({"host": "pbx"}).host)
"""


def commands(folder: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name → (argv, variables added to the environment)."""
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], {}),
        "typer, one bare command": ([sys.executable, str(folder / "bare.py"), "bare"], {}),
        "pydantic model + rich console": ([sys.executable, str(folder / "floor.py")], {}),
        "cti --help": ([str(BIN / "cti"), "--help"], {}),
        "cti show": ([str(BIN / "cti"), "show"], {}),
        "cti show (colours)": ([str(BIN / "cti"), "show"], {"FORCE_COLOR": "1"}),
    }


def run_once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace')}")
    return took


def measure(rounds: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="cti-bench-") as folder:
        conf = Path(folder) / "cti.toml"
        conf.write_text(CONFIG, "utf-8")
        conf.chmod(0o600)
        (Path(folder) / "bare.py").write_text(BARE_TYPER_APP, "utf-8")
        (Path(folder) / "floor.py").write_text(PYDANTIC_AND_RICH, "utf-8")
        skip = ("CTI_", "PYTHON", "FORCE_COLOR", "NO_COLOR")
        env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
        env["CTI_CONFIG"] = str(conf)
        env["COLUMNS"] = "100"
        cmds = commands(Path(folder))
        for argv, extra in cmds.values():  # warm the page cache and the .pyc files
            run_once(argv, {**env, **extra})
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(rounds):
            for name, (argv, extra) in cmds.items():
                times[name].append(run_once(argv, {**env, **extra}))
        return times


def table(times: dict[str, list[float]], markdown: bool) -> str:
    floor = statistics.median(times["python -c pass"])
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        rows.append((
            name,
            f"{median * 1000:.0f}",
            f"{min(samples) * 1000:.0f}–{max(samples) * 1000:.0f}",
            "" if name == "python -c pass" else f"+{(median - floor) * 1000:.0f}",
        ))  # fmt: skip
    head = ("command", "median ms", "min–max ms", "over python")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "| --- | ---: | ---: | ---: |"]
        lines += ["| `" + r[0] + "` | " + " | ".join(r[1:]) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))

    return "\n".join(line(row) for row in [head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--rounds", type=int, default=21, help="runs of each command")
    parser.add_argument("--markdown", action="store_true", help="a table for docs/performance.md")
    args = parser.parse_args()
    times = measure(args.rounds)
    print(f"{args.rounds} runs each, interleaved; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(table(times, args.markdown))


if __name__ == "__main__":
    main()
