"""``check_server``: everything ``cti enable`` verifies before it saves AMI settings.

Connect (TCP or verified TLS), read the banner, log in, ask ``CoreSettings`` for the
exact Asterisk version, make sure the user may *read* call events, log off.

Why the read check looks at the configuration: Asterisk filters events by the
user's ``read=`` classes silently (a user without ``call`` simply never gets a
call event) and no action reports a session's read classes. So the check reads
them where Asterisk keeps them: ``GetConfig manager.conf`` for the user's own
section (needs write class system or config), else the CLI ``manager show user``
through ``Command`` (needs write class command). If neither is allowed the
result says so (``read_classes=None``) instead of guessing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cti_cli.ami.client import AMIClient, AuthType
from cti_cli.ami.errors import ActionFailed, ActionTimeout, PermissionDenied
from cti_cli.ami.message import Message
from cti_cli.ami.versions import asterisk_from_ami

__all__ = ["ServerInfo", "check_server", "read_classes_from_command", "read_classes_from_config"]

_CALL_READERS = frozenset({"call", "all"})


@dataclass(frozen=True)
class ServerInfo:
    """What the check learnt. ``read_classes`` is None when they could not be read."""

    ami_version: str
    asterisk_version: str
    banner: str = ""
    read_classes: tuple[str, ...] | None = None

    @property
    def call_events_verified(self) -> bool:
        return self.read_classes is not None and bool(_CALL_READERS & set(self.read_classes))


def _split_classes(value: str) -> tuple[str, ...]:
    return tuple(c.strip().lower() for c in value.split(",") if c.strip())


def read_classes_from_config(reply: Message) -> tuple[str, ...] | None:
    """``read=`` of the section returned by ``GetConfig`` (last one wins, as in Asterisk)."""
    found: tuple[str, ...] | None = None
    for name, value in reply.headers:
        if name.startswith("Line-"):
            key, sep, val = value.partition("=")
            if sep and key.strip().lower() == "read":
                found = _split_classes(val)
    return found


def read_classes_from_command(reply: Message) -> tuple[str, ...] | None:
    """``read perm:`` line of the CLI ``manager show user`` output."""
    for line in reply.output:
        key, sep, val = line.partition(":")
        if sep and key.strip().lower() == "read perm":
            classes = _split_classes(val)
            return tuple(c for c in classes if c != "<none>")
    return None


async def _read_classes(client: AMIClient, login: str) -> tuple[str, ...] | None:
    # no reply is a silent peer, not a missing permission: the ActionTimeout propagates
    reply = await client.action(
        "GetConfig", {"Filename": "manager.conf", "Category": login}, check=False
    )
    if reply.get("Response") == "Success":
        classes = read_classes_from_config(reply)
        if classes is not None:
            return classes
    reply = await client.action("Command", {"Command": f"manager show user {login}"}, check=False)
    if reply.get("Response") in ("Success", "Follows"):
        return read_classes_from_command(reply)
    return None


async def _asterisk_version(client: AMIClient, ami_version: str) -> str:
    try:
        reply = await client.action("CoreSettings")
    except (PermissionDenied, ActionFailed):  # it answered: no permission or too old
        return asterisk_from_ami(ami_version)
    return reply.get("AsteriskVersion") or asterisk_from_ami(ami_version)


async def check_server(
    host: str,
    port: int,
    login: str,
    secret: str,
    *,
    tls: bool = False,
    auth: AuthType = "md5",
    timeout: float = 10.0,
    cafile: str | None = None,
) -> ServerInfo:
    """Verify an AMI account end to end; raise the specific ``AMIError`` on failure.

    A user whose ``read=`` lacks ``call`` (and ``all``) gets ``PermissionDenied``.
    ``timeout`` bounds the whole check, not each step; a peer that stops answering on the
    way (e.g. to ``CoreSettings``) fails it with ``ActionTimeout``.
    """
    client = AMIClient(reply_timeout=timeout, max_queued_events=1000)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    step = "the login"
    try:
        # connect reports its own timeouts (no TCP, no TLS, no banner); the rest shares
        # what is left of the same deadline
        await client.connect(host, port, tls=tls, cafile=cafile, timeout=timeout)
        async with asyncio.timeout_at(deadline):
            await client.login(login, secret, auth=auth, events="off")
            ami_version = client.ami_version or ""
            step = "CoreSettings"
            asterisk_version = await _asterisk_version(client, ami_version)
            step = "GetConfig/Command (the user's read classes)"
            classes = await _read_classes(client, login)
        if classes is not None and not _CALL_READERS & set(classes):
            now = ",".join(classes) or "nothing"
            raise PermissionDenied(
                f"AMI user {login!r} may not read call events: add 'call' to read= in its "
                f"manager.conf section (now read={now}) and run 'manager reload'"
            )
        info = ServerInfo(ami_version, asterisk_version, client.banner or "", classes)
        await client.logoff(timeout=min(timeout, 0.5))  # best effort, after the check
        return info
    except TimeoutError:  # the overall deadline, or one action's (an ActionTimeout)
        raise ActionTimeout(
            f"{host}:{port} did not answer {step} within {timeout:g} s (the whole check): "
            "a stalled or overloaded Asterisk?"
        ) from None
    finally:
        await client.close()
