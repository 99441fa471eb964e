"""Webhook signatures: HMAC-SHA256 over ``timestamp + "." + body``.

A receiver checks a delivery like this (the secret is the webhook's ``secret``)::

    from cti_cli.notify.signing import verify

    ok = verify(secret, headers["X-CTI-Timestamp"], raw_body_bytes,
                headers["X-CTI-Signature"], now=time.time())

or, without cti installed, computes ``"sha256=" + hex(HMAC-SHA256(secret, timestamp + "." +
body))`` over the raw body bytes, compares it in constant time and rejects timestamps more than
five minutes away from its own clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import re

PREFIX = "sha256="
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``"sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body))``."""
    message = timestamp.encode("utf-8") + b"." + body
    # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as hmac.new(...).digest()
    return PREFIX + hmac.digest(secret.encode("utf-8"), message, hashlib.sha256).hex()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    window: float = 300,
) -> bool:
    """True when ``signature`` is ours for this body and timestamp, and the timestamp (unix
    seconds, an integer) lies within ``window`` seconds of ``now`` either way."""
    if not _TIMESTAMP.fullmatch(timestamp) or abs(now - int(timestamp)) > window:
        return False
    expected = sign(secret, timestamp, body).encode("ascii")
    return hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace"))
