"""The sans-I/O AMI protocol object: bytes and link events in, outcomes out. No sockets."""

from __future__ import annotations

import pytest

from cti_cli.ami.errors import ActionError, ConnectionLost, NotAMIServer, ProtocolError
from cti_cli.ami.message import Message
from cti_cli.ami.protocol import (
    Abandoned,
    ActionListResult,
    AMIProtocol,
    Broken,
    Completed,
    Events,
    Greeted,
    Outcome,
)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def wire(**headers: str) -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()


def opened() -> AMIProtocol:
    protocol = AMIProtocol(peer="pbx:5038", id_prefix="t-")
    assert protocol.receive_data(BANNER) == [Greeted("Asterisk Call Manager/11.0.0", "11.0.0")]
    return protocol


def events_of(outcomes: list[Outcome]) -> list[str]:
    batches = [o.messages for o in outcomes if isinstance(o, Events)]
    return [m.get("Uniqueid", m.name) for batch in batches for m in batch]


def replies(outcomes: list[Outcome]) -> dict[str, Message | ActionListResult]:
    return {o.action_id: o.reply for o in outcomes if isinstance(o, Completed)}


def test_action_bytes_carry_a_fresh_action_id() -> None:
    protocol = opened()
    first, data = protocol.send_action("Ping")
    second, _ = protocol.send_action("Ping")
    assert data == f"Action: Ping\r\nActionID: {first}\r\n\r\n".encode()
    assert first != second and protocol.pending == [first, second]


def test_an_action_that_cannot_be_encoded_waits_for_nothing() -> None:
    protocol = opened()
    with pytest.raises(ActionError):
        protocol.send_action("Originate", {"Channel": "PJSIP/101\r\nAction: Hangup"})
    assert protocol.pending == []


def test_interleaved_events_and_out_of_order_responses() -> None:
    protocol = opened()
    a, _ = protocol.send_action("Ping")
    b, _ = protocol.send_action("CoreSettings")
    out = protocol.receive_data(
        wire(Event="Newchannel", Uniqueid="1.1")
        + wire(Response="Success", ActionID=b, AsteriskVersion="22.1.0")
        + wire(Event="Hangup", Uniqueid="1.1", ActionID="someone-else")
        + wire(Response="Success", ActionID=a, Ping="Pong")
    )
    got = replies(out)
    assert isinstance(got[a], Message) and got[a]["Ping"] == "Pong"
    assert isinstance(got[b], Message) and got[b]["AsteriskVersion"] == "22.1.0"
    assert events_of(out) == ["1.1", "1.1"]
    assert protocol.pending == []


def test_an_event_carrying_a_plain_actions_id_does_not_answer_it() -> None:
    protocol = opened()
    a, _ = protocol.send_action("Status")
    assert replies(protocol.receive_data(wire(Event="Status", ActionID=a))) == {}
    got = replies(protocol.receive_data(wire(Response="Success", ActionID=a, Message="ok")))
    assert isinstance(got[a], Message) and got[a]["Message"] == "ok"


def test_a_response_split_across_reads_completes_on_the_last_byte() -> None:
    protocol = opened()
    a, _ = protocol.send_action("Ping")
    data = wire(Response="Success", ActionID=a, Ping="Pong")
    assert protocol.receive_data(data[:-1]) == []
    assert list(replies(protocol.receive_data(data[-1:]))) == [a]


def test_responses_for_unknown_action_ids_are_dropped_not_taken_for_events() -> None:
    protocol = opened()
    a, _ = protocol.send_action("Ping")
    out = protocol.receive_data(
        wire(Response="Success", ActionID="other-client-7", Message="not ours")
        + wire(Response="Success", Message="no ActionID at all")
        + wire(Event="Newchannel", Uniqueid="2.1")
    )
    assert replies(out) == {} and events_of(out) == ["2.1"]
    assert protocol.pending == [a]


def test_event_list_is_collected_between_other_events_and_reads() -> None:
    protocol = opened()
    a, _ = protocol.send_action("CoreShowChannels", collect=True)
    first = protocol.receive_data(
        wire(Response="Success", ActionID=a, EventList="start")
        + wire(Event="CoreShowChannel", ActionID=a, Uniqueid="3.1")
        + wire(Event="Newchannel", Uniqueid="4.1")
    )
    assert replies(first) == {} and events_of(first) == ["4.1"]
    last = protocol.receive_data(
        wire(Event="CoreShowChannel", ActionID=a, Uniqueid="3.2")
        + wire(Event="Hangup", Uniqueid="4.1")
        + wire(Event="CoreShowChannelsComplete", ActionID=a, EventList="Complete", ListItems="2")
    )
    result = replies(last)[a]
    assert isinstance(result, ActionListResult)
    assert [m["Uniqueid"] for m in result] == ["3.1", "3.2"]
    assert result.complete is not None and result.complete["ListItems"] == "2"
    assert events_of(last) == ["4.1"]


@pytest.mark.parametrize(
    "answer",
    [
        {"Response": "Error", "Message": "Permission denied"},
        {"Response": "Success", "Message": "No channels"},  # no EventList: nothing follows
    ],
)
def test_list_action_answered_without_a_list_completes_at_once(answer: dict[str, str]) -> None:
    protocol = opened()
    a, _ = protocol.send_action("CoreShowChannels", collect=True)
    out = protocol.receive_data(
        wire(**answer, ActionID=a) + wire(Event="CoreShowChannel", ActionID=a, Uniqueid="5.1")
    )
    result = replies(out)[a]
    assert isinstance(result, ActionListResult) and result.events == []
    assert result.response["Message"] == answer["Message"]
    assert events_of(out) == ["5.1"]  # a stray item after the answer is just an event


def test_error_inside_a_list_is_kept_with_the_list() -> None:
    protocol = opened()
    a, _ = protocol.send_action("QueueStatus", collect=True)
    out = protocol.receive_data(
        wire(Response="Success", ActionID=a, EventList="start")
        + wire(Response="Error", ActionID=a, Message="Queue gone")
        + wire(Event="QueueStatusComplete", ActionID=a, EventList="Complete")
    )
    result = replies(out)[a]
    assert isinstance(result, ActionListResult)
    assert [m["Message"] for m in result] == ["Queue gone"] and events_of(out) == []


def test_forgotten_action_late_reply_dropped_late_list_items_become_events() -> None:
    protocol = opened()
    a, _ = protocol.send_action("Ping")
    b, _ = protocol.send_action("CoreShowChannels", collect=True)
    protocol.forget(a)
    protocol.forget(b)
    out = protocol.receive_data(
        wire(Response="Success", ActionID=a, Ping="Pong")
        + wire(Event="CoreShowChannel", ActionID=b, Uniqueid="6.1")
    )
    assert replies(out) == {} and events_of(out) == ["6.1"]


def test_connection_loss_fails_every_pending_action_and_later_sends() -> None:
    protocol = opened()
    a, _ = protocol.send_action("Ping")
    b, _ = protocol.send_action("CoreShowChannels", collect=True)
    out = protocol.connection_lost(OSError("reset by peer"))
    broken = out[0]
    assert isinstance(broken, Broken) and isinstance(broken.error, ConnectionLost)
    assert "pbx:5038 dropped the AMI connection: reset by peer" in str(broken.error)
    assert out[1:] == [Abandoned(a, broken.error), Abandoned(b, broken.error)]
    assert protocol.connection_lost(None) == []  # the first failure is the one reported
    assert protocol.fail(ConnectionLost("no Pong")) == [] and protocol.failure is broken.error
    with pytest.raises(ConnectionLost):
        protocol.send_action("Ping")


def test_goodbye_after_logoff_is_no_failure() -> None:
    protocol = opened()
    a, _ = protocol.send_action("Logoff")
    out = protocol.connection_lost(None)
    assert len(out) == 1 and isinstance(out[0], Abandoned) and out[0].action_id == a
    assert "said goodbye" in str(out[0].error) and protocol.failure is None


def test_closing_fails_pending_actions_and_refuses_new_ones() -> None:
    protocol = opened()
    a, _ = protocol.send_action("Ping")
    (gone,) = protocol.close()
    assert isinstance(gone, Abandoned) and gone.action_id == a
    assert protocol.connection_lost(None) == []
    assert protocol.receive_data(wire(Event="Newchannel", Uniqueid="8.1")) == []
    with pytest.raises(ConnectionLost, match="closed"):
        protocol.send_action("Ping")


@pytest.mark.parametrize("before", [[], ["7.1"]])
def test_garbage_breaks_the_connection_after_the_events_before_it(before: list[str]) -> None:
    protocol = AMIProtocol(max_message=200, peer="pbx:5038")
    protocol.receive_data(BANNER)
    a, _ = protocol.send_action("Ping")
    data = b"".join(wire(Event="Newchannel", Uniqueid=uid) for uid in before) + b"x" * 500
    out = protocol.receive_data(data)
    assert events_of(out) == before
    broken = out[len(out) - 2]
    assert isinstance(broken, Broken) and isinstance(broken.error, ProtocolError)
    assert str(broken.error).startswith("pbx:5038: ")
    assert out[-1] == Abandoned(a, broken.error)
    assert protocol.receive_data(wire(Event="Newchannel")) == []


@pytest.mark.parametrize("greeting", [b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 400 Bad"])
def test_a_foreign_server_is_rejected_at_its_first_bytes(greeting: bytes) -> None:
    protocol = AMIProtocol(peer="pbx:5038")
    (broken,) = protocol.receive_data(greeting[:4])
    assert isinstance(broken, Broken) and isinstance(broken.error, NotAMIServer)
    assert repr(greeting[:4].decode()) in str(broken.error)


def test_closing_before_the_banner_names_the_likely_cause() -> None:
    protocol = AMIProtocol(peer="pbx:5038")
    (broken,) = protocol.connection_lost(None)
    assert isinstance(broken, Broken) and "before its AMI banner" in str(broken.error)
