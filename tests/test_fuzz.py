"""Fuzz the codec, the replay reader and the tracker with mutations of real captures (issue 11).

Splits, truncation, duplicated/reordered/dropped messages, invalid UTF-8, 1 MB values, lines
without colons, bare CR/LF, NUL, garbage: nothing but the codec's own ProtocolError (and the
replay reader's ReplayInputError) escapes, and buffers stay bounded — see tests/fuzz_support.py
for the oracle. A few hundred examples here; `python bench/fuzz.py` runs millions by hand
(its last result is in docs/reliability.md).
"""

from __future__ import annotations

import pytest
from fuzz_support import CORPUS, OPERATIONS, TRANSCRIPTS, build, check, seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.timeout(300)

PLANS = st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 2**32 - 1)), max_size=8)


def test_the_seeds_are_the_real_captures() -> None:
    assert len(TRANSCRIPTS) >= 7 and len(CORPUS) >= 40
    assert len(seeds()) == len(TRANSCRIPTS) + len(CORPUS)


def test_unmutated_seeds_decode_and_track() -> None:
    for n in range(len(seeds())):
        outcome = check(build(n, 0, []))
        assert outcome.messages > 0 and not outcome.protocol_error and not outcome.replay_refused


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), start=st.integers(0, 10_000), plan=PLANS)
def test_mutated_captures_raise_nothing_but_protocol_errors(
    seed: int, start: int, plan: list[tuple[str, int]]
) -> None:
    check(build(seed, start, plan))


@pytest.mark.parametrize("op", OPERATIONS)
def test_each_mutation_alone(op: str) -> None:
    for n in range(0, 2**32, 2**32 // 7):
        check(build(n, n >> 3, [(op, n), ("split_here", n >> 5)]))
