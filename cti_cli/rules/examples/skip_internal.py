"""Skip internal calls: a colleague dialling an operator's extension opens nothing.

A call is internal when the caller's number is a short extension (`INTERNAL_MAX_DIGITS` digits
or fewer, e.g. 101) that does not read as a phone number (`call.caller_e164` is None). Such
a call gets no pop at all: the rule calls `cti.skip(reason)` and the agent sends nothing for
it. Every other call gets the default pop (card and form for a known caller, a form with the
number for an unknown one).

Edit `INTERNAL_MAX_DIGITS` to your dial plan's extension length. Opens: nothing for internal
calls; employee_card + request_form otherwise.
"""

from typing import Any

INTERNAL_MAX_DIGITS = 5


def is_internal(call: Any) -> bool:
    number = (call.caller or "").strip()
    return call.caller_e164 is None and number.isdigit() and len(number) <= INTERNAL_MAX_DIGITS


def on_call(call: Any, cti: Any) -> None:
    if is_internal(call):
        cti.skip(f"internal call from {call.caller}")
        return
    phone = call.caller_e164 or call.caller
    employee = cti.find_employee(call.caller)
    if employee is not None:
        cti.open_card(employee)
        cti.open_request_form(
            client_id=employee.get("id"), client_name=employee.get("name"), phone=phone
        )
    else:
        cti.open_request_form(phone=phone, caller_name=call.caller_name)
