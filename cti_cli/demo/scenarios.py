"""The demo's call mix: which recorded call happens next, to which operators, from whom.

The PBX of the demo is the lab's (queues `support` ring-all 101+102 on 200, `support-linear`
101→102→103 on 220, ring group 102&103 on 300, direct 101–104), plus phone 104 at the
reception, which is in no team. A `Traffic` draws calls from a seeded `random.Random`, so a
`--seed` gives the same calls in the same order; an operator busy in one call is not rung
for another (the queues say `ringinuse = no`), so calls are only started on free phones.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from cti_cli.demo import templates
from cti_cli.demo.templates import LAB_EXTENSIONS, Timing

__all__ = ["EMPLOYEES", "KINDS", "OPERATORS", "TEAMS", "Kind", "PlannedCall", "Traffic"]

OPERATORS = ("101", "102", "103", "104")
ALL = OPERATORS
QUEUE = ("101", "102")
LINEAR = ("101", "102", "103")
GROUP = ("102", "103")

#: (team, [(login, name, extension)]); 104 (reception) is in no team: it never gets a pop.
TEAMS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("Первая линия", (("ivanov", "Иван Иванов", "101"), ("petrova", "Мария Петрова", "102"))),
    ("Second line", (("jsmith", "John Smith", "103"),)),
)

#: The employee directory (CSV): id, name, phone as people write them, department, email.
EMPLOYEES: tuple[tuple[str, str, str, str, str], ...] = (
    ("E-17", "Пётр Сидоров", "8 (916) 123-45-67", "Бухгалтерия", "p.sidorov@example.org"),
    ("E-23", "Анна Кузнецова", "+7 495 765-43-21", "Отдел кадров", "a.kuznetsova@example.org"),
    ("E-31", "John Miller", "+7 (903) 555-01-02", "IT", "j.miller@example.org"),
    ("E-42", "Ольга Смирнова", "+7 916 222-33-44; 8 495 111-22-33", "Склад",
     "o.smirnova@example.org"),
    ("E-56", "Maria Garcia", "8-926-700-80-90", "Sales", "m.garcia@example.org"),
    ("E-64", "Дмитрий Волков", "+79851112233", "Юридический отдел", "d.volkov@example.org"),
    ("E-77", "Emma Johnson", "+7 (915) 404-50-60", "Marketing", "e.johnson@example.org"),
    ("E-88", "Сергей Новиков", "8 (903) 777-66-55", "Логистика", "s.novikov@example.org"),
)  # fmt: skip


@dataclass(frozen=True)
class Kind:
    """A kind of call: its recording, how often it happens, who may play each lab phone."""

    template: str
    label: str
    weight: float
    pools: dict[str, tuple[str, ...]]  # lab extension -> demo extensions it may become


KINDS: tuple[Kind, ...] = (
    Kind("queue_ringall_answered", "queue (ring-all), answered", 20,
         {"101": QUEUE, "102": QUEUE, "103": ("103",)}),
    Kind("queue_linear_answered", "queue (linear), answered", 10,
         {"101": LINEAR, "102": LINEAR, "103": LINEAR}),
    Kind("queue_abandoned", "queue, caller gave up", 6,
         {"101": QUEUE, "102": QUEUE, "103": ("103",)}),
    Kind("queue_nobody_answers", "queue, nobody answered", 4,
         {"101": QUEUE, "102": QUEUE, "103": ("103",)}),
    Kind("ringgroup_answered", "ring group, answered", 10,
         {"101": ("101",), "102": GROUP, "103": GROUP}),
    Kind("direct_answered", "direct, answered", 15, {"101": ALL, "102": ALL, "103": ALL}),
    Kind("direct_no_answer", "direct, missed", 4, {"101": ALL, "102": ALL, "103": ALL}),
    Kind("direct_caller_hangs_up", "direct, caller hung up", 5,
         {"101": ALL, "102": ALL, "103": ALL}),
    Kind("direct_busy", "direct, busy", 5, {"101": ALL, "102": ALL, "103": ALL}),
    Kind("blind_transfer", "answered, blind transfer", 8, {"101": ALL, "102": ALL, "103": ALL}),
    Kind("pickup", "ringing, picked up by another", 6, {"101": ALL, "102": ALL, "103": ALL}),
)  # fmt: skip
_BY_NAME = {kind.template: kind for kind in KINDS}


@dataclass(frozen=True)
class PlannedCall:
    """One call the demo will play."""

    kind: Kind
    ext_map: dict[str, str]  # lab extension -> demo extension
    caller: str  # as the trunk sends it
    caller_name: str  # "" = none (<unknown>)
    duration: float  # seconds, with the demo's timing

    @property
    def phones(self) -> frozenset[str]:
        """The demo phones that take part (busy for the call's length)."""
        involved = templates.load(self.kind.template).extensions
        return frozenset(self.ext_map[ext] for ext in involved)


def e164_digits(phone: str) -> str:
    """The first number of a directory cell, as 7XXXXXXXXXX (Russian numbers)."""
    first = phone.replace(",", ";").split(";")[0]
    digits = "".join(c for c in first if c.isdigit())
    if len(digits) == 11 and digits[0] == "8":
        digits = "7" + digits[1:]
    return digits


class Traffic:
    """Draws the next call; `opening()` first (an answered queue call, then a call for 104)."""

    def __init__(self, rng: Random, timing: Timing, rate: float) -> None:
        self.rng = rng
        self.timing = timing
        self.rate = rate  # calls per minute
        self._opening = ["queue_ringall_answered", "direct_answered"]

    def gap(self) -> float:
        """Seconds until the next call (Poisson arrivals at `rate` per minute)."""
        return self.rng.expovariate(self.rate / 60.0) if self.rate > 0 else float("inf")

    def next(self, busy: frozenset[str]) -> PlannedCall | None:
        """A call that fits the free phones (None if none does now)."""
        if self._opening:
            opening = self._plan_opening(self._opening.pop(0), busy)
            if opening is not None:
                return opening
        kinds = list(KINDS)
        for _ in range(8):
            kind = self.rng.choices(kinds, weights=[k.weight for k in kinds])[0]
            ext_map = self._assign(kind, busy)
            if ext_map is not None:
                caller, name = self._caller()
                return self._planned(kind, ext_map, caller, name)
        return None

    def _plan_opening(self, name: str, busy: frozenset[str]) -> PlannedCall | None:
        kind = _BY_NAME[name]
        ext_map = {"101": "101", "102": "102", "103": "103"}
        if name == "direct_answered":
            ext_map = {"101": "104", "102": "102", "103": "103"}
        if self._fits(kind, ext_map, busy):
            employee = EMPLOYEES[0] if name == "queue_ringall_answered" else EMPLOYEES[2]
            return self._planned(kind, ext_map, "+" + e164_digits(employee[2]), employee[1])
        return None

    def _planned(self, kind: Kind, ext_map: dict[str, str], caller: str, name: str) -> PlannedCall:
        duration = templates.load(kind.template).scaled_duration(self.timing)
        return PlannedCall(kind, ext_map, caller, name, duration)

    @staticmethod
    def _fits(kind: Kind, ext_map: dict[str, str], busy: frozenset[str]) -> bool:
        involved = templates.load(kind.template).extensions
        return not any(ext_map[ext] in busy for ext in involved)

    def _assign(self, kind: Kind, busy: frozenset[str]) -> dict[str, str] | None:
        involved = sorted(templates.load(kind.template).extensions)
        used: set[str] = set()
        ext_map: dict[str, str] = {}
        for ext in involved:
            options = [o for o in kind.pools[ext] if o not in used and o not in busy]
            if not options:
                return None
            ext_map[ext] = self.rng.choice(options)
            used.add(ext_map[ext])
        for ext in LAB_EXTENSIONS:  # the others: themselves if free of clashes
            if ext in ext_map:
                continue
            options = [o for o in (ext, *kind.pools[ext], *OPERATORS) if o not in used]
            ext_map[ext] = options[0]
            used.add(options[0])
        return ext_map

    def _caller(self) -> tuple[str, str]:
        """A caller: mostly employees (number as a trunk sends it, name or not), else a
        number the directory does not know."""
        rng = self.rng
        if rng.random() < 0.75:
            employee = rng.choice(EMPLOYEES)
            digits = e164_digits(employee[2])
            number = "+" + digits if rng.random() < 0.6 else "8" + digits[1:]
            name = employee[1] if rng.random() < 0.7 else ""
            return number, name
        number = "+79" + "".join(str(rng.randrange(10)) for _ in range(9))
        return number, ""


def kind(name: str) -> Kind:
    return _BY_NAME[name]

