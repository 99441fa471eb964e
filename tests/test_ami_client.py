"""AMI client against a fake in-process AMI server (127.0.0.1, port 0) for fault injection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from cti_cli.ami.check import check_server
from cti_cli.ami.client import AMIClient
from cti_cli.ami.errors import (
    ActionFailed,
    ActionTimeout,
    AuthenticationFailed,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    NameNotResolved,
    NotAMIServer,
    PermissionDenied,
    ProtocolError,
    TLSError,
)
from cti_cli.ami.message import Message
from cti_cli.ami.reconnect import ConnectionState, ConnectParams, ReconnectingClient

pytestmark = pytest.mark.timeout(30)


def aio(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no asyncio plugin needed)."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


BANNER = b"Asterisk Call Manager/11.0.0\r\n"
SECRET = "s3cr3t-Пароль"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def wire(headers: list[tuple[str, str]] | dict[str, str]) -> bytes:
    items = headers.items() if isinstance(headers, dict) else headers
    return ("".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n").encode()


async def read_action(reader: asyncio.StreamReader) -> Message:
    return Message((await reader.readuntil(b"\r\n\r\n"))[:-4])


def reply(action: Message, **headers: str) -> bytes:
    return wire({"Response": "Success", "ActionID": action["ActionID"], **headers})


async def serve_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Banner, then answer Challenge/Login like Asterisk (MD5 or plain)."""
    writer.write(BANNER)
    challenge = "840215675"
    while True:
        action = await read_action(reader)
        if action["Action"] == "Challenge":
            writer.write(reply(action, Challenge=challenge))
            continue
        assert action["Action"] == "Login"
        if action.get("AuthType") == "MD5":
            good = action["Key"] == hashlib.md5((challenge + SECRET).encode()).hexdigest()
        else:
            good = action.get("Secret") == SECRET
        if good:
            writer.write(reply(action, Message="Authentication accepted"))
            return
        writer.write(wire({"Response": "Error", "ActionID": action["ActionID"],
                           "Message": "Authentication failed"}))  # fmt: skip
        await writer.drain()
        writer.close()
        raise ConnectionResetError


class FakeAMI:
    """Runs ``handler`` for each connection; ``connections`` counts them."""

    def __init__(self, handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_ctx = ssl_ctx
        self.connections = 0
        self.port = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> FakeAMI:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def logged_in(port: int, **kw: object) -> AMIClient:
    client = AMIClient(**kw)  # type: ignore[arg-type]
    await client.connect("127.0.0.1", port, timeout=5)
    await client.login("cti", SECRET)
    return client


# -- connect & login --------------------------------------------------------------------
@pytest.mark.parametrize("auth", ["md5", "plain"])
@aio
async def test_login(auth: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        await read_action(reader)

    async with FakeAMI(handler) as server:
        client = AMIClient()
        banner = await client.connect("127.0.0.1", server.port)
        assert banner == "Asterisk Call Manager/11.0.0" and client.ami_version == "11.0.0"
        reply_msg = await client.login("cti", SECRET, auth=auth)  # type: ignore[arg-type]
        assert reply_msg["Message"] == "Authentication accepted"
        await client.close()


@pytest.mark.parametrize("auth", ["md5", "plain"])
@aio
async def test_wrong_secret(auth: str) -> None:
    async with FakeAMI(serve_login) as server:
        client = AMIClient()
        await client.connect("127.0.0.1", server.port)
        with pytest.raises(AuthenticationFailed) as err:
            await client.login("cti", "wrong-secret", auth=auth)  # type: ignore[arg-type]
        assert "wrong-secret" not in str(err.value) and "\n" not in str(err.value)
        await client.close()


@aio
async def test_no_banner_is_connect_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async with FakeAMI(silent) as server:
        with pytest.raises(ConnectTimeout, match="no AMI banner"):
            await AMIClient().connect("127.0.0.1", server.port, timeout=0.3)


@pytest.mark.parametrize(
    "greeting",
    [b"SSH-2.0-OpenSSH_9.2\r\n", b"\x4a\x00\x00\x00\x0a5.5.5-10.11", b"HTTP/1.1 400 Bad"],
)
@aio
async def test_foreign_server_is_not_ami(greeting: bytes) -> None:
    async def foreign(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await asyncio.sleep(10)

    async with FakeAMI(foreign) as server:
        with pytest.raises(NotAMIServer, match="not an Asterisk AMI server"):
            await AMIClient().connect("127.0.0.1", server.port, timeout=5)


@aio
async def test_closed_port_is_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefused, match=f"127.0.0.1:{port}"):
        await AMIClient().connect("127.0.0.1", port, timeout=5)


@aio
async def test_unknown_host_is_name_not_resolved() -> None:
    with pytest.raises(NameNotResolved, match="does not resolve"):
        await AMIClient().connect("no-such-host.invalid", 5038, timeout=5)


# -- streaming ----------------------------------------------------------------------------
@aio
async def test_events_split_into_single_bytes_keep_cyrillic() -> None:
    events = b"".join(
        wire({"Event": "Newchannel", "CallerIDName": name, "Uniqueid": str(i)})
        for i, name in enumerate(["Иван Петров", "Ёлкин Пётр", "<unknown>"])
    )

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        for i in range(len(events)):
            writer.write(events[i : i + 1])
            await writer.drain()
        await asyncio.sleep(10)

    async with FakeAMI(trickle) as server:
        client = await logged_in(server.port)
        got = []
        async for event in client.events():
            got.append((event["CallerIDName"], event["Uniqueid"]))
            if len(got) == 3:
                break
        assert got == [("Иван Петров", "0"), ("Ёлкин Пётр", "1"), ("<unknown>", "2")]
        await client.close()


@aio
async def test_garbage_beyond_size_bound_is_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        writer.write(wire({"Event": "Ok"}))
        writer.write(b"\x00garbage without end " * 500)
        await asyncio.sleep(10)

    async with FakeAMI(garbage) as server:
        client = await logged_in(server.port, max_message=4096)
        names = []
        with pytest.raises(ProtocolError, match="larger than 4096"):
            async for event in client.events():
                names.append(event.name)
        assert names == ["Ok"]
        assert not client.connected
        await client.close()


@aio
async def test_concurrent_actions_answered_out_of_order() -> None:
    async def reverse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        actions = [await read_action(reader) for _ in range(5)]
        for action in reversed(actions):
            writer.write(wire({"Event": "Noise", "Value": "not a reply"}))
            writer.write(reply(action, Value=action["Variable"]))
        await asyncio.sleep(10)

    async with FakeAMI(reverse) as server:
        client = await logged_in(server.port)
        replies = await asyncio.gather(
            *(client.action("Getvar", Variable=f"VAR{i}") for i in range(5))
        )
        assert [r["Value"] for r in replies] == [f"VAR{i}" for i in range(5)]
        noise = []
        async for event in client.events():
            noise.append(event["Value"])
            if len(noise) == 5:
                break
        assert noise == ["not a reply"] * 5
        await client.close()


@aio
async def test_event_list_is_collected() -> None:
    async def lists(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        action = await read_action(reader)
        aid = action["ActionID"]
        writer.write(wire({"Response": "Success", "ActionID": aid, "EventList": "start",
                           "Message": "Channels will follow"}))  # fmt: skip
        writer.write(wire({"Event": "CoreShowChannel", "ActionID": aid, "Channel": "PJSIP/101-1"}))
        writer.write(wire({"Event": "Newstate", "Channel": "PJSIP/102-2"}))
        writer.write(wire({"Event": "CoreShowChannel", "ActionID": aid, "Channel": "PJSIP/103-3"}))
        writer.write(wire({"Event": "CoreShowChannelsComplete", "ActionID": aid,
                           "EventList": "Complete", "ListItems": "2"}))  # fmt: skip
        await asyncio.sleep(10)

    async with FakeAMI(lists) as server:
        client = await logged_in(server.port)
        result = await client.action_list("CoreShowChannels")
        assert [e["Channel"] for e in result] == ["PJSIP/101-1", "PJSIP/103-3"]
        assert result.complete is not None and result.complete["ListItems"] == "2"
        async for event in client.events():
            assert event["Channel"] == "PJSIP/102-2"
            break
        await client.close()


@aio
async def test_error_replies_raise() -> None:
    async def errors(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        first, second = await read_action(reader), await read_action(reader)
        writer.write(wire({"Response": "Error", "ActionID": first["ActionID"],
                           "Message": "Permission denied"}))  # fmt: skip
        writer.write(wire({"Response": "Error", "ActionID": second["ActionID"],
                           "Message": "No such channel"}))  # fmt: skip
        await asyncio.sleep(10)

    async with FakeAMI(errors) as server:
        client = await logged_in(server.port)
        denied = asyncio.create_task(client.action("Originate", Channel="PJSIP/101"))
        failed = asyncio.create_task(client.action("Hangup", Channel="PJSIP/nope"))
        with pytest.raises(PermissionDenied, match="Originate"):
            await denied
        with pytest.raises(ActionFailed, match="No such channel"):
            await failed
        await client.close()


@aio
async def test_unanswered_ping_is_connection_lost() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        await asyncio.sleep(10)

    async with FakeAMI(deaf) as server:
        client = await logged_in(server.port)
        with pytest.raises(ConnectionLost, match="did not answer Ping"):
            await client.ping(timeout=0.2)
        assert not client.connected
        with pytest.raises(ConnectionLost):
            async for _ in client.events():
                pass
        await client.close()


@aio
async def test_keepalive_detects_dead_server() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        await asyncio.sleep(10)

    async with FakeAMI(deaf) as server:
        client = await logged_in(server.port)
        client.start_keepalive(0.05, timeout=0.2)
        with pytest.raises(ConnectionLost, match="Ping"):
            async for _ in client.events():
                pass
        await client.close()


@aio
async def test_server_close_ends_events_with_connection_lost_after_queued_events() -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        writer.write(wire({"Event": "Hangup"}))
        await writer.drain()

    async with FakeAMI(one_then_close) as server:
        client = await logged_in(server.port)
        seen = []
        with pytest.raises(ConnectionLost, match="closed"):
            async for event in client.events():
                seen.append(event.name)
        assert seen == ["Hangup"]
        await client.close()


@aio
async def test_an_action_in_flight_when_the_server_drops_fails_at_once() -> None:
    async def drop_on_action(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        await read_action(reader)
        writer.transport.abort()

    async with FakeAMI(drop_on_action) as server:
        client = await logged_in(server.port, reply_timeout=20)
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionLost, match=r"closed the AMI connection|dropped"):
            await client.action("CoreShowChannels")
        assert asyncio.get_running_loop().time() - started < 5  # not its 20 s reply timeout
        await client.close()


@aio
async def test_list_items_arriving_after_their_action_timed_out_are_still_events() -> None:
    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        aid = (await read_action(reader))["ActionID"]
        await asyncio.sleep(0.5)
        writer.write(wire({"Response": "Success", "ActionID": aid, "EventList": "start"}))
        writer.write(wire({"Event": "CoreShowChannel", "ActionID": aid, "Channel": "PJSIP/101-1"}))
        await asyncio.sleep(10)

    async with FakeAMI(late) as server:
        client = await logged_in(server.port)
        with pytest.raises(ActionTimeout):
            await client.action_list("CoreShowChannels", reply_timeout=0.2)
        async for event in client.events():
            assert event["Channel"] == "PJSIP/101-1"
            break
        await client.close()


@aio
async def test_logoff_then_events_end_cleanly() -> None:
    async def polite(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        action = await read_action(reader)
        assert action["Action"] == "Logoff"
        writer.write(wire({"Response": "Goodbye", "ActionID": action["ActionID"],
                           "Message": "Thanks for all the fish."}))  # fmt: skip

    async with FakeAMI(polite) as server:
        client = await logged_in(server.port)
        await client.logoff()
        assert [e async for e in client.events()] == []
        with pytest.raises(ConnectionLost):
            await client.action("Ping")


# -- reconnecting ---------------------------------------------------------------------------
@aio
async def test_reconnect_after_server_drops_connection() -> None:
    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        writer.write(wire({"Event": "Hangup", "Uniqueid": f"call-{server.connections}"}))
        await writer.drain()
        if server.connections == 1:
            return  # drop the first connection
        await asyncio.sleep(10)

    states: list[ConnectionState] = []
    async with FakeAMI(flaky) as server:
        params = ConnectParams("127.0.0.1", server.port, "cti", SECRET, timeout=5)
        client = ReconnectingClient(params, on_state=states.append, backoff_initial=0.01)
        seen = []
        async for event in client.events():
            seen.append(event["Uniqueid"])
            if len(seen) == 2:
                break
        await client.close()
    assert seen == ["call-1", "call-2"]
    kinds = [s.state for s in states]
    assert kinds[:6] == ["connecting", "connected", "error", "reconnecting", "connecting",
                         "connected"]  # fmt: skip
    assert "closed" in (states[2].error or "")
    assert str(states[3]).startswith("reconnecting in ")
    assert SECRET not in repr(params)


@aio
async def test_reconnect_reports_login_errors_and_backs_off() -> None:
    states: list[ConnectionState] = []

    async with FakeAMI(serve_login) as server:
        params = ConnectParams("127.0.0.1", server.port, "cti", "bad", timeout=5)
        client = ReconnectingClient(params, on_state=states.append, backoff_initial=0.01,
                                    backoff_max=0.04, jitter=0.0)  # fmt: skip

        async def consume() -> None:
            async for _ in client.events():
                pass

        task = asyncio.create_task(consume())
        while sum(s.state == "reconnecting" for s in states) < 4:
            await asyncio.sleep(0.01)
        await client.close()
        await task
    errors = [s.error for s in states if s.state == "error"]
    assert errors and all("rejected AMI user 'cti'" in (e or "") for e in errors)
    delays = [s.delay for s in states if s.state == "reconnecting"]
    assert delays[:4] == [0.01, 0.02, 0.04, 0.04]
    assert states[-1].state == "closed"


async def _reconnect_delays(handler: Handler, healthy_after: float, count: int) -> list[float]:
    states: list[ConnectionState] = []
    async with FakeAMI(handler) as server:
        params = ConnectParams("127.0.0.1", server.port, "cti", SECRET, timeout=5)
        client = ReconnectingClient(params, on_state=states.append, backoff_initial=0.01,
                                    backoff_max=10.0, jitter=0.0, healthy_after=healthy_after,
                                    client_factory=lambda: AMIClient(max_message=4096))  # fmt: skip

        async def consume() -> None:
            async for _ in client.events():
                pass

        task = asyncio.create_task(consume())
        while sum(s.state == "reconnecting" for s in states) < count:
            await asyncio.sleep(0.005)
        await client.close()
        await task
    assert sum(s.state == "connected" for s in states) >= count  # every login succeeded
    return [s.delay or 0.0 for s in states if s.state == "reconnecting"][:count]


@aio
async def test_a_peer_that_logs_in_then_sends_garbage_is_backed_off() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        writer.write(b"\x00garbage without end " * 500)
        await writer.drain()
        await asyncio.sleep(10)

    assert await _reconnect_delays(garbage, 30.0, 5) == [0.01, 0.02, 0.04, 0.08, 0.16]


@aio
async def test_backoff_starts_over_after_a_healthy_connection() -> None:
    async def lasting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        await asyncio.sleep(0.12)  # up longer than healthy_after, then dropped

    assert await _reconnect_delays(lasting, 0.1, 3) == [0.01, 0.01, 0.01]


# -- TLS --------------------------------------------------------------------------------------
@aio
async def test_tls_with_and_without_ca_file(tls_files: tuple[Path, Path, Path]) -> None:
    ca, cert, key = tls_files
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        await asyncio.sleep(10)

    async with FakeAMI(handler, ssl_ctx=ctx) as server:
        client = AMIClient()
        await client.connect("127.0.0.1", server.port, tls=True, cafile=str(ca), timeout=5)
        await client.login("cti", SECRET)
        await client.close()
        with pytest.raises(TLSError, match=r"not trusted.*CA file"):
            await AMIClient().connect("127.0.0.1", server.port, tls=True, timeout=5)


# -- check_server (logic; the real thing runs in test_ami_lab.py) ---------------------------
def check_handler(read: str, core_settings: bool) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        while True:
            action = await read_action(reader)
            name = action["Action"]
            if name == "CoreSettings" and core_settings:
                writer.write(reply(action, AsteriskVersion="22.10.1", AMIversion="11.0.0"))
            elif name == "GetConfig":
                writer.write(reply(action, **{"Category-000000": "cti",
                                              "Line-000000-000000": f"secret={SECRET}",
                                              "Line-000000-000001": f"read={read}"}))  # fmt: skip
            elif name == "Logoff":
                writer.write(wire({"Response": "Goodbye", "ActionID": action["ActionID"]}))
                return
            else:
                writer.write(wire({"Response": "Error", "ActionID": action["ActionID"],
                                   "Message": "Permission denied"}))  # fmt: skip

    return handler


@aio
async def test_check_server_reports_versions_and_read_classes() -> None:
    async with FakeAMI(check_handler("system,call", core_settings=True)) as server:
        info = await check_server("127.0.0.1", server.port, "cti", SECRET, timeout=5)
    assert info.ami_version == "11.0.0" and info.asterisk_version == "22.10.1"
    assert info.read_classes == ("system", "call") and info.call_events_verified


@aio
async def test_check_server_falls_back_to_version_table() -> None:
    async with FakeAMI(check_handler("all", core_settings=False)) as server:
        info = await check_server("127.0.0.1", server.port, "cti", SECRET, auth="plain", timeout=5)
    assert info.asterisk_version == "22"


@aio
async def test_check_server_user_without_call_read_is_permission_denied() -> None:
    async with FakeAMI(check_handler("system", core_settings=True)) as server:
        with pytest.raises(PermissionDenied) as err:
            await check_server("127.0.0.1", server.port, "cti", SECRET, timeout=5)
    message = str(err.value)
    assert "'call'" in message and "read=" in message and SECRET not in message


@aio
async def test_slow_consumer_gets_every_event_through_back_pressure() -> None:
    """A consumer that stalls makes the client stop reading the socket (pause_reading): the
    PBX's burst stays in the PBX's own send buffer, nothing piles up in cti, nothing is lost.
    Without the pause the client would slurp the whole burst into memory at once."""
    count, pad = 8000, "x" * 1000  # 8 MB: more than the kernel's socket buffers hold
    held_back: list[int] = []

    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        writer.write(reply(await read_action(reader), Ping="Pong"))
        for i in range(count):
            writer.write(wire({"Event": "VarSet", "Value": str(i), "Pad": pad}))
        await asyncio.sleep(0.5)  # the consumer is stalled all this time
        held_back.append(writer.transport.get_write_buffer_size())
        await writer.drain()
        await asyncio.sleep(10)

    async with FakeAMI(burst) as server:
        client = await logged_in(server.port, max_queued_events=5)
        got = []

        async def consume() -> None:
            async for event in client.events():
                got.append(int(event["Value"]))
                if len(got) == 1:
                    await asyncio.sleep(0.8)  # a slow consumer: stalls on the first event
                if len(got) == count:
                    break

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await client.action("Ping")  # the server starts its burst after this
        await consumer
        assert got == list(range(count)) and client.dropped_events == 0
        # cti stopped reading: megabytes still waited at the PBX while the consumer stalled
        assert held_back and held_back[0] > 1_000_000, held_back
        await client.close()


@aio
async def test_keepalive_does_not_blame_the_peer_for_our_slow_consumer() -> None:
    """Issue 11 item 8: while a slow consumer keeps reading paused, the Ping reply waits unread
    behind the backlog. That is our delay, not the peer's: no "did not answer Ping", no
    reconnect, every event arrives."""
    count, pad = 6000, "x" * 1000  # 6 MB: more than the socket buffers hold

    async def burst_and_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        writer.write(reply(await read_action(reader), Ping="Pong"))
        for i in range(count):
            writer.write(wire({"Event": "VarSet", "Value": str(i), "Pad": pad}))
        while True:  # answer every keepalive Ping: behind the burst, as Asterisk would
            writer.write(reply(await read_action(reader), Ping="Pong"))

    async with FakeAMI(burst_and_answer) as server:
        client = await logged_in(server.port, max_queued_events=5)
        client.start_keepalive(0.05, timeout=0.2)
        got: list[int] = []

        async def consume() -> None:
            async for event in client.events():
                got.append(int(event["Value"]))
                if len(got) in (1, 3000):
                    await asyncio.sleep(1.0)  # stalls: five ping timeouts each
                if len(got) == count:
                    break

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await client.action("Ping")  # the server starts its burst after this
        await consumer
        assert got == list(range(count)) and client.connected
        await client.ping(timeout=1)  # and the connection still works
        await client.close()


@aio
async def test_a_silent_peer_is_still_dead_after_a_pause_of_ours() -> None:
    """The pause does not make a dead peer immortal: once reading resumes and nothing comes
    within the timeout, Ping fails."""

    count, pad = 3000, "x" * 1000

    async def burst_then_deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        writer.write(reply(await read_action(reader), Ping="Pong"))
        for i in range(count):
            writer.write(wire({"Event": "VarSet", "Value": str(i), "Pad": pad}))
        await asyncio.sleep(10)  # and never answers again

    async with FakeAMI(burst_then_deaf) as server:
        client = await logged_in(server.port, max_queued_events=5)
        release, drained = asyncio.Event(), asyncio.Event()
        got: list[int] = []

        async def consume() -> None:
            with contextlib.suppress(ConnectionLost):
                async for event in client.events():
                    got.append(int(event["Value"]))
                    if len(got) == 1:
                        await release.wait()
                    if len(got) == count:
                        drained.set()

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await client.action("Ping")
        while not got:
            await asyncio.sleep(0.01)
        ping = asyncio.create_task(client.ping(timeout=0.3))
        await asyncio.sleep(0.8)
        assert not ping.done()  # reading is paused: not the peer's fault
        release.set()
        await drained.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ConnectionLost, match="did not answer Ping"):
            await ping
        assert loop.time() - started < 1.0
        await consumer
        await client.close()


@aio
async def test_events_nobody_reads_are_bounded() -> None:
    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        for i in range(300):
            writer.write(wire({"Event": "VarSet", "Value": str(i)}))
        action = await read_action(reader)
        writer.write(reply(action, Ping="Pong"))
        await asyncio.sleep(10)

    async with FakeAMI(burst) as server:
        client = await logged_in(server.port, max_queued_events=10)
        await asyncio.sleep(0.2)
        assert (await client.action("Ping"))["Ping"] == "Pong"  # replies still flow
        assert client.dropped_events >= 290
        await client.close()


def test_backoff_grows_to_the_cap_with_bounded_jitter() -> None:
    from cti_cli.ami.reconnect import backoff_delay

    assert [backoff_delay(n, 1.0, 60.0, 0.0) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_delay(3, 1.0, 60.0, 0.2, rand=lambda: 0.0) == pytest.approx(6.4)
    assert backoff_delay(3, 1.0, 60.0, 0.2, rand=lambda: 1.0) == pytest.approx(9.6)
