"""Employee card and a request form: what cti does when no rule is configured.

A caller the directory knows gets their employee card and a new request already filed for them
(client id and name, the number in E.164); a caller it does not know gets a request form with
the number and the name the PBX sent. The same as the built-in rule (`cti rule show`), as a
starting point for your own: `cti rule new mine --from default`.

Opens: employee_card + request_form {client_id, client_name, phone} for a known caller,
request_form {phone, caller_name} for anyone else.
"""

from typing import Any


def on_call(call: Any, cti: Any) -> None:
    phone = call.caller_e164 or call.caller
    employee = cti.find_employee(call.caller)
    if employee is not None:
        cti.open_card(employee)
        cti.open_request_form(
            client_id=employee.get("id"),
            client_name=employee.get("name"),
            phone=phone,
        )
    else:
        cti.open_request_form(phone=phone, caller_name=call.caller_name)
