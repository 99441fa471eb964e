"""AMI codec edges: limits at exact boundaries, odd line ends between messages, ``Response:
Follows`` bodies, the greeting line, error wording, action encoding. Pure, no I/O."""

from __future__ import annotations

import pytest

from cti_cli.ami.codec import DEFAULT_MAX_MESSAGE, AMIDecoder, encode_action, merge_headers
from cti_cli.ami.errors import ActionError, ProtocolError
from cti_cli.ami.message import Message

_TAIL = "; the peer is not speaking AMI or the stream is corrupt"


def _ended(size: int, limit: int) -> str:
    return f"an AMI message of {size} bytes (ended), larger than {limit} bytes{_TAIL}"


def _unended(limit: int) -> str:
    return f"an AMI message larger than {limit} bytes without its end (blank line){_TAIL}"


def _feed_all(decoder: AMIDecoder, chunks: list[bytes]) -> list[Message]:
    out: list[Message] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def _event(size: int, eol: bytes = b"\r\n") -> bytes:
    """An event whose raw header bytes (without the blank line) are exactly `size` long."""
    head = b"Event: Big" + eol + b"Data: "
    return head + b"y" * (size - len(head))


# -- limits at exact boundaries ------------------------------------------------------------
def test_default_limit_is_one_mebibyte_exactly() -> None:
    assert DEFAULT_MAX_MESSAGE == 1 << 20
    decoder = AMIDecoder(expect_banner=False)
    assert decoder.max_message == 1 << 20
    assert [m.name for m in decoder.feed(_event(1 << 20) + b"\r\n\r\n")] == ["Big"]
    with pytest.raises(ProtocolError) as err:
        decoder.feed(_event((1 << 20) + 1) + b"\r\n\r\n")
    assert str(err.value) == _ended((1 << 20) + 1, 1 << 20)


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])  # the fast framer and the careful one
def test_a_message_of_exactly_the_limit_passes_and_one_byte_more_fails(eol: bytes) -> None:
    ok = AMIDecoder(max_message=100, expect_banner=False)
    msgs = ok.feed(b"Event: A" + eol + eol + _event(100, eol) + eol + eol)
    assert [m.name for m in msgs] == ["A", "Big"]
    assert msgs[1]["Data"] == "y" * (100 - len(b"Event: Big" + eol + b"Data: "))
    bad = AMIDecoder(max_message=100, expect_banner=False)
    assert [m.name for m in bad.feed(b"Event: A" + eol + eol + _event(101, eol) + eol + eol)] == [
        "A"
    ]
    assert bad.buffered == 0  # nothing after it is held
    with pytest.raises(ProtocolError) as err:
        bad.feed(b"Event: C\r\n\r\n")
    assert str(err.value) == _ended(101, 100)
    with pytest.raises(ProtocolError):  # the stream stays broken
        bad.feed(b"Event: D\r\n\r\n")


def test_crlf_lines_count_alike_in_both_framers() -> None:
    for blank in (b"\r\n", b"\n"):  # a bare-LF blank line sends the read to the careful framer
        ok = AMIDecoder(max_message=100, expect_banner=False)
        data = b"Event: A" + blank + blank + _event(100) + b"\r\n" + blank
        assert [m.name for m in ok.feed(data)] == ["A", "Big"]
        bad = AMIDecoder(max_message=100, expect_banner=False)
        data = b"Event: A" + blank + blank + _event(101) + b"\r\n" + blank
        assert [m.name for m in bad.feed(data)] == ["A"]
        with pytest.raises(ProtocolError) as err:
            bad.feed(b"")
        assert str(err.value) == _ended(101, 100)


def test_a_message_of_exactly_the_limit_split_across_reads_passes() -> None:
    data = _event(100) + b"\r\n\r\n"
    for cut in (10, 99, 100):  # a read may end anywhere before its line end
        decoder = AMIDecoder(max_message=100, expect_banner=False)
        assert [m.name for m in _feed_all(decoder, [data[:cut], data[cut:]])] == ["Big"]
        assert decoder.buffered == 0


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_a_first_read_past_the_limit_without_an_end_says_so(eol: bytes) -> None:
    decoder = AMIDecoder(max_message=100, expect_banner=False)
    assert [m.name for m in decoder.feed(b"Event: A" + eol + eol + _event(101, eol))] == ["A"]
    assert decoder.buffered == 0
    with pytest.raises(ProtocolError) as err:
        decoder.feed(b"")
    assert str(err.value) == _unended(100)
    with pytest.raises(ProtocolError) as err:
        AMIDecoder(max_message=100, expect_banner=False).feed(_event(101, eol))
    assert str(err.value) == _unended(100)


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_exactly_the_limit_without_an_end_is_kept_for_the_next_read(eol: bytes) -> None:
    decoder = AMIDecoder(max_message=100, expect_banner=False)
    assert [m.name for m in decoder.feed(b"Event: A" + eol + eol + _event(100, eol))] == ["A"]
    assert decoder.buffered == 100
    assert [m.name for m in decoder.feed(eol + eol)] == ["Big"]
    assert decoder.buffered == 0 and decoder.error is None
    data = _event(100, eol)
    assert decoder.feed(data[:40]) == [] and decoder.feed(data[40:]) == []
    assert decoder.buffered == 100 and decoder.error is None
    assert [m.name for m in decoder.feed(eol + eol)] == ["Big"]


def test_a_follows_reply_of_exactly_the_limit_passes_after_a_neighbour() -> None:
    head = b"Response: Follows\r\nActionID: 5\r\n"
    body = b"z" * (100 - len(head))
    data = b"Event: Neighbour\r\n\r\n" + head + body + b"--END COMMAND--\r\n\r\n"
    msgs = AMIDecoder(max_message=100, expect_banner=False).feed(data)
    assert [m.name for m in msgs] == ["Neighbour", "Follows"]
    assert msgs[1].output == ["z" * len(body)]
    bad = AMIDecoder(max_message=100, expect_banner=False)
    assert [m.name for m in bad.feed(data.replace(body, body + b"z"))] == ["Neighbour"]
    with pytest.raises(ProtocolError) as err:
        bad.feed(b"")
    assert str(err.value) == _ended(101, 100)


# -- the greeting line ---------------------------------------------------------------------
def test_a_banner_of_exactly_the_limit_passes_and_one_byte_more_fails() -> None:
    line = b"Asterisk Call Manager/" + b"9" * (50 - 22)
    decoder = AMIDecoder(max_message=50)
    assert decoder.feed(line + b"\r\nEvent: A\r\n\r\n")[0].name == "A"
    assert decoder.banner == line.decode() and decoder.greeting_done
    long = AMIDecoder(max_message=50)
    with pytest.raises(ProtocolError) as err:
        long.feed(line + b"9\r\nEvent: A\r\n\r\n")
    assert str(err.value) == _ended(51, 50)
    assert long.buffered == 0 and long.banner is None


def test_a_banner_without_its_line_end_past_the_limit_says_so() -> None:
    decoder = AMIDecoder(max_message=50)
    assert decoder.feed(b"Asterisk Call Manager/") == []
    with pytest.raises(ProtocolError) as err:
        decoder.feed(b"1" * 40)
    assert str(err.value) == _unended(50)
    with pytest.raises(ProtocolError) as err:
        AMIDecoder(max_message=50).feed(b"A" * 51)
    assert str(err.value) == _unended(50)


def test_the_greeting_is_done_once_its_line_is_read() -> None:
    decoder = AMIDecoder()
    assert not decoder.greeting_done
    assert decoder.feed(b"Asterisk Call Manager/2.10.6\r") == []
    assert not decoder.greeting_done and decoder.buffered > 0
    assert decoder.feed(b"\n") == []
    assert decoder.greeting_done and decoder.ami_version == "2.10.6"
    assert decoder.banner == "Asterisk Call Manager/2.10.6"
    assert [m.name for m in decoder.feed(b"Event: FullyBooted\r\n\r\n")] == ["FullyBooted"]
    assert decoder.banner == "Asterisk Call Manager/2.10.6"


def test_an_empty_first_line_is_the_greeting() -> None:
    decoder = AMIDecoder()
    assert [m.name for m in decoder.feed(b"\nEvent: A\r\n\r\n")] == ["A"]
    assert decoder.banner == "" and decoder.ami_version is None and decoder.greeting_done


def test_a_garbled_ami_version_is_replaced_not_raised() -> None:
    decoder = AMIDecoder()
    decoder.feed(b"Asterisk Call Manager/2.\xd0\x98 (x)\r\n")
    assert decoder.ami_version == "2.\ufffd\ufffd"
    assert decoder.banner == "Asterisk Call Manager/2.И (x)"


def test_a_foreign_banner_has_no_ami_version() -> None:
    decoder = AMIDecoder()
    assert decoder.feed(b"Asterisk Call Manager/\r\nEvent: A\r\n\r\n")[0].name == "A"
    assert decoder.banner == "Asterisk Call Manager/" and decoder.ami_version is None
    other = AMIDecoder()
    other.feed(b"SSH-2.0-OpenSSH_9.6 \xff\r\n")
    assert other.banner == "SSH-2.0-OpenSSH_9.6 \ufffd" and other.ami_version is None


# -- blank lines and line ends between messages --------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        b"\n\r\nEvent: A\r\n\r\nEvent: B\r\n\r\n",
        b"Event: A\r\n\r\n\r\n\r\nEvent: B\r\n\r\n",
        b"\r\n\r\nEvent: A\r\n\r\n\r\n\r\n\r\nEvent: B\r\n\r\n",
    ],
)
def test_stray_crlf_blank_lines_make_no_messages(data: bytes) -> None:
    decoder = AMIDecoder(expect_banner=False)
    assert [(m.name, m["Event"]) for m in decoder.feed(data)] == [("A", "A"), ("B", "B")]
    assert decoder.buffered == 0


@pytest.mark.parametrize("odd", [b" ", b"\t", b"X", b"XX"])
def test_an_odd_line_between_blank_lines_reads_alike_in_both_framers(odd: bytes) -> None:
    data = b"Event: A\r\n\r\n\r\n\r\n" + odd + b"\r\n\r\nEvent: B\r\n\r\n"
    fast = AMIDecoder(expect_banner=False).feed(data)
    careful = AMIDecoder(expect_banner=False).feed(data + b"Event: C\n\n")  # a bare-LF end
    expected = [(b"Event: A", "A"), (odd, ""), (b"Event: B", "B")]
    assert [(m.raw, m.name) for m in fast] == expected
    assert [(m.raw, m.name) for m in careful] == [*expected, (b"Event: C", "C")]
    assert fast[1].headers == careful[1].headers == [("", odd.decode())]


def test_a_stray_line_feed_after_the_last_message_is_dropped() -> None:
    decoder = AMIDecoder(expect_banner=False)
    assert [m.name for m in decoder.feed(b"Event: A\n\n\n")] == ["A"]
    assert decoder.buffered == 0
    assert [m.name for m in decoder.feed(b"Event: B\n\n\n\n\n")] == ["B"]
    assert decoder.buffered == 0


def test_one_stray_line_feed_between_messages_keeps_the_next_intact() -> None:
    msgs = AMIDecoder(expect_banner=False).feed(b"Event: A\n\n\nEvent: B\nX: 1\n\n")
    assert [(m.name, dict(m)) for m in msgs] == [
        ("A", {"Event": "A"}),
        ("B", {"Event": "B", "X": "1"}),
    ]


def test_a_crlf_after_the_last_message_is_dropped() -> None:
    decoder = AMIDecoder(expect_banner=False)
    assert [m.name for m in decoder.feed(b"Event: A\n\n\r\n")] == ["A"]
    assert decoder.buffered == 0


def test_a_cr_at_the_end_of_a_read_waits_for_its_line_feed() -> None:
    decoder = AMIDecoder(expect_banner=False)
    assert [m.name for m in decoder.feed(b"Event: A\n\n\r")] == ["A"]
    assert decoder.buffered == 1
    assert [m.name for m in decoder.feed(b"\nEvent: B\n\n")] == ["B"]
    assert decoder.buffered == 0


def test_a_lone_cr_before_a_message_stays_in_its_bytes() -> None:
    msgs = AMIDecoder(expect_banner=False).feed(b"Event: A\n\n\rEvent: B\nX: 1\n\n")
    assert [m.raw for m in msgs] == [b"Event: A", b"\rEvent: B\nX: 1"]


@pytest.mark.parametrize(
    "chunks",
    [
        [b"Event: A\r\n\r", b"\n"],
        [b"Event: A\r\n", b"\r\n"],
        [b"Event: A\n\r", b"\n"],
        [b"Event: A\n", b"\n"],
        [b"Event: A\r\nX: 1\r\n\r", b"\nEvent: B\r\n\r\n"],
    ],
)
def test_a_blank_line_split_across_reads_ends_the_message(chunks: list[bytes]) -> None:
    decoder = AMIDecoder(expect_banner=False)
    first = decoder.feed(chunks[0])
    assert first == [] and decoder.buffered == len(chunks[0])
    assert [m.name for m in decoder.feed(chunks[1])][:1] == ["A"]
    assert decoder.buffered == 0


def test_blank_lines_alone_in_their_reads_are_not_held() -> None:
    decoder = AMIDecoder(expect_banner=False)
    assert [m.name for m in decoder.feed(b"Event: A\r\n\r\n")] == ["A"]
    assert decoder.feed(b"\n") == []
    assert decoder.buffered == 1  # maybe the start of a message's line end
    assert decoder.feed(b"\n") == []
    assert decoder.buffered == 0
    assert [m.name for m in decoder.feed(b"Event: B\r\n\r\n")] == ["B"]


# -- which reads may hold responses (the client routes only those) -------------------------
def test_responses_seen_tells_an_events_only_read() -> None:
    decoder = AMIDecoder(expect_banner=False)
    assert decoder.responses_seen is True  # nothing known yet
    decoder.feed(b"Event: A\r\n\r\nEvent: B\r\n\r\n")
    assert decoder.responses_seen is False
    decoder.feed(b"Response: Success\r\nActionID: 1\r\n\r\n")
    assert decoder.responses_seen is True
    assert decoder.feed(b"") == []  # an empty read changes nothing
    assert decoder.responses_seen is True
    decoder.feed(b"Event: C\r\n\r\n")
    assert decoder.responses_seen is False
    decoder.feed(b"Event: D\r\n\r\nResponse: Error\r\nActionID: 2\r\n\r\n")
    assert decoder.responses_seen is True
    decoder.feed(b"Event: E\r\n\r\n")
    decoder.feed(b"Event: F\n\n")  # the careful framer does not look: it says maybe
    assert decoder.responses_seen is True
    decoder.feed(b"Event: G\r\nX: Response: no\r\n\r\n")
    assert decoder.responses_seen is False


# -- Response: Follows bodies --------------------------------------------------------------
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_a_follows_body_reads_the_same_with_crlf_or_lf_lines(eol: bytes) -> None:
    data = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\n"
        + b"Channel              Location" + eol
        + b"\xd0\x9e\xd0\xbb\xd1\x8f  101@from-internal" + eol
        + eol
        + b"2 active channels" + eol
        + b"--END COMMAND--\r\n\r\n"
    )  # fmt: skip
    for chunks in ([data], [data[:90], data[90:]], [data[i : i + 1] for i in range(len(data))]):
        msgs = _feed_all(AMIDecoder(expect_banner=False), chunks)
        assert len(msgs) == 1
        assert msgs[0].output == [
            "Channel              Location",
            "Оля  101@from-internal",
            "",
            "2 active channels",
        ]
        assert msgs[0].headers == [
            ("Response", "Follows"),
            ("Privilege", "Command"),
            ("ActionID", "7"),
        ]


def test_a_follows_body_with_invalid_utf8_is_replaced_not_raised() -> None:
    data = b"Response: Follows\r\nActionID: 1\r\nbad \xff\xd0 byte\n--END COMMAND--\r\n\r\n"
    assert AMIDecoder(expect_banner=False).feed(data)[0].output == ["bad \ufffd\ufffd byte"]


def test_a_follows_reply_keeps_its_last_header_value_exactly() -> None:
    data = b"Response: Follows\r\nActionID: BOX \r\nout\n--END COMMAND--\r\n\r\n"
    reply = AMIDecoder(expect_banner=False).feed(data)[0]
    assert reply["ActionID"] == "BOX "
    assert reply.headers == [("Response", "Follows"), ("ActionID", "BOX ")]
    assert reply.raw == b"Response: Follows\r\nActionID: BOX "
    assert reply.output == ["out"]
    data = b"Response: Follows\r\nActionID: BOX\r\nout\n--END COMMAND--\r\n\r\n"
    assert AMIDecoder(expect_banner=False).feed(data)[0]["ActionID"] == "BOX"


def test_two_follows_replies_in_one_read() -> None:
    one = b"Response: Follows\r\nActionID: %d\r\nline %d\n--END COMMAND--\r\n\r\n"
    data = b"Event: A\n\n" + one % (1, 1) + one % (2, 2) + b"Event: B\n\n"
    msgs = AMIDecoder(expect_banner=False).feed(data)
    assert [(m.name, m.get("ActionID"), m.output) for m in msgs] == [
        ("A", None, []),
        ("Follows", "1", ["line 1"]),
        ("Follows", "2", ["line 2"]),
        ("B", None, []),
    ]


@pytest.mark.parametrize("cut", [30, 45, 52, 60, 61])
def test_a_follows_reply_split_across_reads_after_a_neighbour(cut: int) -> None:
    data = b"Event: A\n\nResponse: Follows\r\nActionID: 3\r\nout\n--END COMMAND--\r\n\r\n"
    decoder = AMIDecoder(expect_banner=False)
    first = decoder.feed(data[:cut])
    assert [m.name for m in first] == ["A"]
    assert decoder.buffered == cut - len(b"Event: A\n\n")
    second = decoder.feed(data[cut:])
    assert [(m.name, m.output) for m in second] == [("Follows", ["out"])]
    assert decoder.buffered == 0


def test_a_follows_end_marker_split_across_reads() -> None:
    head = b"Response: Follows\r\nActionID: 3\r\n" + b"line\n" * 10
    end = b"--END COMMAND--\r\n\r\n"
    for cut in range(len(end)):
        decoder = AMIDecoder(expect_banner=False)
        assert decoder.feed(head + end[:cut]) == []
        msgs = decoder.feed(end[cut:])
        assert [(m.name, len(m.output)) for m in msgs] == [("Follows", 10)]


# -- action encoding -----------------------------------------------------------------------
def _refusal(name: str, what: str) -> str:
    return (
        f"AMI header {name!r}: {what} contains a line break (CR/LF), "
        "which would inject extra AMI headers; remove it"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Ping\r\nAction: Command",), _refusal("Action", "the action name")),
        (("Ping", None, "1\n"), _refusal("ActionID", "the value")),
        (("Ping", {"Bad\rName": "x"}), _refusal("Bad\rName", "the name")),
        (("Ping", {"Channel": "PJSIP/1\r\n"}), _refusal("Channel", "the value")),
        (("Ping", [("", "x")]), "AMI header name '' is empty or contains ':'; use a plain name"),
        (
            ("Ping", {"A:B": "x"}),
            "AMI header name 'A:B' is empty or contains ':'; use a plain name",
        ),
    ],
)
def test_an_action_that_cannot_be_encoded_says_why(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ActionError) as err:
        encode_action(*args)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_merge_headers_flattens_both_groups_in_order() -> None:
    assert merge_headers(None, {"A": "1", "V": ["x", 2]}) == [("A", "1"), ("V", "x"), ("V", 2)]
    assert merge_headers([("B", 3)], None) == [("B", 3)]
    assert merge_headers({"C": 4}, {"D": "5"}) == [("C", 4), ("D", "5")]
    assert merge_headers(None) == []
