"""AMI codec units: framing, decoding, action encoding. Pure, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti_cli.ami.codec import AMIDecoder, encode_action
from cti_cli.ami.errors import ActionError, ProtocolError
from cti_cli.ami.message import Message
from cti_cli.ami.versions import asterisk_from_ami

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
NEWCHANNEL = (
    "Event: Newchannel\r\n"
    "Privilege: call,all\r\n"
    "Channel: PJSIP/trunk-00000001\r\n"
    "CallerIDNum: +74951234567\r\n"
    "CallerIDName: Иван Петров\r\n"
    "Uniqueid: 1764100000.1\r\n"
    "Linkedid: 1764100000.1\r\n"
    "\r\n"
).encode()


def feed_all(decoder: AMIDecoder, chunks: list[bytes]) -> list[Message]:
    out: list[Message] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


# -- framing & UTF-8 ------------------------------------------------------------------
@pytest.mark.parametrize("offset", range(1, len(BANNER + NEWCHANNEL)))
def test_cyrillic_survives_split_at_every_byte(offset: int) -> None:
    data = BANNER + NEWCHANNEL
    msgs = feed_all(AMIDecoder(), [data[:offset], data[offset:]])
    assert len(msgs) == 1
    assert msgs[0]["CallerIDName"] == "Иван Петров"
    assert msgs[0].raw.decode() + "\r\n\r\n" == NEWCHANNEL.decode()


def test_one_byte_feeds() -> None:
    data = BANNER + NEWCHANNEL * 3
    decoder = AMIDecoder()
    msgs = feed_all(decoder, [data[i : i + 1] for i in range(len(data))])
    assert [m["CallerIDName"] for m in msgs] == ["Иван Петров"] * 3
    assert decoder.buffered == 0


def test_banner_and_version() -> None:
    decoder = AMIDecoder()
    assert decoder.feed(b"Asterisk Call Man") == []
    assert decoder.banner is None
    msgs = decoder.feed(b"ager/11.0.0\r\nResponse: Success\r\nMessage: ok\r\n\r\n")
    assert decoder.banner == "Asterisk Call Manager/11.0.0"
    assert decoder.ami_version == "11.0.0"
    assert [m.name for m in msgs] == ["Success"]


def test_first_line_with_colon_is_not_a_banner() -> None:
    decoder = AMIDecoder()
    msgs = decoder.feed(b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n")
    assert decoder.banner is None and decoder.ami_version is None
    assert msgs[0]["Status"] == "Fully Booted"


def test_decoder_without_banner_expectation() -> None:
    msgs = AMIDecoder(expect_banner=False).feed(NEWCHANNEL)
    assert msgs[0].name == "Newchannel"


def test_bare_lf_and_mixed_line_ends() -> None:
    data = (
        b"Event: A\nX: 1\n\n"  # all LF
        b"Event: B\r\nX: 2\n\r\n"  # mixed lines, CRLF blank line
        b"Event: C\nX: 3\r\n\n"  # mixed, LF blank line
        b"Event: D\r\nX: 4\r\n\r\n"
    )
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        msgs = feed_all(AMIDecoder(expect_banner=False), chunks)
        assert [(m.name, m["X"]) for m in msgs] == [("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")]
        assert all(m.headers == [("Event", m.name), ("X", m["X"])] for m in msgs)


def test_stray_blank_lines_between_messages_are_skipped() -> None:
    data = b"\r\nEvent: A\r\n\r\n\r\n\r\nEvent: B\r\n\r\n\n\nEvent: C\n\n"
    msgs = AMIDecoder(expect_banner=False).feed(data)
    assert [m.name for m in msgs] == ["A", "B", "C"]


def test_multiple_messages_per_feed_and_remainder() -> None:
    decoder = AMIDecoder()
    msgs = decoder.feed(BANNER + NEWCHANNEL * 2 + NEWCHANNEL[:20])
    assert len(msgs) == 2
    assert decoder.buffered == 20
    assert [m.name for m in decoder.feed(NEWCHANNEL[20:])] == ["Newchannel"]


def test_repeated_headers_are_kept() -> None:
    msg = AMIDecoder(expect_banner=False).feed(
        b"Event: Newchannel\r\nChanVariable: a=1\r\nChanVariable: b=2\r\n"
        b"Output: one\r\nOutput: two\r\n\r\n"
    )[0]
    assert msg["ChanVariable"] == "a=1"
    assert msg.get_all("ChanVariable") == ["a=1", "b=2"]
    assert msg.output == ["one", "two"]
    assert msg.get_all("Missing") == []


def test_lines_without_colon_are_kept_under_empty_name() -> None:
    msg = AMIDecoder(expect_banner=False).feed(
        b"Event: Odd\r\njust text\r\nName:value\r\nEmpty:\r\n\r\n"
    )[0]
    assert msg.get_all("") == ["just text"]
    assert msg[""] == "just text"
    assert msg["Name"] == "value"
    assert msg["Empty"] == ""
    assert list(msg) == ["Event", "", "Name", "Empty"]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    msg = AMIDecoder(expect_banner=False).feed(b"Event: X\r\nCallerIDName: \xff\xd0 ok\r\n\r\n")[0]
    assert msg["CallerIDName"] == "\ufffd\ufffd ok"
    assert msg.raw == b"Event: X\r\nCallerIDName: \xff\xd0 ok"


def test_command_reply_old_follows_format() -> None:
    data = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\n"
        b"Asterisk 13.38.3 built by root\n"
        b"\n"  # a blank line inside the output must not end the message
        b"Name: not a header\n"
        b"--END COMMAND--\r\n\r\n"
        b"Event: After\r\n\r\n"
    )
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        msgs = feed_all(AMIDecoder(expect_banner=False), chunks)
        assert [m.name for m in msgs] == ["Follows", "After"]
        reply = msgs[0]
        assert reply["ActionID"] == "7"
        assert reply.output == ["Asterisk 13.38.3 built by root", "", "Name: not a header"]
        assert "Name" not in reply


def test_command_reply_output_glued_to_end_marker() -> None:
    data = b"Response: Follows\r\nActionID: 8\r\nNo such command--END COMMAND--\r\n\r\n"
    reply = AMIDecoder(expect_banner=False).feed(data)[0]
    assert reply.output == ["No such command"]


def test_command_reply_new_output_format() -> None:
    data = (
        b"Response: Success\r\nActionID: 9\r\nMessage: Command output follows\r\n"
        b"Output: Asterisk 22.10.1 built by debian\r\nOutput: \r\n\r\n"
    )
    reply = AMIDecoder(expect_banner=False).feed(data)[0]
    assert reply.output == ["Asterisk 22.10.1 built by debian", ""]


def test_oversize_message_is_protocol_error() -> None:
    decoder = AMIDecoder(max_message=1000, expect_banner=False)
    decoder.feed(b"Event: Big\r\nData: ")
    with pytest.raises(ProtocolError):
        for _ in range(100):
            decoder.feed(b"x" * 100)


def test_oversize_complete_message_in_one_chunk_is_protocol_error() -> None:
    decoder = AMIDecoder(max_message=100, expect_banner=False)
    with pytest.raises(ProtocolError):
        decoder.feed(b"Event: X\r\nData: " + b"y" * 500 + b"\r\n\r\n")


def test_oversize_banner_is_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        AMIDecoder(max_message=50).feed(b"A" * 100)


@pytest.mark.parametrize(
    "sep",
    [b"\r\n", b"\n"],  # the fast path (CRLF blank lines) and the careful one (bare LF)
)
def test_oversize_message_delivers_its_neighbours_then_the_error(sep: bytes) -> None:
    def msg(name: bytes, pad: int = 0) -> bytes:
        return b"Event: " + name + sep + b"Data: " + b"y" * pad + sep + sep

    decoder = AMIDecoder(max_message=100, expect_banner=False)
    first = decoder.feed(msg(b"A") + msg(b"B") + msg(b"Big", 500) + msg(b"C"))
    assert [m.name for m in first] == ["A", "B"]
    assert decoder.error is not None
    with pytest.raises(ProtocolError, match=r"of 5\d\d bytes \(ended\), larger than 100") as err:
        decoder.feed(b"")
    assert "without" not in str(err.value)


def test_oversize_follows_reply_delivers_its_neighbours() -> None:
    decoder = AMIDecoder(max_message=100, expect_banner=False)
    data = (b"Event: A\r\n\r\nResponse: Follows\r\n" + b"line\n" * 40
            + b"--END COMMAND--\r\n\r\nEvent: C\r\n\r\n")  # fmt: skip
    assert [m.name for m in decoder.feed(data)] == ["A"]
    with pytest.raises(ProtocolError, match=r"\(ended\), larger than 100"):
        decoder.feed(b"Event: D\r\n\r\n")


def test_message_without_end_past_the_limit_says_so() -> None:
    decoder = AMIDecoder(max_message=100, expect_banner=False)
    assert [m.name for m in decoder.feed(b"Event: A\r\n\r\nEvent: B\r\nData: ")] == ["A"]
    with pytest.raises(ProtocolError, match="larger than 100 bytes without its end"):
        decoder.feed(b"y" * 200)


# -- Message --------------------------------------------------------------------------
def test_message_mapping_semantics() -> None:
    msg = Message.from_headers([("Event", "Hangup"), ("Uniqueid", "1.2"), ("Linkedid", "1.1")])
    assert msg["Event"] == "Hangup" and msg.get("Uniqueid") == "1.2"
    assert "Linkedid" in msg and "linkedid" in msg and "Linked" not in msg
    assert msg.get("Cause", "16") == "16"
    assert dict(msg) == {"Event": "Hangup", "Uniqueid": "1.2", "Linkedid": "1.1"}
    assert len(msg) == 3
    assert msg.is_event and not msg.is_response
    with pytest.raises(KeyError):
        msg["Nope"]
    assert msg == Message.from_headers({"Event": "Hangup", "Uniqueid": "1.2", "Linkedid": "1.1"})


def test_header_name_is_matched_exactly_not_as_prefix() -> None:
    msg = Message(b"Event: X\r\nCallerIDNameX: wrong\r\nCallerIDName: right\r\n")
    assert msg["CallerIDName"] == "right"
    assert msg.get("Caller") is None
    assert msg.get("Event: X") is None


# -- actions --------------------------------------------------------------------------
def test_encode_action_with_repeated_headers() -> None:
    data = encode_action("Originate", {"Channel": "PJSIP/101", "Variable": ["A=1", "B=Пётр"]}, "42")
    assert (
        data
        == (
            "Action: Originate\r\nActionID: 42\r\nChannel: PJSIP/101\r\n"
            "Variable: A=1\r\nVariable: B=Пётр\r\n\r\n"
        ).encode()
    )
    pairs = encode_action("Setvar", [("Variable", "X"), ("Value", 5)])
    assert pairs == b"Action: Setvar\r\nVariable: X\r\nValue: 5\r\n\r\n"


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"Channel": "PJSIP/101\r\nAction: Hangup"}, "Channel"),
        ({"Variable": ["ok", "bad\nAction: Command"]}, "Variable"),
        ({"Bad\rName": "x"}, "Bad\\rName"),
        ({"Secret": "s3cr3t\n"}, "Secret"),
    ],
)
def test_header_injection_is_refused(headers: dict[str, object], named: str) -> None:
    with pytest.raises(ActionError) as err:
        encode_action("Originate", headers, "1")  # type: ignore[arg-type]
    assert isinstance(err.value, ValueError)
    assert named in str(err.value)
    assert "s3cr3t" not in str(err.value)


def test_injection_in_action_name_and_id_is_refused() -> None:
    with pytest.raises(ActionError, match="Action"):
        encode_action("Ping\r\nAction: Command")
    with pytest.raises(ActionError, match="ActionID"):
        encode_action("Ping", None, "1\r\n")
    with pytest.raises(ActionError, match="':'"):
        encode_action("Ping", {"A:B": "x"})


# -- versions -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ami", "asterisk"),
    [
        ("1.0", "1.0-1.4"),
        ("1.1", "1.6 or 1.8"),
        ("1.2", "10"),
        ("1.3", "11"),
        ("2.0.0", "12"),
        ("2.4.0", "12"),
        ("2.5.0", "12 or 13"),
        ("2.6.0", "13"),
        ("2.8.0", "13 or 14"),
        ("2.10.6", "13"),
        ("3.2.0", "14"),
        ("4.0.0", "15"),
        ("5.0.1", "16"),
        ("6.0.0", "17"),
        ("7.0.3", "18"),
        ("8.0.0", "19"),
        ("9.0.0", "20"),
        ("10.0.0", "21"),
        ("11.0.0", "22"),
        ("12.0.0", "23"),
        ("99.0.0", "unknown"),
        ("banana", "unknown"),
        ("", "unknown"),
        ("2.11.0", "unknown"),
    ],
)
def test_asterisk_from_ami(ami: str, asterisk: str) -> None:
    assert asterisk_from_ami(ami) == asterisk


# -- property tests ---------------------------------------------------------------------
header_names = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=0x7F)
    | st.sampled_from("-_"),
    min_size=1,
    max_size=12,
)
header_values = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
    max_size=30,
).map(str.strip)
messages = st.tuples(
    st.sampled_from(["Event", "Response"]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij", min_size=1, max_size=10),
    # other headers are not named like the kind in any case (names match ignoring case)
    st.lists(
        st.tuples(
            header_names.filter(lambda n: n.lower() not in ("event", "response")), header_values
        ),
        max_size=8,
    ),
).filter(lambda m: m[1] != "Follows")


def _serialize(msgs: list[tuple[str, str, list[tuple[str, str]]]], eols: list[bool]) -> bytes:
    out = [BANNER]
    i = 0
    for kind, name, headers in msgs:
        for key, value in [(kind, name), *headers]:
            out.append(f"{key}: {value}".encode() + (b"\r\n" if eols[i % len(eols)] else b"\n"))
            i += 1
        out.append(b"\r\n" if eols[i % len(eols)] else b"\n")
        i += 1
    return b"".join(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msgs=st.lists(messages, min_size=1, max_size=6),
    eols=st.lists(st.booleans(), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_any_chunking_gives_the_same_messages(
    msgs: list[tuple[str, str, list[tuple[str, str]]]], eols: list[bool], cuts: list[int]
) -> None:
    data = _serialize(msgs, eols)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    decoded = feed_all(AMIDecoder(), chunks)
    expected = [[(kind, name), *headers] for kind, name, headers in msgs]
    assert [m.headers for m in decoded] == expected
    for m, (kind, name, headers) in zip(decoded, msgs, strict=True):
        assert m.name == name
        for key, value in headers:
            assert m[key] == dict(reversed([(kind, name), *headers]))[key]
            del value


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=600),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=8),
    banner=st.booleans(),
)
def test_arbitrary_bytes_raise_only_protocol_error(
    data: bytes, cuts: list[int], banner: bool
) -> None:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    decoder = AMIDecoder(max_message=200, expect_banner=banner)
    try:
        for m in feed_all(decoder, chunks):
            m.headers, m.name, m.output, m.is_event, m.raw  # noqa: B018
            for key in ("Event", "Response", "", "A", "\r"):
                m.get(key)
    except ProtocolError:
        pass
