"""Lookup over the service desk's HTTP API: the caller's open requests on the form.

Before the pop opens, the rule asks the service desk which requests this caller already has
open (`GET API`, `{phone}` replaced by the E.164 number, URL-encoded; `Authorization: Bearer`
with the token read from `TOKEN_FILE` on every call, so a rotated token is picked up). The
answer is a JSON list of objects with at least `id` (`[{"id": "REQ-17", "title": "…"}]`);
the form gets `open_requests` (how many) and `last_request` (the first id), so the operator
sees "this caller already has REQ-17 open" before creating a duplicate.

The request must finish well within `[rule] timeout` (2 s by default): `TIMEOUT` is 1 s. When
the API fails (down, slow, 401, not JSON) the rule logs why (`cti.log`) and the pop goes out
without those fields — a slow desk never holds up the card. Employee cards still come from
`[directory]`. Edit `API` and `TOKEN_FILE` (None: no Authorization header).

Opens: employee_card (when known) + request_form {phone, …, open_requests, last_request}.
"""

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

API = "https://sd.example.org/api/v1/requests?state=open&phone={phone}"
TOKEN_FILE: str | None = "/etc/cti/sd-token"
TIMEOUT = 1.0


def open_requests(phone: str, cti: Any) -> list[dict[str, Any]] | None:
    headers = {"Accept": "application/json"}
    if TOKEN_FILE:
        try:
            headers["Authorization"] = "Bearer " + Path(TOKEN_FILE).read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            cti.log(f"service desk API: cannot read the token {TOKEN_FILE}: {exc}")
            return None
    try:
        reply = httpx.get(API.format(phone=quote(phone, safe="")), headers=headers,
                          timeout=TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as exc:
        cti.log(f"service desk API: {type(exc).__name__}: {exc}")
        return None
    if reply.status_code != 200:
        cti.log(f"service desk API: HTTP {reply.status_code}")
        return None
    try:
        data = reply.json()
    except ValueError:
        cti.log("service desk API: the answer is not JSON")
        return None
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else None


def on_call(call: Any, cti: Any) -> None:
    phone = call.caller_e164 or call.caller
    fields: dict[str, Any] = {"phone": phone}
    employee = cti.find_employee(call.caller)
    if employee is not None:
        cti.open_card(employee)
        fields["client_id"] = employee.get("id")
        fields["client_name"] = employee.get("name")
    else:
        fields["caller_name"] = call.caller_name
    requests = open_requests(phone, cti) if phone else None
    if requests is not None:
        fields["open_requests"] = len(requests)
        if requests:
            fields["last_request"] = requests[0].get("id")
    cti.open_request_form(**fields)
