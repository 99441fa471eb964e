"""The rule runtime: the admin's `on_call(call, cti)` run off the event loop, with a timeout.

A rule is the admin's Python code, so it can raise, block or loop forever. Each run happens in
a worker thread (reused from run to run); on timeout the thread gets an asynchronous
`RuleTimeout` exception injected (pure-Python loops stop at their next bytecode) and the pop
goes out with a plain request form. Errors name the rule's own file:line, the only place the
admin can fix.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import queue
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from cti_cli.agent.pops import Operator
from cti_cli.rules import RuleError, read_rule

log = logging.getLogger("cti.rule")

FindEmployee = Callable[[str], "dict[str, Any] | None"]
INLINE_WAIT = 0.0005  # s the loop waits for a rule run before it goes on without it
INLINE_PAUSE = 1.0  # s of no such waits after a run that took longer


class RuleTimeout(BaseException):
    """Injected into a rule thread that overran `[rule] timeout` (BaseException: a rule's
    `except Exception` must not swallow it)."""


class _View(Mapping[str, Any]):
    """Read-only fields as attributes and as items (`call.caller`, `call["caller"]`)."""

    _label = "view"

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            fields = ", ".join(self.__dict__.get("_data", {}))
            raise AttributeError(f"{self._label} has no field {name!r}; fields: {fields}") from None

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{self._label}({self._data!r})"


class CallView(_View):
    """What the rule sees of the call; `call.operator` is the operator it pops for."""

    _label = "call"
    _FIELDS = (
        "caller", "caller_e164", "caller_name", "dialed", "queue", "uniqueid", "call_id",
        "trigger",
    )  # fmt: skip

    def __init__(self, data: Mapping[str, Any], operator: Operator) -> None:
        fields: dict[str, Any] = {k: data.get(k) for k in self._FIELDS}
        fields["operator"] = _OperatorView(operator.to_dict())
        super().__init__(fields)


class _OperatorView(_View):
    _label = "operator"


@dataclass
class RuleContext:
    """The `cti` object a rule receives: lookups in, what to open out."""

    find: FindEmployee | None
    rule_name: str
    opened: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    skipped: str | None = None  # cti.skip(reason): no pop for this operator

    def find_employee(self, number: str) -> dict[str, Any] | None:
        if self.find is None or not number:
            return None
        return self.find(str(number))

    def open_card(self, employee: Mapping[str, Any]) -> None:
        if not isinstance(employee, Mapping):
            raise TypeError("cti.open_card() takes the employee dict that find_employee returned")
        self.opened.append({"type": "employee_card", "employee": _plain(dict(employee))})

    def open_request_form(self, **fields: Any) -> None:
        self.opened.append({"type": "request_form", "fields": _plain(fields)})

    def log(self, message: object) -> None:
        self.lines.append(str(message))
        log.info("%s: %s", self.rule_name, message)

    def skip(self, reason: object = "") -> None:
        """Send no pop for this call to this operator (whatever was opened before); the
        reason goes to the agent's log. The rule should `return` right after."""
        self.skipped = " ".join(str(reason).split()) or "skipped by the rule"


def _plain(value: Any) -> Any:
    """JSON-safe copy: what the rule hands over must serialise, whatever it built."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN / Infinity are not JSON: strict parsers reject the whole body
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass(frozen=True)
class RuleOutcome:
    """What one run produced: the `open` list of a screen pop, and the problem if it failed."""

    opened: list[dict[str, Any]]
    error: str | None = None
    skipped: bool = False  # the rule called cti.skip(reason): send no pop at all
    skip_reason: str | None = None


def plain_form(call: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The fallback when the rule failed: a request form with what the PBX told us."""
    phone = call.get("caller_e164") or call.get("caller") or ""
    return [
        {
            "type": "request_form",
            "fields": {"phone": phone, "caller_name": call.get("caller_name") or ""},
        }
    ]


@dataclass
class _Program:
    path: Path
    stamp: tuple[int, int, int]
    on_call: Callable[[CallView, RuleContext], object]


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def compile_rule(path: Path) -> Callable[[CallView, RuleContext], object]:
    """Load a rule file and return its `on_call`; RuleError (one line, file:line) if it can't."""
    source = read_rule(path)
    namespace: dict[str, Any] = {"__name__": "cti_rule", "__file__": str(path)}
    try:
        exec(compile(source, str(path), "exec"), namespace)
    except Exception as exc:
        raise RuleError(f"{_where(path, exc.__traceback__)}: {_describe(exc)}") from None
    on_call = namespace.get("on_call")
    if not callable(on_call):
        raise RuleError(f"{path}: defines no on_call(call, cti) function; add one")
    return on_call  # type: ignore[no-any-return]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _where(path: Path, tb: TracebackType | None) -> str:
    """`file:line` of the deepest frame inside the rule file."""
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == str(path):
            line = lineno
    return f"{path}:{line}" if line is not None else str(path)


def _where_frame(path: Path, frame: FrameType | None) -> str:
    line = None
    while frame is not None:
        if frame.f_code.co_filename == str(path) and line is None:
            line = frame.f_lineno
        frame = frame.f_back
    return f"{path}:{line}" if line is not None else str(path)


class _Slots:
    """How many rule runs may be under way at once (a run stuck in a blocking call keeps its
    slot). Taken without awaiting, so a free one is had at once by `RuleRunner.start`."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._freed = asyncio.Event()

    def take(self) -> bool:
        if self.free <= 0:
            return False
        self.free -= 1
        return True

    def release(self) -> None:
        self.free += 1
        self._freed.set()

    async def wait(self) -> None:
        """Until a slot is free (not taken: the caller starts over and takes it)."""
        while self.free <= 0:
            self._freed.clear()
            await self._freed.wait()


def _settle(future: asyncio.Future[None], slots: _Slots | None) -> None:
    if slots is not None:
        slots.release()
    if not future.done():
        future.set_result(None)


def _in_directory(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.endswith(("agent/directory.py", "agent/numbers.py")):
            return True
        frame = frame.f_back
    return False


def _interrupt(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(RuleTimeout)
    )


class _Job:
    """One run of `on_call` handed to a worker; `lock` orders "finished" against "interrupted"
    so a timeout's injected exception can only ever hit the run it was meant for."""

    __slots__ = ("done", "finished", "interrupted", "lock", "thread", "work")

    def __init__(self, work: Callable[[], None], finished: Callable[[], None]) -> None:
        self.work = work
        self.finished = finished  # called once the worker is free again
        self.done = False
        self.interrupted = False
        self.thread: int | None = None
        self.lock = threading.Lock()

    def interrupt(self) -> bool:
        """Inject RuleTimeout into the worker running this job, unless it already finished."""
        with self.lock:
            if self.done or self.thread is None:
                return False
            self.interrupted = True
            _interrupt(self.thread)
            return True


class _Workers:
    """Reused daemon threads for rule runs: starting a thread per pop costs the event loop a
    thread start and a handshake on every call. A worker whose run was interrupted retires
    (the injected exception may still be pending in it); one stuck in a blocking call simply
    stays busy, and the runner's slots bound how many can be."""

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[_Job]] = []
        self._lock = threading.Lock()

    def submit(self, job: _Job) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(
                target=self._serve, args=(inbox,), name="cti-rule", daemon=True
            ).start()
        inbox.put(job)

    def _serve(self, inbox: queue.SimpleQueue[_Job]) -> None:
        me = threading.get_ident()
        try:
            while True:
                job = inbox.get()
                with job.lock:
                    job.thread = me
                try:
                    job.work()
                finally:
                    with job.lock:
                        job.done = True
                        retire = job.interrupted
                    if not retire:  # free before the loop hears of it: its next run reuses me
                        with self._lock:
                            self._idle.append(inbox)
                    job.finished()
                if retire:
                    return
        except RuleTimeout:
            return  # an interrupt that arrived after its run ended: this worker retires


class RuleRunner:
    """Holds the current rule (reloaded when its file changes) and runs it per pop."""

    def __init__(
        self, path: Path, timeout: float, find: FindEmployee | None, *, workers: int = 16
    ) -> None:
        self.timeout = timeout
        self.find = find
        # Daemon threads: a rule stuck in a blocking call (time.sleep, a socket) that the
        # timeout cannot interrupt must never keep the process from exiting.
        self._slots: _Slots | None = None  # made on first run, in the agent's loop
        self._inline_after = 0.0  # loop time from which `start` waits for runs again
        self._workers = workers
        self._pool = _Workers()
        self._program = _Program(path, _stamp(path), compile_rule(path))

    @property
    def path(self) -> Path:
        return self._program.path

    def use(self, path: Path) -> None:
        """Switch to another rule file; RuleError (and the old rule stays) if it does not load."""
        self._program = _Program(path, _stamp(path), compile_rule(path))

    def reload_if_changed(self) -> str | None:
        """Reload a changed rule file; returns the problem when it no longer loads."""
        program = self._program
        try:
            stamp = _stamp(program.path)
        except OSError as exc:
            return f"rule script {program.path}: {exc.strerror}; the previous version keeps running"
        if stamp == program.stamp:
            return None
        try:
            self._program = _Program(program.path, stamp, compile_rule(program.path))
        except RuleError as exc:
            program.stamp = stamp  # report once per change, not every poll
            return f"{exc}; the previous version keeps running"
        log.info("rule %s reloaded", program.path)
        return None

    def start(
        self, call: Mapping[str, Any], operator: Operator
    ) -> RuleOutcome | Coroutine[Any, Any, RuleOutcome]:
        """Start `on_call` for one pop on a worker. A run that ends within ``INLINE_WAIT`` (the
        built-in rule on a CSV directory takes ~30 µs) is returned done: the loop waited for
        it rather than hear of it two loop turns later through the self-pipe, which was a
        fifth of a pop's latency. Otherwise a coroutine to await for the outcome. After a run
        that did not end in time, the loop stops waiting for ``INLINE_PAUSE`` s, so a slow rule
        (an HTTP directory) costs it at most one short wait now and then."""
        program = self._program
        context = RuleContext(self.find, program.path.name)
        view = CallView(call, operator)
        holder: dict[str, Any] = {}
        ended = threading.Event()

        def work() -> None:
            try:
                program.on_call(view, context)
            except RuleTimeout:
                holder["timeout"] = True
            except BaseException as exc:  # SystemExit, KeyboardInterrupt too: a rule's fault
                holder["error"] = f"{_where(program.path, exc.__traceback__)}: {_describe(exc)}"

        def finished() -> None:
            ended.set()
            loop.call_soon_threadsafe(_settle, future, self._slots)

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._slots is None:
            self._slots = _Slots(self._workers)
        if not self._slots.take():
            return self._queued(call, operator)
        job = _Job(work, finished)
        self._pool.submit(job)
        now = loop.time()
        if now >= self._inline_after:
            if ended.wait(INLINE_WAIT):
                return self._outcome(program, context, holder, call)
            self._inline_after = now + INLINE_PAUSE
        return self._finish(program, context, holder, call, job, future)

    async def run(self, call: Mapping[str, Any], operator: Operator) -> RuleOutcome:
        """Run `on_call` for one pop; never raises — a failed run gets the plain form."""
        started = self.start(call, operator)
        return started if isinstance(started, RuleOutcome) else await started

    async def _queued(self, call: Mapping[str, Any], operator: Operator) -> RuleOutcome:
        """Every worker is busy: wait (up to the timeout) for one to come free."""
        assert self._slots is not None
        program = self._program
        try:
            async with asyncio.timeout(self.timeout):
                await self._slots.wait()
        except TimeoutError:
            return RuleOutcome(
                plain_form(call),
                f"{program.path}: {self._workers} earlier runs of on_call are still stuck "
                "(blocking calls the timeout cannot interrupt); sent a plain request form",
            )
        return await self.run(call, operator)

    async def _finish(
        self,
        program: _Program,
        context: RuleContext,
        holder: dict[str, Any],
        call: Mapping[str, Any],
        job: _Job,
        future: asyncio.Future[None],
    ) -> RuleOutcome:
        try:
            async with asyncio.timeout(self.timeout):
                await future  # only _settle completes it, and it checks for a cancelled one
        except TimeoutError:
            where = program.path
            thread_id = job.thread
            waiting = ""
            frame = sys._current_frames().get(thread_id) if thread_id is not None else None
            if job.interrupt():
                where_text = _where_frame(where, frame)
                if _in_directory(frame):
                    waiting = " while waiting for the employee directory (directory.timeout)"
            else:
                where_text = str(where)
            return RuleOutcome(
                plain_form(call),
                f"{where_text}: on_call did not finish within {self.timeout:g} s "
                f"(rule.timeout){waiting}; sent a plain request form",
            )
        return self._outcome(program, context, holder, call)

    @staticmethod
    def _outcome(
        program: _Program, context: RuleContext, holder: dict[str, Any], call: Mapping[str, Any]
    ) -> RuleOutcome:
        if "error" in holder:
            return RuleOutcome(plain_form(call), f"{holder['error']}; sent a plain request form")
        if context.skipped is not None:
            return RuleOutcome([], None, skipped=True, skip_reason=context.skipped)
        if not context.opened:
            return RuleOutcome([], None)
        return RuleOutcome(context.opened, None)

    def close(self) -> None:
        """Nothing to wait for: rule threads are daemons and never hold the process."""
