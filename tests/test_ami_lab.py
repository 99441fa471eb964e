"""cti_cli.ami against the real Asterisk 22 lab (session fixture ``lab`` from conftest.py)."""

from __future__ import annotations

import asyncio
import functools
import secrets
import socket
from collections.abc import Awaitable, Callable

import pytest

from cti_cli.ami.check import check_server
from cti_cli.ami.client import AMIClient
from cti_cli.ami.errors import (
    AuthenticationFailed,
    ConnectionRefused,
    NotAMIServer,
    PermissionDenied,
    TLSError,
)
from lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]


def aio(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no asyncio plugin needed)."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def connected(lab: Lab) -> AMIClient:
    client = AMIClient()
    await client.connect(lab.info.ami_host, lab.info.ami_port, timeout=10)
    await client.login(lab.info.ami_user, lab.info.ami_secret)
    return client


@pytest.mark.parametrize("auth", ["md5", "plain"])
@aio
async def test_check_server_succeeds(lab: Lab, auth: str) -> None:
    i = lab.info
    info = await check_server(i.ami_host, i.ami_port, i.ami_user, i.ami_secret,
                              auth=auth, timeout=10)  # type: ignore[arg-type]  # fmt: skip
    assert info.asterisk_version.startswith("22")
    assert info.ami_version.startswith("11.")
    assert info.call_events_verified


@aio
async def test_wrong_secret_is_authentication_failed(lab: Lab) -> None:
    i = lab.info
    with pytest.raises(AuthenticationFailed) as err:
        await check_server(i.ami_host, i.ami_port, i.ami_user, "wrong-" + i.ami_secret, timeout=10)
    assert i.ami_secret not in str(err.value)


@aio
async def test_closed_port_is_connection_refused(lab: Lab) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefused):
        await check_server("127.0.0.1", port, lab.info.ami_user, lab.info.ami_secret, timeout=10)


@aio
async def test_mariadb_port_is_not_ami(lab: Lab) -> None:
    i = lab.info
    with pytest.raises(NotAMIServer, match=str(i.mysql_port)):
        await check_server(i.mysql_host, i.mysql_port, i.ami_user, i.ami_secret, timeout=10)


@aio
async def test_tls_with_lab_ca_succeeds(lab: Lab) -> None:
    i = lab.info
    for host in ("localhost", "127.0.0.1"):
        info = await check_server(host, i.ami_tls_port, i.ami_user, i.ami_secret, tls=True,
                                  cafile=str(i.tls_ca_file), timeout=10)  # fmt: skip
        assert info.asterisk_version.startswith("22")


@aio
async def test_tls_without_ca_file_is_tls_error(lab: Lab) -> None:
    i = lab.info
    with pytest.raises(TLSError, match="CA file"):
        await check_server("localhost", i.ami_tls_port, i.ami_user, i.ami_secret, tls=True,
                           timeout=10)  # fmt: skip


@aio
async def test_user_without_call_read_is_permission_denied(lab: Lab) -> None:
    i = lab.info
    with pytest.raises(PermissionDenied, match="'call'") as err:
        await check_server(i.ami_host, i.ami_port, i.ami_limited_user, i.ami_limited_secret,
                           timeout=10)  # fmt: skip
    assert i.ami_limited_secret not in str(err.value)


@aio
async def test_command_returns_output_lines(lab: Lab) -> None:
    client = await connected(lab)
    try:
        reply = await client.action("Command", Command="core show version")
        assert reply.output and reply.output[0].startswith("Asterisk 22")
    finally:
        await client.logoff()


@aio
async def test_concurrent_ping_burst_all_answered(lab: Lab) -> None:
    client = await connected(lab)
    try:
        replies = await asyncio.gather(*(client.action("Ping") for _ in range(200)))
        assert {r["Ping"] for r in replies} == {"Pong"}
        assert len({r["ActionID"] for r in replies}) == 200
    finally:
        await client.logoff()


@aio
async def test_call_events_carry_cyrillic_caller_name(lab: Lab) -> None:
    caller = "+7916" + "".join(secrets.choice("0123456789") for _ in range(7))
    client = await connected(lab)
    try:
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=0.5)
        names = set()
        async with asyncio.timeout(60):
            async for event in client.events():
                if event.get("CallerIDNum") == caller:
                    names.add(event.get("CallerIDName"))
                    if event.name == "Hangup":
                        break
        assert names == {"Иван Петров"}
    finally:
        await client.logoff()
        await asyncio.to_thread(lab.wait_idle)
