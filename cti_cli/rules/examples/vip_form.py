"""VIP numbers go to a different form: priority requests for the people who matter most.

A caller is a VIP when their number (E.164, as `call.caller_e164`) is in `VIP_NUMBERS`, or when
the directory row has a `vip` column saying yes/true/1/да. A VIP gets their card and the VIP
request form (`form = "vip"`, `priority = "high"`); everyone else gets the default pop (card
and form for a known caller, a form with the number for an unknown one), `form = "standard"`.

The service desk picks the form from the `form` field; with `[desk] form_url` the operator page
can open it directly, e.g. `https://sd.example.org/request/new?form={form[form]}&…`.

Edit `VIP_NUMBERS` (or add a `vip` column to the employee CSV). Opens: employee_card (when
known) + request_form {form, priority, client_id, client_name, phone}.
"""

from typing import Any

VIP_NUMBERS = {
    "+79990000001",  # the lab's ring-all queue caller; replace with your VIPs
    "+74951234567",
}
VIP_COLUMN = "vip"
YES = {"1", "yes", "true", "y", "да", "x"}


def is_vip(call: Any, employee: dict[str, Any] | None) -> bool:
    if call.caller_e164 in VIP_NUMBERS:
        return True
    if employee is None:
        return False
    return str(employee.get(VIP_COLUMN) or "").strip().lower() in YES


def on_call(call: Any, cti: Any) -> None:
    phone = call.caller_e164 or call.caller
    employee = cti.find_employee(call.caller)
    vip = is_vip(call, employee)
    if employee is not None:
        cti.open_card(employee)
    fields: dict[str, Any] = {
        "form": "vip" if vip else "standard",
        "priority": "high" if vip else "normal",
        "phone": phone,
    }
    if employee is not None:
        fields["client_id"] = employee.get("id")
        fields["client_name"] = employee.get("name")
    else:
        fields["caller_name"] = call.caller_name
    if vip:
        cti.log(f"VIP call from {phone} for {call.operator.login}")
    cti.open_request_form(**fields)
