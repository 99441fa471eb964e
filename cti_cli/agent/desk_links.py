"""`[desk] card_url` / `form_url`: links into the service desk, filled in from a pop.

A template looks like Python's format strings — `https://sd.example.org/employee/{employee[id]}`,
`…/request/new?phone={call[caller_e164]}` — but is never given to `str.format`: that would allow
attribute access (`{call.__class__}`) and format specs. This is a tiny substitution of its own:
`{name[key]}` only, `{{` / `}}` for literal braces; every value is percent-encoded (nothing in it
can add a path, a query or another host); the result must be an http(s) URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

NAMES = ("call", "employee", "form", "operator")

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)\[([^\[\]{}]+)\]\}|[{}]")


class TemplateError(ValueError):
    """The template itself is wrong (a config mistake)."""


class _Missing(Exception):
    pass


def check_template(template: str) -> str:
    """The template if it is well formed, else TemplateError naming the problem."""
    if not template.startswith(("http://", "https://")):
        raise TemplateError("must start with http:// or https://")
    for match in _TOKEN.finditer(template):
        text = match.group(0)
        if text in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            raise TemplateError(
                f"stray {text!r} at {match.start()}: placeholders look like {{employee[id]}}; "
                "write {{ or }} for a literal brace"
            )
        if name not in NAMES:
            raise TemplateError(f"unknown placeholder {{{name}[…]}}; known: {', '.join(NAMES)}")
    return template


def render(template: str, context: Mapping[str, Mapping[str, Any] | None]) -> str | None:
    """The filled-in URL, or None when a value it needs is absent (no employee, no such column)
    or the template is malformed. Never anything but an http(s) URL with a host."""
    try:
        check_template(template)
    except TemplateError:
        return None

    def value(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "{{":
            return "{"
        if text == "}}":
            return "}"
        table = context.get(match.group(1))
        if not isinstance(table, Mapping):
            raise _Missing
        item = table.get(match.group(2))
        if item is None or item == "" or isinstance(item, dict | list | tuple):
            raise _Missing
        if isinstance(item, bool):
            item = "true" if item else "false"
        return quote(str(item), safe="")

    try:
        url = _TOKEN.sub(value, template)
    except _Missing:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def pop_context(body: Mapping[str, Any]) -> dict[str, Mapping[str, Any] | None]:
    """What a pop's templates may use: the call, the first employee card, the first request
    form's fields, the operator."""
    employee: Mapping[str, Any] | None = None
    form: Mapping[str, Any] | None = None
    for item in body.get("open") or ():
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "employee_card" and employee is None:
            found = item.get("employee")
            employee = found if isinstance(found, Mapping) else None
        elif item.get("type") == "request_form" and form is None:
            found = item.get("fields")
            form = found if isinstance(found, Mapping) else None
    call = body.get("call")
    operator = body.get("operator")
    return {
        "call": call if isinstance(call, Mapping) else None,
        "employee": employee,
        "form": form,
        "operator": operator if isinstance(operator, Mapping) else None,
    }
