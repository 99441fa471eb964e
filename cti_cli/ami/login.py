"""The AMI login handshake as data: the MD5 challenge key, the Login headers, and what a
refusal means. Shared by the client (which sends them) and the demo PBX (which checks them)."""

from __future__ import annotations

import hashlib
from typing import Literal

from cti_cli.ami.errors import AuthenticationFailed
from cti_cli.ami.message import Message

__all__ = ["AuthType", "challenge_token", "check_login", "login_headers", "md5_key"]

AuthType = Literal["md5", "plain"]


def md5_key(challenge: str, secret: str) -> str:
    """The ``Key`` answering a ``Challenge``: AMI's own challenge-response, not a security
    use of MD5 (so it is allowed on FIPS systems)."""
    return hashlib.md5((challenge + secret).encode("utf-8"), usedforsecurity=False).hexdigest()


def challenge_token(reply: Message, peer: str) -> str:
    """The challenge in the reply to ``Challenge``; AuthenticationFailed if refused."""
    token = reply.get("Challenge")
    if reply.get("Response") != "Success" or not token:
        raise AuthenticationFailed(
            f"{peer} refused the MD5 challenge ({reply.get('Message', '?')}): "
            "try plain authentication"
        )
    return token


def login_headers(
    username: str,
    secret: str,
    *,
    auth: AuthType,
    events: bool | str,
    challenge: str | None = None,
) -> dict[str, str]:
    """The ``Login`` action's headers; ``events``: on/off or a class mask."""
    if auth == "md5":
        if challenge is None:
            raise ValueError("MD5 authentication needs the challenge token")
        headers = {"Username": username, "AuthType": "MD5", "Key": md5_key(challenge, secret)}
    elif auth == "plain":
        headers = {"Username": username, "Secret": secret}
    else:
        raise ValueError(f"unknown AMI auth type {auth!r}: use 'md5' or 'plain'")
    headers["Events"] = events if isinstance(events, str) else ("on" if events else "off")
    return headers


def check_login(reply: Message, peer: str, username: str) -> None:
    """AuthenticationFailed unless Asterisk accepted the login."""
    if reply.get("Response") != "Success":
        raise AuthenticationFailed(
            f"Asterisk at {peer} rejected AMI user {username!r}: wrong user name or "
            "secret, or the user's permit/deny does not allow this host"
        )
