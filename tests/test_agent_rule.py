"""The rule runtime: the admin's on_call runs off the loop, with a timeout, errors at file:line."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from cti_cli.agent.pops import Operator
from cti_cli.agent.rule import RuleRunner, _Job, _Workers, compile_rule
from cti_cli.rules import DEFAULT_RULE, RuleError

OPERATOR = Operator("ivanov", "Иван Иванов", "Первая линия", "101")
CALL = {
    "call_id": "1.1",
    "uniqueid": "1.1",
    "caller": "89161234567",
    "caller_e164": "+79161234567",
    "caller_name": "Иван Петров",
    "dialed": "200",
    "queue": "support",
    "trigger": "answer",
}
EMPLOYEE = {"id": "E-17", "name": "Иван Петров", "phone": "8 (916) 123-45-67", "dept": "ИТ"}


def find(number: str) -> dict[str, Any] | None:
    return dict(EMPLOYEE) if number.endswith("1234567") else None


def run(path: Path, call: dict[str, Any] = CALL, timeout: float = 2.0) -> Any:
    runner = RuleRunner(path, timeout, find)
    try:
        return asyncio.run(runner.run(call, OPERATOR))
    finally:
        runner.close()


def rule(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "rule.py"
    path.write_text(body, encoding="utf-8")
    return path


def test_default_rule_known_caller_gets_card_and_form_for_the_employee() -> None:
    outcome = run(DEFAULT_RULE)
    assert outcome.error is None
    assert outcome.opened == [
        {"type": "employee_card", "employee": EMPLOYEE},
        {
            "type": "request_form",
            "fields": {"client_id": "E-17", "client_name": "Иван Петров", "phone": "+79161234567"},
        },
    ]


def test_default_rule_unknown_caller_gets_a_form_with_the_number() -> None:
    call = {**CALL, "caller": "+74950000000", "caller_e164": "+74950000000", "caller_name": "X"}
    outcome = run(DEFAULT_RULE, call)
    assert outcome.opened == [
        {"type": "request_form", "fields": {"phone": "+74950000000", "caller_name": "X"}}
    ]


def test_call_fields_as_attributes_and_items(tmp_path: Path) -> None:
    path = rule(
        tmp_path,
        "def on_call(call, cti):\n"
        "    assert call.caller == call['caller']\n"
        "    cti.open_request_form(op=call.operator.login, team=call.operator['team'],\n"
        "                          ext=call.operator.extension, q=call.queue, t=call.trigger)\n",
    )
    outcome = run(path)
    assert outcome.error is None
    assert outcome.opened[0]["fields"] == {
        "op": "ivanov", "team": "Первая линия", "ext": "101", "q": "support", "t": "answer"
    }  # fmt: skip


def test_exception_is_reported_at_the_rules_line_and_a_plain_form_is_sent(tmp_path: Path) -> None:
    path = rule(tmp_path, "def on_call(call, cti):\n    x = 1\n    return 1 / 0\n")
    outcome = run(path)
    assert outcome.error is not None
    assert f"{path}:3" in outcome.error and "ZeroDivisionError" in outcome.error
    assert outcome.opened == [
        {"type": "request_form", "fields": {"phone": "+79161234567", "caller_name": "Иван Петров"}}
    ]


@pytest.mark.timeout(20)
def test_a_rule_looping_forever_times_out_is_stopped_and_the_next_call_runs(
    tmp_path: Path,
) -> None:
    path = rule(
        tmp_path,
        "def on_call(call, cti):\n"
        "    if call.caller == 'loop':\n"
        "        while True:\n"
        "            pass\n"
        "    cti.open_request_form(ok=True)\n",
    )
    runner = RuleRunner(path, 0.3, find, workers=1)

    async def both() -> tuple[Any, Any]:
        first = await runner.run({**CALL, "caller": "loop"}, OPERATOR)
        second = await runner.run(CALL, OPERATOR)
        return first, second

    try:
        first, second = asyncio.run(both())
    finally:
        runner.close()
    assert first.error is not None and "did not finish within 0.3 s" in first.error
    assert f"{path}:" in first.error
    assert first.opened[0]["type"] == "request_form"
    # the looping thread was interrupted, so the single worker was free for the next call
    assert second.error is None
    assert second.opened == [{"type": "request_form", "fields": {"ok": True}}]


def test_rule_without_on_call_or_broken_at_import_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="defines no on_call"):
        compile_rule(rule(tmp_path, "x = 1\n"))
    with pytest.raises(RuleError, match=r"rule.py:2: NameError"):
        compile_rule(rule(tmp_path, "import os\nundefined_name\n"))


def test_changed_rule_is_reloaded_and_a_broken_edit_keeps_the_old_one(tmp_path: Path) -> None:
    path = rule(tmp_path, "def on_call(call, cti):\n    cti.open_request_form(v=1)\n")
    runner = RuleRunner(path, 2.0, find)
    try:
        path.write_text("def on_call(call, cti):\n    cti.open_request_form(v=2)\n")
        assert runner.reload_if_changed() is None
        assert asyncio.run(runner.run(CALL, OPERATOR)).opened[0]["fields"] == {"v": 2}
        path.write_text("def on_call(call, cti)\n    pass\n")
        problem = runner.reload_if_changed()
        assert problem is not None and "rule.py:1" in problem and "previous version" in problem
        assert asyncio.run(runner.run(CALL, OPERATOR)).opened[0]["fields"] == {"v": 2}
    finally:
        runner.close()


def test_what_a_rule_opens_is_made_json_safe(tmp_path: Path) -> None:
    path = rule(
        tmp_path,
        "import datetime\n"
        "def on_call(call, cti):\n"
        "    cti.open_request_form(when=datetime.date(2026, 12, 1), tags=('a', 'б'))\n",
    )
    assert run(path).opened[0]["fields"] == {"when": "2026-12-01", "tags": ["a", "б"]}


def test_sys_exit_or_keyboard_interrupt_in_a_rule_is_a_rule_error(tmp_path: Path) -> None:
    for body, name in (("import sys\n    sys.exit(3)", "SystemExit: 3"),
                       ("raise KeyboardInterrupt", "KeyboardInterrupt")):  # fmt: skip
        path = rule(tmp_path, f"def on_call(call, cti):\n    {body}\n")
        outcome = run(path)
        assert outcome.error is not None and name in outcome.error
        assert outcome.opened[0]["type"] == "request_form"


def test_non_finite_numbers_become_null_so_the_body_stays_json(tmp_path: Path) -> None:
    import json

    path = rule(
        tmp_path,
        "def on_call(call, cti):\n"
        "    cti.open_request_form(a=float('nan'), b=float('inf'), c=1.5)\n",
    )
    fields = run(path).opened[0]["fields"]
    assert fields == {"a": None, "b": None, "c": 1.5}
    json.dumps(fields, allow_nan=False)


@pytest.mark.timeout(60)
def test_a_rule_stuck_in_a_blocking_call_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = rule(tmp_path, "import time\ndef on_call(call, cti):\n    time.sleep(100)\n")
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from cti_cli.agent.pops import Operator\n"
        "from cti_cli.agent.rule import RuleRunner\n"
        f"r = RuleRunner(Path({str(path)!r}), 0.2, None)\n"
        "o = asyncio.run(r.run({'caller': '1'}, Operator('a', 'b', 'c', '101')))\n"
        "r.close()\n"
        "print(o.error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "did not finish within 0.2 s" in done.stdout


@pytest.mark.timeout(30)
def test_runs_reuse_their_threads_and_an_interrupt_never_hits_a_later_run(tmp_path: Path) -> None:
    # a worker whose run was interrupted retires: the injected exception must not surface in
    # whatever that thread runs next, even when runs end right at the timeout
    path = rule(
        tmp_path,
        "import threading, time\n"
        "def on_call(call, cti):\n"
        "    if call.caller == 'slow':\n"
        "        end = time.monotonic() + 0.05\n"
        "        while time.monotonic() < end:\n"
        "            pass\n"
        "    cti.open_request_form(n=call.caller, tid=threading.get_native_id())\n",
    )
    runner = RuleRunner(path, 0.05, find, workers=4)

    async def many() -> list[Any]:
        outcomes = []
        for n in range(60):
            caller = "slow" if n % 3 == 0 else str(n)
            outcomes.append(await runner.run({**CALL, "caller": caller}, OPERATOR))
        return outcomes

    try:
        outcomes = asyncio.run(many())
    finally:
        runner.close()
    fast = [o for n, o in enumerate(outcomes) if n % 3]
    assert all(o.error is None for o in fast), [o.error for o in fast if o.error]
    assert [o.opened[0]["fields"]["n"] for o in fast] == [str(n) for n in range(60) if n % 3]
    # quick runs share a few threads instead of starting one per pop (the event loop waits
    # for every thread start)
    assert len({o.opened[0]["fields"]["tid"] for o in fast}) <= 4


def test_a_slow_rule_never_holds_up_the_event_loop(tmp_path: Path) -> None:
    # The directory lookup inside the rule waits for something only the event loop does (here:
    # a callback it runs 20 ms later). Were the rule run on the loop, or the loop blocked until
    # the run ends, the lookup would give up after 1.5 s and the card would be missing.
    path = rule(
        tmp_path, "def on_call(call, cti):\n    cti.open_card(cti.find_employee(call.caller))\n"
    )
    import threading

    answered = threading.Event()

    def slow_find(number: str) -> dict[str, Any] | None:
        return dict(EMPLOYEE) if answered.wait(1.5) else None

    runner = RuleRunner(path, 2.0, slow_find)

    async def three_calls() -> list[Any]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, answered.set)
        return list(await asyncio.gather(*(runner.run(CALL, OPERATOR) for _ in range(3))))

    try:
        outcomes = asyncio.run(three_calls())
    finally:
        runner.close()
    assert [o.error for o in outcomes] == [None, None, None]
    assert [o.opened for o in outcomes] == [[{"type": "employee_card", "employee": EMPLOYEE}]] * 3


def test_a_worker_takes_the_next_run_as_soon_as_its_run_is_reported() -> None:
    # The loop hears a run ended (`finished`) and at once starts the next pop's run: that run
    # must find the worker free again, not start a thread of its own (a thread per pop costs
    # the event loop a thread start each time). Deterministic: the next run is submitted from
    # inside `finished`, the very moment the loop could do it.
    pool = _Workers()
    threads: list[int] = []
    second_done = threading.Event()

    def first_finished() -> None:
        pool.submit(_Job(lambda: threads.append(threading.get_ident()), second_done.set))

    pool.submit(_Job(lambda: threads.append(threading.get_ident()), first_finished))
    assert second_done.wait(5)
    assert len(threads) == 2 and threads[0] == threads[1], "the second run reused the worker"


def test_a_quick_rule_is_done_when_started_and_a_slow_one_stops_the_loop_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that ends within the inline wait comes back done from `start` (its pop goes out in
    the same loop turn as the AMI event); after one that did not, the loop waits for none for
    a while (a slow directory must not stall it pop after pop), and still gets every outcome."""
    import cti_cli.agent.rule as rule_module

    monkeypatch.setattr(rule_module, "INLINE_WAIT", 5.0)  # generous: it returns at the end
    path = rule(tmp_path, (
        "import time\n"
        "def on_call(call, cti):\n"
        "    if call.caller == 'slow':\n"
        "        time.sleep(0.3)\n"
        "    cti.open_request_form(phone=call.caller)\n"
    ))  # fmt: skip
    runner = RuleRunner(path, 2.0, find)

    async def main() -> list[Any]:
        quick = runner.start(CALL, OPERATOR)
        assert not asyncio.iscoroutine(quick), "a quick run is waited for"
        monkeypatch.setattr(rule_module, "INLINE_WAIT", 0.05)
        slow = runner.start({**CALL, "caller": "slow"}, OPERATOR)
        assert asyncio.iscoroutine(slow), "past the wait: the loop goes on"
        after = runner.start(CALL, OPERATOR)
        assert asyncio.iscoroutine(after), "right after a slow run: no wait at all"
        return [quick, await slow, await after]

    try:
        outcomes = asyncio.run(main())
    finally:
        runner.close()
    phones = [o.opened[0]["fields"]["phone"] for o in outcomes]
    assert phones == ["89161234567", "slow", "89161234567"]
    assert all(o.error is None for o in outcomes)
