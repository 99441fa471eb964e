"""`CallTracker.reconcile`: catching up with `CoreShowChannels` after a (re)connect. Pure, fast.

Entries have the exact shape Asterisk 22 sends (main/manager.c `action_coreshowchannels`: the
channel snapshot of `ast_manager_build_channel_state_string`, then Application,
ApplicationData, Duration, BridgeId), in wire order.
"""

from __future__ import annotations

from rich.console import Console

from cti_cli.ami.codec import AMIDecoder
from cti_cli.calls import Answered, CallEvent, CallTracker, Ended, Ringing
from cti_cli.calls.events import REASONS
from cti_cli.cli.live_calls import FADE_SECONDS, CallBoard

LINKEDID = "1795644810.0"
CALLER = "PJSIP/trunk-00000000"
NUMBER = "+79161234567"
NAME = "Иван Петров"
NOW = "1795644900.500000"
_DESC = {"0": "Down", "4": "Ring", "5": "Ringing", "6": "Up"}


def entry(
    channel: str,
    uid: str,
    state: str,
    *,
    linkedid: str = LINKEDID,
    cid: tuple[str, str] = ("<unknown>", "<unknown>"),
    connected: tuple[str, str] = (NUMBER, NAME),
    context: str = "from-internal",
    exten: str = "s",
    app: str = "AppQueue",
    data: str = "(Outgoing Line)",
    duration: str = "00:00:04",
    bridge: str = "",
) -> dict[str, str]:
    """One `CoreShowChannel` list entry, header for header as Asterisk 22 writes it."""
    return {
        "Event": "CoreShowChannel",
        "ActionID": "cti-1-1",
        "Channel": channel,
        "ChannelState": state,
        "ChannelStateDesc": _DESC[state],
        "CallerIDNum": cid[0],
        "CallerIDName": cid[1],
        "ConnectedLineNum": connected[0],
        "ConnectedLineName": connected[1],
        "Language": "en",
        "AccountCode": "",
        "Context": context,
        "Exten": exten,
        "Priority": "1",
        "Uniqueid": uid,
        "Linkedid": linkedid,
        "Application": app,
        "ApplicationData": data,
        "Duration": duration,
        "BridgeId": bridge,
    }


def caller_entry(
    state: str = "6",
    *,
    cid: tuple[str, str] = (NUMBER, NAME),
    exten: str = "200",
    data: str = "support,t,,,300",
    bridge: str = "",
) -> dict[str, str]:
    """The trunk caller waiting in a queue (`support`, dialled 200) for 12 s."""
    return entry(
        CALLER, LINKEDID, state, cid=cid, connected=("<unknown>", "<unknown>"),
        context="from-trunk", exten=exten, app="Queue", data=data, duration="00:00:12",
        bridge=bridge,
    )  # fmt: skip


def op(
    ext: str, n: int, state: str, *, connected: tuple[str, str] = (NUMBER, NAME), bridge: str = ""
) -> dict[str, str]:
    """Operator `ext`'s phone channel, dialled by the queue."""
    return entry(
        f"PJSIP/{ext}-0000000{n}", f"1795644810.{n}", state, cid=(ext, "<unknown>"),
        connected=connected, bridge=bridge,
    )  # fmt: skip


def live(event: str, channel: str, uid: str, state: str, ts: str, **kw: str) -> dict[str, str]:
    """A live AMI 2 channel event of the same call."""
    return {
        "Event": event,
        "Timestamp": ts,
        "Channel": channel,
        "ChannelState": state,
        "ChannelStateDesc": _DESC[state],
        "CallerIDNum": NUMBER if channel == CALLER else channel[6:9],
        "CallerIDName": NAME if channel == CALLER else "<unknown>",
        "ConnectedLineNum": "<unknown>" if channel == CALLER else NUMBER,
        "ConnectedLineName": "<unknown>" if channel == CALLER else NAME,
        "Exten": "200" if channel == CALLER else "s",
        "Uniqueid": uid,
        "Linkedid": LINKEDID,
        **kw,
    }


def kinds(events: list[CallEvent]) -> list[tuple[str, str | None]]:
    return [(e.kind, getattr(e, "extension", None)) for e in events]


def answered_call_seen_live(tracker: CallTracker) -> list[CallEvent]:
    """A queue call that 101 answered, followed live up to the talk."""
    out: list[CallEvent] = []
    for ev in (
        live("Newchannel", CALLER, LINKEDID, "0", "1795644810.100000"),
        live("QueueCallerJoin", CALLER, LINKEDID, "6", "1795644811.000000", Queue="support"),
        live("Newchannel", "PJSIP/101-00000001", "1795644810.1", "0", "1795644811.100000"),
        live("Newstate", "PJSIP/101-00000001", "1795644810.1", "5", "1795644811.200000"),
        live("Newstate", "PJSIP/101-00000001", "1795644810.1", "6", "1795644814.000000"),
    ):
        out += tracker.feed(ev)
    return out


# -- phantoms -----------------------------------------------------------------------------------
def test_call_that_vanished_during_the_outage_ends_lost_once() -> None:
    tracker = CallTracker()
    assert kinds(answered_call_seen_live(tracker)) == [("ringing", "101"), ("answered", "101")]
    out = tracker.reconcile([], time=NOW)
    assert len(out) == 1
    end = out[0]
    assert isinstance(end, Ended)
    assert end.reason == "lost" and "lost" in REASONS
    assert (end.answered, end.answered_by, end.rang) == (True, ("101",), ("101",))
    assert end.call_id == LINKEDID and end.uniqueid == LINKEDID
    assert (end.caller, end.caller_name, end.queue) == (NUMBER, NAME, "support")
    assert end.time == NOW and end.duration == 90  # from the call's first Timestamp to `time`
    assert tracker.active_calls() == []
    assert tracker.reconcile([], time=NOW) == []
    # late events of the lost call start no ghost
    hangup = live("Hangup", "PJSIP/101-00000001", "1795644810.1", "6", NOW, Cause="16")
    assert tracker.feed(hangup) == []
    assert tracker.reconcile([caller_entry()], time=NOW) == []
    assert tracker.active_calls() == []


def test_lost_call_without_time_has_no_duration_and_keeps_unanswered_facts() -> None:
    tracker = CallTracker()
    tracker.feed(live("Newchannel", CALLER, LINKEDID, "0", "1795644810.100000"))
    tracker.feed(live("Newstate", "PJSIP/102-00000002", "1795644810.2", "5", "1795644811.0"))
    (end,) = tracker.reconcile([])
    assert isinstance(end, Ended)
    assert (end.reason, end.answered, end.answered_by, end.rang) == ("lost", False, (), ("102",))
    assert end.time is None and end.duration is None


def test_only_the_vanished_channel_is_dropped_from_a_call_still_in_progress() -> None:
    tracker = CallTracker()
    tracker.reconcile([caller_entry(), op("101", 1, "5"), op("102", 2, "5")], time=NOW)
    assert tracker.reconcile([caller_entry(), op("102", 2, "5")], time=NOW) == []
    (view,) = tracker.active_calls()
    assert view.ringing == ("102",) and view.state == "ringing"


# -- attaching mid-call ------------------------------------------------------------------------
def test_queue_call_ringing_two_operators_gives_two_ringing() -> None:
    tracker = CallTracker()
    out = tracker.reconcile([op("101", 1, "5"), caller_entry(), op("102", 2, "5")], time=NOW)
    assert kinds(out) == [("ringing", "101"), ("ringing", "102")]
    for e in out:
        assert (e.call_id, e.uniqueid) == (LINKEDID, LINKEDID)
        assert (e.caller, e.caller_name) == (NUMBER, NAME)
        assert (e.dialed, e.queue, e.time) == ("200", "support", NOW)
    (view,) = tracker.active_calls()
    assert (view.state, view.ringing, view.talking) == ("ringing", ("101", "102"), ())
    # live events carry on from there: 102 answers, everybody hangs up
    out = tracker.feed(live("Newstate", "PJSIP/102-00000002", "1795644810.2", "6", "1795644901.0"))
    assert kinds(out) == [("answered", "102")]
    for channel, uid in (
        ("PJSIP/101-00000001", "1795644810.1"),
        ("PJSIP/102-00000002", "1795644810.2"),
        (CALLER, LINKEDID),
    ):
        out = tracker.feed(live("Hangup", channel, uid, "6", "1795644930.5", Cause="16"))
    (end,) = out
    assert isinstance(end, Ended)
    assert (end.reason, end.answered_by, end.rang) == ("completed", ("102",), ("101", "102"))
    assert end.duration == 42  # the caller's listed Duration (12 s) counts: 30 + 12


def test_answered_operator_gives_ringing_then_answered_once() -> None:
    tracker = CallTracker()
    snapshot = [caller_entry(bridge="b-1"), op("101", 1, "6", bridge="b-1")]
    out = tracker.reconcile(snapshot, time=NOW)
    assert kinds(out) == [("ringing", "101"), ("answered", "101")]
    assert isinstance(out[0], Ringing) and isinstance(out[1], Answered)
    assert tracker.reconcile(snapshot, time=NOW) == []
    (view,) = tracker.active_calls()
    assert (view.state, view.talking) == ("talking", ("101",))


def test_operator_whose_caller_is_not_listed_takes_the_caller_from_its_connected_line() -> None:
    tracker = CallTracker()
    out = tracker.reconcile([op("101", 1, "6")])
    assert kinds(out) == [("ringing", "101"), ("answered", "101")]
    assert {(e.caller, e.caller_name, e.time) for e in out} == {(NUMBER, NAME, None)}


def test_caller_alone_in_the_queue_is_shown_without_events() -> None:
    tracker = CallTracker()
    assert tracker.reconcile([caller_entry()], time=NOW) == []
    (view,) = tracker.active_calls()
    assert (view.caller, view.caller_name) == (NUMBER, NAME)
    assert (view.dialed, view.queue) == ("200", "support")
    assert view.started == "1795644888.500000"  # NOW minus its Duration of 12 s


# -- known channels --------------------------------------------------------------------------------
def test_states_already_reported_give_nothing() -> None:
    tracker = CallTracker()
    answered_call_seen_live(tracker)
    snapshot = [caller_entry(), op("101", 1, "6")]
    assert tracker.reconcile(snapshot, time=NOW) == []


def test_phone_answered_during_the_outage_gives_answered_without_a_second_ringing() -> None:
    tracker = CallTracker()
    ringing = [caller_entry(), op("101", 1, "5"), op("102", 2, "5")]
    assert kinds(tracker.reconcile(ringing, time=NOW)) == [("ringing", "101"), ("ringing", "102")]
    assert tracker.reconcile(ringing, time=NOW) == []
    out = tracker.reconcile([caller_entry(), op("102", 2, "6")], time=NOW)
    assert kinds(out) == [("answered", "102")]
    (view,) = tracker.active_calls()
    assert (view.state, view.talking, view.ringing) == ("talking", ("102",), ())


def test_extension_reported_before_is_not_reported_again_on_a_new_channel() -> None:
    tracker = CallTracker()
    answered_call_seen_live(tracker)  # 101 rang and answered on channel ...1
    out = tracker.reconcile([caller_entry(), op("101", 7, "6")], time=NOW)  # now on ...7
    assert out == []
    (view,) = tracker.active_calls()
    assert view.talking == ("101",)
    hangups = [
        live("Hangup", "PJSIP/101-00000007", "1795644810.7", "6", NOW, Cause="16"),
        live("Hangup", CALLER, LINKEDID, "6", NOW, Cause="16"),
    ]
    (end,) = tracker.feed(hangups[0]) + tracker.feed(hangups[1])
    assert isinstance(end, Ended) and end.answered_by == ("101",) and end.rang == ("101",)


def test_extension_that_stopped_before_the_outage_is_not_reported_again() -> None:
    for state, reported in (
        ("5", [("ringing", "101")]),
        ("6", [("ringing", "101"), ("answered", "101")]),
    ):
        tracker = CallTracker()
        out = tracker.feed(live("Newchannel", CALLER, LINKEDID, "6", "1795644810.1"))
        out += tracker.feed(
            live("Newstate", "PJSIP/101-00000001", "1795644810.1", state, "1795644811.0")
        )
        out += tracker.feed(
            live("Hangup", "PJSIP/101-00000001", "1795644810.1", state, "1795644812.0")
        )
        assert kinds(out) == reported  # 101 is no longer ringing / talking, the caller waits on
        assert tracker.reconcile([caller_entry(), op("101", 7, state)], time=NOW) == []
        (view,) = tracker.active_calls()
        assert (view.ringing if state == "5" else view.talking) == ("101",)
        (end,) = tracker.reconcile([], time=NOW)
        assert isinstance(end, Ended) and end.rang == ("101",)
        assert end.answered_by == (("101",) if state == "6" else ())


def test_reconcile_twice_with_the_same_list_gives_nothing_the_second_time() -> None:
    tracker = CallTracker()
    answered_call_seen_live(tracker)
    other = "1795644820.5"
    snapshot = [
        caller_entry(),
        op("101", 1, "6"),
        entry("PJSIP/trunk-00000005", other, "6", linkedid=other, cid=("+74950000000", "")),
        entry("PJSIP/103-00000006", "1795644820.6", "5", linkedid=other),
    ]
    first = tracker.reconcile(snapshot, time=NOW)
    assert kinds(first) == [("ringing", "103")]
    assert tracker.reconcile(snapshot, time=NOW) == []
    assert tracker.reconcile(list(reversed(snapshot)), time="1795644999.0") == []
    assert len(tracker.active_calls()) == 2


def test_ended_call_stays_ended() -> None:
    tracker = CallTracker()
    answered_call_seen_live(tracker)
    for channel, uid in (("PJSIP/101-00000001", "1795644810.1"), (CALLER, LINKEDID)):
        tracker.feed(live("Hangup", channel, uid, "6", "1795644820.0", Cause="16"))
    straggler = entry("Local/s@announce-00000009;2", "1795644810.9", "6", app="Playback")
    assert tracker.reconcile([straggler, op("102", 2, "5")], time=NOW) == []
    assert tracker.active_calls() == []


# -- FreePBX Local channels and encodings ------------------------------------------------------
def test_freepbx_local_pair_and_device_collapse_to_one_extension() -> None:
    local = "Local/101@from-queue-00000003"

    def snapshot(state: str) -> list[dict[str, str]]:
        return [
            caller_entry(data="210,t,,,300", exten="210"),
            entry(f"{local};1", "1795644810.3", state, cid=("101", "<unknown>"),
                  context="from-queue", exten="101"),
            entry(f"{local};2", "1795644810.4", "4" if state == "5" else "6",
                  cid=(NUMBER, NAME), context="from-queue", exten="101",
                  app="Dial", data="PJSIP/101,,tr"),
            entry("PJSIP/101-00000005", "1795644810.5", state, cid=("101", "<unknown>"),
                  app="AppDial"),
        ]  # fmt: skip

    tracker = CallTracker()
    out = tracker.reconcile(snapshot("5"), time=NOW)
    assert kinds(out) == [("ringing", "101")]
    assert out[0].queue == "210" and out[0].dialed == "210"
    out = tracker.reconcile(snapshot("6"), time=NOW)
    assert kinds(out) == [("answered", "101")]
    (view,) = tracker.active_calls()
    assert view.talking == ("101",)
    fresh = CallTracker()
    assert kinds(fresh.reconcile(snapshot("6"))) == [("ringing", "101"), ("answered", "101")]


def test_cyrillic_caller_name_survives_byte_for_byte() -> None:
    name = "Иван Петров"
    wire = b"Asterisk Call Manager/11.0.0\r\n"
    for item in (caller_entry(cid=(NUMBER, name)), op("101", 1, "5", connected=(NUMBER, name))):
        wire += "".join(f"{k}: {v}\r\n" for k, v in item.items()).encode("utf-8") + b"\r\n"
    messages = AMIDecoder().feed(wire)
    assert [m["Event"] for m in messages] == ["CoreShowChannel", "CoreShowChannel"]
    (ringing,) = CallTracker().reconcile(messages)
    assert ringing.caller_name == name
    assert ringing.caller_name.encode("utf-8") == name.encode("utf-8")
    assert name.encode("utf-8") in ringing.to_json().encode("utf-8")


# -- the board -------------------------------------------------------------------------------------
def test_board_says_a_lost_call_ended_while_disconnected() -> None:
    tracker = CallTracker()
    board = CallBoard(tracker, server="pbx:5038")
    board.record(answered_call_seen_live(tracker), 0.0)
    board.record(tracker.reconcile([], time=NOW), 10.0)

    def screen(now: float) -> str:
        console = Console(record=True, width=160, color_system=None)
        console.print(board.render(now))
        return console.export_text()

    assert "ended: lost (while disconnected)" in screen(10.0)
    recent = screen(10.0 + FADE_SECONDS + 0.1)
    assert "answered, then lost" in recent and "missed" not in recent
    assert "≤1:30" in recent  # talk time is only known to be at most this
