"""Operators' personal pages on `[agent] listen`: the page, its event stream, its two assets.

    GET /operator?t=TOKEN            the page (static HTML; 401 for a forged or rotated token)
    GET /operator/events?t=TOKEN     text/event-stream of that operator's pops (401 likewise)
    GET /operator/operator.js|.css   the page's script and style (no data in them)

The token is in the query, so the paths stay fixed (the HTTP server routes exact paths) and the
page's relative URLs work behind a reverse proxy's path prefix. Every response carries a strict
Content-Security-Policy (no inline script, nothing from other origins), `nosniff` and
`Referrer-Policy: no-referrer` (the token is in the URL). The page writes every PBX string with
`textContent`; the desk links are rendered here (`desk_links`), never by the browser.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from cti_cli import config as cfg
from cti_cli.agent import desk_links
from cti_cli.agent.http import Handler, Request, Response
from cti_cli.agent.operators import FILE_NAME, TokenStore, team_logins
from cti_cli.agent.pophub import KEEPALIVE, PopHub
from cti_cli.calls.events import CallEvent

log = logging.getLogger("cti.agent.pages")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
ASSETS = {
    "operator.html": "text/html; charset=utf-8",
    "operator.js": "text/javascript; charset=utf-8",
    "operator.css": "text/css; charset=utf-8",
}
HUB_FILE = "operator-pages.json"
_REFUSED = (
    "401: this operator link is not valid (forged, replaced by a new one, or the operator is "
    "no longer in a team). Ask the administrator for the current link.\n"
    "401: эта ссылка недействительна (подделана, заменена новой или оператор больше не в "
    "команде). Попросите у администратора актуальную ссылку.\n"
).encode()


def _asset(name: str) -> bytes:
    return resources.files("cti_cli.agent").joinpath("static", name).read_bytes()


def _refused() -> Response:
    return Response(401, _REFUSED, headers=dict(SECURITY_HEADERS))


def _last_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or (request.query.get("last") or [""])[0]
    raw = raw.strip()
    return int(raw) if raw.isdigit() and len(raw) < 20 else None


class OperatorPages:
    """Tokens, the hub and the HTTP handlers; `config()` is the agent's current config."""

    def __init__(
        self,
        folder: Path,
        config: Callable[[], cfg.Config],
        *,
        clock: Callable[[], float] = time.time,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self.tokens = TokenStore(folder / FILE_NAME)
        self.hub = PopHub(folder / HUB_FILE, clock=clock, keepalive=keepalive,
                          retention=lambda: config().agent.retention)  # fmt: skip
        self.config = config
        self.clock = clock
        self._assets: dict[str, bytes] = {}
        self._said: str | None = None

    def routes(self) -> dict[str, Handler]:
        return {
            "/operator": self._page,
            "/operator/events": self._events,
            "/operator/operator.js": self._script,
            "/operator/operator.css": self._style,
        }

    # ------------------------------------------------------------------ feeding

    def publish_pop(self, body: Mapping[str, Any]) -> None:
        """A built screen pop (the webhook body): to its operator's page. Never raises: a page
        problem must not hold up the webhooks."""
        try:
            self._publish_pop(body)
        except Exception:
            log.exception("operator pages: cannot publish a pop")

    def call_event(self, event: CallEvent, owners: Mapping[str, Any]) -> None:
        try:
            self.hub.call_event(event, owners)
        except Exception:
            log.exception("operator pages: cannot record a call event")

    def _publish_pop(self, body: Mapping[str, Any]) -> None:
        operator = body.get("operator") or {}
        login = operator.get("login") if isinstance(operator, Mapping) else None
        if not login:
            return
        desk = self.config().desk
        context = desk_links.pop_context(body)
        links = {
            "card": desk_links.render(desk.card_url, context) if desk.card_url else None,
            "form": desk_links.render(desk.form_url, context) if desk.form_url else None,
        }
        data = {**body, "received_at": round(self.clock(), 3), "links": links}
        self.hub.publish_pop(str(login), data)

    # ------------------------------------------------------------------ HTTP

    def _login(self, request: Request) -> tuple[str, str] | None:
        token = (request.query.get("t") or [""])[0]
        login = self.tokens.verify(token, team_logins(self.config().teams))
        problem = self.tokens.problem
        if problem and problem != self._said:
            log.error("operator pages: %s; no operator link works until it is fixed", problem)
        self._said = problem
        return (login, token) if login is not None else None

    def _still_valid(self, login: str, token: str) -> Callable[[], bool]:
        def check() -> bool:
            return self.tokens.verify(token, team_logins(self.config().teams)) == login

        return check

    def _member(self, login: str) -> dict[str, str]:
        for team in self.config().teams:
            for member in team.members:
                if member.login == login:
                    return {"login": login, "name": member.name, "team": team.name}
        return {"login": login, "name": "", "team": ""}

    def _file(self, name: str) -> Response:
        body = self._assets.get(name)
        if body is None:
            body = self._assets[name] = _asset(name)
        return Response(200, body, ASSETS[name], headers=dict(SECURITY_HEADERS))

    async def _page(self, request: Request) -> Response:
        if self._login(request) is None:
            return _refused()
        return self._file("operator.html")

    async def _script(self, request: Request) -> Response:
        return self._file("operator.js")

    async def _style(self, request: Request) -> Response:
        return self._file("operator.css")

    async def _events(self, request: Request) -> Response:
        found = self._login(request)
        if found is None:
            return _refused()
        login, token = found
        config = self.config()
        sub = self.hub.subscribe(login, _last_id(request), config.agent.pop_ttl)
        hello = {
            "operator": self._member(login),
            "history": self.hub.history(login),
            "pop_ttl": config.agent.pop_ttl,
            "now": round(self.clock(), 3),
        }
        log.debug("operator page: %s connected (%d replayed)", login, len(sub.replay))
        stream = self.hub.stream(sub, hello, self._still_valid(login, token))
        headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}
        return Response(200, stream, "text/event-stream; charset=utf-8", headers=headers)
