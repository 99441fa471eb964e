"""Who gets a screen pop and which call events go out: the planner, as a pure unit."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti_cli.agent.pops import Operator, PopPlanner, delivery_key
from cti_cli.calls import Answered, Ended, Ringing, Transferred

OWNERS = {
    "101": Operator("ivanov", "Иван Иванов", "Первая линия", "101"),
    "103": Operator("petrova", "Анна Петрова", "Вторая линия", "103"),
}
BASE = ("1700000000.1", "1700000000.1", "+79161234567", "Иван Петров", "200", "support", None)


def ring(ext: str) -> Ringing:
    return Ringing(*BASE, ext)


def answer(ext: str) -> Answered:
    return Answered(*BASE, ext)


def end(rang: tuple[str, ...] = ("101",), by: tuple[str, ...] = ("101",)) -> Ended:
    return Ended(*BASE, bool(by), by, rang, "completed" if by else "no-answer", 3)


def run(planner: PopPlanner, *events: object) -> tuple[list[str], list[str]]:
    pops: list[str] = []
    life: list[str] = []
    for event in events:
        plan = planner.plan(event)  # type: ignore[arg-type]
        pops += [f"{p.operator.login}@{p.trigger}" for p in plan.pops]
        life += [f"{item.event}:{item.body.get('extension', '')}" for item in plan.lifecycle]
    return pops, life


def test_answer_trigger_pops_only_the_answering_team_member() -> None:
    planner = PopPlanner(OWNERS, "answer", "pbx1")
    pops, _ = run(planner, ring("101"), ring("102"), answer("101"), end(("101", "102")))
    assert pops == ["ivanov@answer"]


def test_ring_trigger_pops_each_ringing_team_member_once_across_rounds() -> None:
    planner = PopPlanner(OWNERS, "ring", "pbx1")
    rounds = [ring("101"), ring("102"), ring("103")] * 3
    pops, life = run(planner, *rounds, end(("101", "102", "103"), ()))
    assert pops == ["ivanov@ring", "petrova@ring"]
    # every round is still reported as a lifecycle event
    assert life.count("call.ringing:101") == 3


def test_non_team_extension_gets_nothing_and_its_call_sends_no_events() -> None:
    planner = PopPlanner(OWNERS, "answer", "pbx1")
    pops, life = run(planner, ring("102"), answer("102"), end(("102",), ("102",)))
    assert pops == [] and life == []
    assert planner.active() == 0, "state of an ended call is dropped"


def test_events_before_a_team_member_is_reached_are_sent_in_order_once_it_is() -> None:
    planner = PopPlanner(OWNERS, "answer", "pbx1")
    transfer = Transferred(*BASE, "102", "101")
    pops, life = run(
        planner, ring("102"), answer("102"), transfer, ring("101"), answer("101"), end()
    )
    assert pops == ["ivanov@answer"]
    assert life == [
        "call.ringing:102",
        "call.answered:102",
        "call.transferred:",
        "call.ringing:101",
        "call.answered:101",
        "call.ended:",
    ]


def test_lifecycle_body_is_the_call_event_contract_with_a_prefixed_event() -> None:
    planner = PopPlanner(OWNERS, "answer", "pbx1")
    plan = planner.plan(ring("101"))
    body = plan.lifecycle[0].body
    assert body == {**ring("101").to_dict(), "event": "call.ringing"}
    assert body["caller_name"] == "Иван Петров"


def test_delivery_keys_are_deterministic_and_distinct() -> None:
    first = PopPlanner(OWNERS, "ring", "pbx1")
    second = PopPlanner(OWNERS, "ring", "pbx1")
    events = [ring("101"), ring("101"), answer("101")]
    keys_a = [k for e in events for k in _keys(first, e)]
    keys_b = [k for e in events for k in _keys(second, e)]
    assert keys_a == keys_b, "another agent following the same PBX computes the same keys"
    assert len(set(keys_a)) == len(keys_a), "a second ring round is a new event"
    other_pbx = PopPlanner(OWNERS, "ring", "pbx2")
    assert _keys(other_pbx, ring("101"))[0] != keys_a[0]
    assert delivery_key("p", "c", "e", "x") == delivery_key("p", "c", "e", "x")


def _keys(planner: PopPlanner, event: object) -> list[str]:
    plan = planner.plan(event)  # type: ignore[arg-type]
    return [p.key for p in plan.pops] + [item.key for item in plan.lifecycle]


def test_reconfigured_teams_apply_to_calls_in_progress() -> None:
    planner = PopPlanner({}, "answer", "pbx1")
    assert run(planner, ring("101"))[0] == []
    planner.configure(OWNERS, "answer")
    pops, life = run(planner, answer("101"))
    assert pops == ["ivanov@answer"]
    assert life == ["call.ringing:101", "call.answered:101"]


def test_delivery_keys_never_change_across_versions() -> None:
    # Receivers deduplicate on X-CTI-Delivery: an upgraded agent (or a standby of another
    # version) must compute the key an older one put in its outbox.
    assert (
        delivery_key("pbx1", "1733100000.12", "screen_pop", "ivanov@answer", 1)
        == "1e6e005d-a7ce-52f4-bcaa-6abb42f5e870"
    )
    assert (
        delivery_key("Астериск", "c", "call.ended", "", 3)
        == "706cac69-ebc4-5ad1-80f3-d66b95a4bd9d"
    )


@given(st.text(), st.text(), st.text(), st.text(), st.integers(min_value=0, max_value=10**6))
def test_delivery_key_is_the_rfc_4122_name_based_uuid(
    pbx: str, call_id: str, event: str, party: str, nth: int
) -> None:
    name = "\x1f".join((pbx, call_id, event, party, str(nth)))
    try:
        expected = str(uuid.uuid5(uuid.UUID("6f4c2a64-4c1b-4f63-9d0e-0c7a1f1e5c11"), name))
    except UnicodeEncodeError:  # a lone surrogate: neither can hash it
        with pytest.raises(UnicodeEncodeError):
            delivery_key(pbx, call_id, event, party, nth)
        return
    assert delivery_key(pbx, call_id, event, party, nth) == expected
