"""Known callers get their employee card; unknown callers only get a request form.

For desks where the operator files the request from the employee card itself: a caller the
directory knows opens only their card (no form, nothing to close); a caller it does not know —
a new customer, a private mobile — opens only a request form with what the PBX told us, marked
`source = "phone, unknown caller"` so the desk can route it to intake.

Opens: employee_card for a known caller; request_form {phone, caller_name, source} otherwise.
"""

from typing import Any

UNKNOWN_SOURCE = "phone, unknown caller"


def on_call(call: Any, cti: Any) -> None:
    employee = cti.find_employee(call.caller)
    if employee is not None:
        cti.open_card(employee)
        return
    cti.open_request_form(
        phone=call.caller_e164 or call.caller,
        caller_name=call.caller_name,
        source=UNKNOWN_SOURCE,
    )
