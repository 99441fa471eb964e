"""Operators' personal page links: `cti operator link LOGIN` and the agent's token check.

A token is derived, never stored: base64url(HMAC-SHA256(install secret, login + generation)),
256 bits, 43 URL-safe characters. `<state_dir>/operators.json` (mode 0600, written atomically
under a lock) holds the per-install secret and each login's generation; `--rotate` bumps the
generation, so the old token stops matching at once — in the running agent too, which re-reads
the file when it changes. So `cti operator link` prints the same URL every time without any
plaintext token on disk; the secret itself is the credential to protect (like the AMI password
in the config): anyone who reads operators.json can make every operator's link, so it lives in
the private state folder and is never logged. A login that is in no `[[teams]]` has no valid
token, whatever its generation.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cti_cli.files import write_private

FILE_NAME = "operators.json"
TOKEN_CHARS = 43  # 32 bytes of HMAC-SHA256, base64url without padding
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_CONTEXT = b"cti operator page v1\x00"


class TokenStoreError(Exception):
    """operators.json cannot be read or written; the message says which and why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def derive(secret: bytes, login: str, generation: int) -> str:
    mac = hmac.new(
        secret, _CONTEXT + login.encode("utf-8") + b"\x00" + str(generation).encode(), "sha256"
    )
    return _b64(mac.digest())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def looks_like_token(token: str) -> bool:
    return len(token) == TOKEN_CHARS and set(token) <= _ALPHABET


_DAMAGED_FIX = ("; move it away and run 'cti operator-link LOGIN' to make new links "
                "(every operator's old link then stops working)")


@dataclass
class _State:
    secret: bytes | None = None
    generations: dict[str, int] = field(default_factory=dict)


class TokenStore:
    """The secret and generations in `path`; cheap to ask often (re-read only when changed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._state = _State()
        self._index: dict[bytes, str] = {}
        self._index_key: tuple[tuple[int, int, int] | None, frozenset[str]] | None = None
        self.problem: str | None = None  # why the file could not be read, for the log

    # ------------------------------------------------------------------ reading

    def _current(self) -> _State:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._state, self.problem = None, _State(), None
            return self._state
        except OSError as exc:
            self.problem = f"{self.path}: {exc.strerror}"
            return self._state
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            try:
                self._state = _parse(self.path.read_bytes())
                self.problem = None
            except OSError as exc:
                self.problem = f"{self.path}: cannot read: {exc.strerror}"
            except ValueError as exc:
                self.problem = f"{self.path}: {exc}{_DAMAGED_FIX}"
            self._stamp = stamp
        return self._state

    def verify(self, token: str, logins: Iterable[str]) -> str | None:
        """The login whose current token this is (among `logins`), else None."""
        if not looks_like_token(token):
            return None
        state = self._current()
        if state.secret is None:
            return None
        allowed = frozenset(logins)
        key = (self._stamp, allowed)
        if key != self._index_key:
            self._index = {
                _digest(derive(state.secret, login, state.generations.get(login, 0))): login
                for login in allowed
            }
            self._index_key = key
        # Looked up by the token's SHA-256: what timing could reveal is about a hash, not a token.
        return self._index.get(_digest(token))

    def current_token(self, login: str) -> str | None:
        """The login's token if the store exists (no file is created)."""
        state = self._current()
        if state.secret is None:
            return None
        return derive(state.secret, login, state.generations.get(login, 0))

    # ------------------------------------------------------------------ writing

    def token(self, login: str, *, rotate: bool = False) -> str:
        """The login's token, creating the store (and the secret) when missing; `rotate` first
        invalidates the current token."""
        with self._locked():
            try:
                raw = self.path.read_bytes()
                state = _parse(raw)
            except FileNotFoundError:
                state = _State()
            except OSError as exc:
                raise TokenStoreError(f"{self.path}: cannot read: {exc.strerror}") from None
            except ValueError as exc:
                raise TokenStoreError(f"{self.path}: {exc}{_DAMAGED_FIX}") from None
            changed = False
            if state.secret is None:
                state.secret = secrets.token_bytes(32)
                changed = True
            if rotate:
                state.generations[login] = state.generations.get(login, 0) + 1
                changed = True
            if changed:
                self._write(state)
            return derive(state.secret, login, state.generations.get(login, 0))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(
                folder / (self.path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise TokenStoreError(f"{folder}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, state: _State) -> None:
        assert state.secret is not None
        data = {
            "version": 1,
            "about": "cti operator page links; the secret gives access to every operator's "
            "page: keep this file private (mode 0600)",
            "secret": _b64(state.secret),
            "generations": dict(sorted(state.generations.items())),
        }
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        try:
            write_private(self.path, text.encode("utf-8"))
        except OSError as exc:
            raise TokenStoreError(f"cannot write {self.path}: {exc.strerror}") from None


def _parse(raw: bytes) -> _State:
    try:
        data: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    secret_text = data.get("secret")
    secret: bytes | None = None
    if secret_text is not None:
        if not isinstance(secret_text, str):
            raise ValueError("secret: not a string")
        try:
            secret = base64.urlsafe_b64decode(secret_text + "=" * (-len(secret_text) % 4))
        except ValueError:
            raise ValueError("secret: not base64url") from None
        if len(secret) < 16:
            raise ValueError("secret: too short")
    generations = data.get("generations") or {}
    if not isinstance(generations, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in generations.items()
    ):
        raise ValueError("generations: must map logins to non-negative integers")
    return _State(secret, dict(generations))


# ---------------------------------------------------------------------- URLs


def base_url(public_url: str | None, listen: str) -> str:
    """Where operators reach the agent: `[agent] public_url`, else `http://<listen>` (a
    wildcard listen address is replaced by this host's name)."""
    if public_url:
        return public_url.rstrip("/")
    host, _, port = listen.rpartition(":")
    bare = host.strip("[]")
    if bare in ("", "0.0.0.0", "::"):
        host = socket.getfqdn() or "localhost"
    return f"http://{host}:{port}"


def page_url(public_url: str | None, listen: str, token: str) -> str:
    return f"{base_url(public_url, listen)}/operator?t={token}"


def team_logins(teams: Iterable[Any]) -> set[str]:
    """Every login that is a member of a responsible team."""
    return {member.login for team in teams for member in team.members}
