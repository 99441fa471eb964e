"""Route by dialled number (DID) to a team: each support line pops only its own team.

`DID_TEAMS` maps the number the caller dialled (`call.dialed`: the DID, or the queue or ring
group extension the trunk sends to) to the name of the team that owns that line, as in
`[[teams]] name`. When such a call reaches an operator of another team (a shared queue member,
an overflow, a transfer), that operator gets no pop: the rule calls `cti.skip(reason)`. Calls
to a number not in the table pop for everyone, as usual. The request form carries the line's
team and number so the desk files it in the right queue.

Edit `DID_TEAMS`. Opens: employee_card (when known) + request_form {team, line, phone, …};
nothing (skipped) for an operator outside the line's team.
"""

from typing import Any

DID_TEAMS = {
    "200": "Первая линия",  # the lab's support queue
    "300": "Second line",  # the lab's ring group
    "+74951234567": "Первая линия",
}


def on_call(call: Any, cti: Any) -> None:
    team = DID_TEAMS.get(call.dialed or "")
    if team is not None and call.operator.team != team:
        cti.skip(f"line {call.dialed} belongs to team {team}, not {call.operator.team}")
        return
    phone = call.caller_e164 or call.caller
    fields: dict[str, Any] = {"team": team or call.operator.team, "line": call.dialed,
                              "phone": phone}
    employee = cti.find_employee(call.caller)
    if employee is not None:
        cti.open_card(employee)
        fields["client_id"] = employee.get("id")
        fields["client_name"] = employee.get("name")
    else:
        fields["caller_name"] = call.caller_name
    cti.open_request_form(**fields)
