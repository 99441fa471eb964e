"""The incoming-call rule cti runs when `[rule] script` is unset.

Copy it (`cti rule show > /etc/cti/rules/incoming.py`) and point `[rule] script` at the copy to
change what a screen pop opens. `on_call(call, cti)` runs once per pop, for one operator:

* `call` — caller, caller_e164, caller_name, dialed, queue, uniqueid, call_id, trigger and
  `call.operator` (login, name, team, extension); also readable as `call["caller"]`.
* `cti.find_employee(number)` — the employee (a dict of the directory's columns) or None.
* `cti.open_card(employee)`, `cti.open_request_form(**fields)` — what the operator's browser opens.
* `cti.log(message)` — a line in the agent's log.

Opens: employee_card + request_form {client_id, client_name, phone} for a caller the directory
knows, request_form {phone, caller_name} for anyone else. (`cti rule examples`: "default".)
"""


from typing import Any


def on_call(call: Any, cti: Any) -> None:
    phone = call.caller_e164 or call.caller
    employee = cti.find_employee(call.caller)
    if employee is not None:
        # A known caller: their card, and a request already filed for them.
        cti.open_card(employee)
        cti.open_request_form(
            client_id=employee.get("id"),
            client_name=employee.get("name"),
            phone=phone,
        )
    else:
        # Someone the directory does not know: a request form with what the PBX told us.
        cti.open_request_form(phone=phone, caller_name=call.caller_name)
