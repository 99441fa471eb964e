"""Mutation fuzzing of the AMI codec, the replay reader and the call tracker (issue 11, the suite).

Seeds are real captures: the raw AMI transcripts in `tests/transcripts/*.ami` and the cacofonisk
corpus (`tests/data/cacofonisk`, JSON turned into AMI wire bytes). A *plan* is a list of
`(operation, number)` pairs; each operation mutates a window of a seed's messages or its bytes
(`number` picks where), and the result is fed to the decoder in chunks split where the plan says.

The oracle: nothing but the codec's own `ProtocolError` escapes `AMIDecoder.feed`, nothing at
all escapes `Message` or `CallTracker.feed`, nothing but `ReplayInputError` escapes
`read_events`; the decoder never holds more than `max_message` bytes and the tracker never more
than `max_active` calls. `tests/test_fuzz.py` drives it with hypothesis, `bench/fuzz.py` with a
seeded PRNG for millions of inputs.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from cti_cli.ami.codec import AMIDecoder
from cti_cli.ami.errors import ProtocolError
from cti_cli.calls import CallTracker
from cti_cli.calls.sources import ReplayInputError, read_events

HERE = Path(__file__).resolve().parent
TRANSCRIPTS = sorted((HERE / "transcripts").glob("*.ami"))
CORPUS = sorted((HERE / "data" / "cacofonisk").glob("*/*.json"))

BANNER = b"Asterisk Call Manager/5.0.1\r\n"
MAX_MESSAGE = 1 << 20  # the client's default bound
MAX_ACTIVE = 32  # small, so eviction is exercised too
WINDOW = 12  # messages of a seed per input: keeps one input cheap (≈0.3 ms)
HUGE = b"x" * (1 << 20)  # a 1 MB value
_BLOCK_END = re.compile(rb"\r?\n\r?\n")

OPERATIONS = (
    "truncate", "duplicate", "swap", "reverse", "drop", "invalid_utf8", "huge_value",
    "big_value", "no_colon", "bare_cr", "bare_lf", "flip_byte", "blank_lines", "nul",
    "follows", "insert_garbage", "cut_message", "split_here", "endless",
)  # fmt: skip


@cache
def seeds() -> tuple[tuple[bytes, ...], ...]:
    """Every seed as its list of messages (header blocks, no terminator, banner removed)."""
    out: list[tuple[bytes, ...]] = []
    for path in TRANSCRIPTS:
        raw = path.read_bytes()
        if raw.startswith(b"Asterisk Call Manager/"):
            raw = raw.split(b"\n", 1)[1]
        blocks = tuple(b for b in _BLOCK_END.split(raw) if b.strip())
        if blocks:
            out.append(blocks)
    for path in CORPUS:
        events = json.loads(path.read_text("utf-8"))
        blocks = tuple(
            "\r\n".join(f"{k}: {v}" for k, v in event.items()).encode("utf-8")
            for event in events
            if isinstance(event, dict)
        )
        if blocks:
            out.append(blocks)
    return tuple(out)


@dataclass
class Case:
    """One input: the bytes and where the decoder's reads end."""

    data: bytes
    cuts: list[int] = field(default_factory=list)

    def chunks(self) -> list[bytes]:
        points = sorted({c for c in self.cuts if 0 < c < len(self.data)})
        edges = [0, *points, len(self.data)]
        return [self.data[a:b] for a, b in itertools.pairwise(edges)]


def build(seed: int, start: int, plan: Sequence[tuple[str, int]]) -> Case:
    """Apply `plan` to a window of seed `seed` (both taken modulo what exists)."""
    all_seeds = seeds()
    messages = all_seeds[seed % len(all_seeds)]
    first = start % len(messages)
    msgs = list(messages[first : first + WINDOW])
    byte_ops: list[tuple[str, int]] = []
    cuts: list[int] = []
    for op, n in plan:
        i = n % len(msgs) if msgs else 0
        if op == "duplicate" and msgs:
            msgs.insert(i, msgs[i])
        elif op == "swap" and len(msgs) > 1:
            j = (n // 7) % len(msgs)
            msgs[i], msgs[j] = msgs[j], msgs[i]
        elif op == "reverse" and msgs:
            msgs[i:] = msgs[i:][::-1]
        elif op == "drop" and msgs:
            del msgs[i]
        elif op == "huge_value" and msgs:
            msgs[i] += b"\r\nVariable: " + HUGE
        elif op == "big_value" and msgs:
            msgs[i] += b"\r\nCallerIDName: " + b"\xd0\x98" * (n % 40_000)
        elif op == "no_colon" and msgs:
            msgs[i] += b"\r\nthis line has no colon"
        elif op == "follows" and msgs:
            msgs.insert(i, b"Response: Follows\r\nPrivilege: Command\r\nno end of command")
        elif op == "cut_message" and msgs:
            msgs[i] = msgs[i][: n % (len(msgs[i]) + 1)]
        elif op == "split_here":
            cuts.append(n)
        else:
            byte_ops.append((op, n))
    data = bytearray(BANNER + b"".join(m + b"\r\n\r\n" for m in msgs))
    for op, n in byte_ops:
        at = n % (len(data) + 1)
        if op == "truncate":
            del data[at:]
        elif op == "invalid_utf8":
            data[at:at] = b"\xff\xfe\xc3(\xed\xa0\x80"
        elif op == "bare_cr":
            nl = data.find(b"\r\n", at)
            if nl >= 0:
                data[nl : nl + 2] = b"\r"
            else:
                data[at:at] = b"\r"
        elif op == "bare_lf":
            data[:] = data.replace(b"\r\n", b"\n", 1 + n % 8)
        elif op == "flip_byte" and data:
            data[at % len(data)] ^= 1 << (n % 8)
        elif op == "blank_lines":
            data[at:at] = b"\r\n" * (1 + n % 3)
        elif op == "nul":
            data[at:at] = b"\x00"
        elif op == "endless":  # a message that never ends: 2 MB in 64 KB reads
            cuts.extend(range(len(data), len(data) + 2 * len(HUGE), 1 << 16))
            data += b"Event: VarSet\r\nValue: " + HUGE + HUGE
        elif op == "insert_garbage":
            data[at:at] = bytes((n >> k) & 0xFF for k in range(0, 32, 8))
    return Case(bytes(data), cuts)


@dataclass
class Outcome:
    messages: int = 0
    call_events: int = 0
    protocol_error: bool = False
    replay_refused: bool = False
    damaged: int = 0


def check(case: Case) -> Outcome:
    """Run the oracle on one input; an exception out of here is a finding."""
    out = Outcome()
    decoder = AMIDecoder(MAX_MESSAGE)
    tracker = CallTracker(max_active=MAX_ACTIVE)
    for chunk in case.chunks():
        try:
            msgs = decoder.feed(chunk)
        except ProtocolError:
            out.protocol_error = True
            break
        assert decoder.buffered <= MAX_MESSAGE, decoder.buffered
        for msg in msgs:
            out.messages += 1
            msg.headers, msg.name, msg.is_response, msg.output  # noqa: B018  # parse it all
            if msg.is_event:
                out.call_events += len(tracker.feed(msg))
        assert len(tracker._live) <= MAX_ACTIVE, len(tracker._live)

    tracker = CallTracker(max_active=MAX_ACTIVE)

    def damaged(where: str, why: str) -> None:
        out.damaged += 1

    try:
        for event in read_events(io.BytesIO(case.data), damaged):
            out.call_events += len(tracker.feed(event))
    except ReplayInputError:
        out.replay_refused = True
    assert len(tracker._live) <= MAX_ACTIVE
    return out
