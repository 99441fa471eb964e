"""Phone numbers to E.164, the one key the employee directory is indexed and queried by.

The PBX sends caller numbers the way the trunk wrote them (``89161234567``, ``+79161234567``,
``9161234567``, ``101`` for an internal phone, ``<unknown>``/``anonymous`` for a hidden one); a
directory holds them the way people type them (``8 (916) 123-45-67``). Both go through
:func:`normalize_number`, so they meet as ``+79161234567``.

Deliberate choices:

* **Possible, not valid.** A number is accepted when `phonenumbers` finds it *possible* (its
  length fits the country's numbering plan), not only when it is *valid* (its prefix is a
  range assigned today). Real directories hold fresh ranges, ported and odd numbers that the
  library's metadata may not know yet; refusing them would silently lose employees. The price
  is that a mistyped but well-sized number normalizes too — it simply never matches a caller.
* **Local-only lengths are refused** (``IS_POSSIBLE_LOCAL_ONLY``, e.g. a 7-digit city number
  without its area code): without the area code there is no E.164 form to match on.
* **Letters make a number garbage.** ``phonenumbers`` would read vanity letters
  (``1-800-FLOWERS``) and extensions (``доб. 12``); a caller ID or directory cell with letters
  is a mistake or a comment, so it gives ``None`` rather than a guess.
* **``00`` is read as ``+``.** Trunks send international numbers as ``00…`` even where the
  national international prefix differs (Russia's is ``810``, also understood).
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

__all__ = ["normalize_number", "supported_region"]

_PUNCTUATION = frozenset("+-().\u2010\u2011\u2012\u2013\u2014")  # and whitespace
_MAX_LENGTH = 64  # far longer than any real phone number, with formatting


def supported_region(region: str) -> bool:
    """Whether ``region`` is a two-letter country code that `phonenumbers` knows (``"RU"``)."""
    return region in phonenumbers.SUPPORTED_REGIONS


# A pure function of its text, and phonenumbers' parse is the dearest step of a pop (≈ 0.1 ms,
# asked again by the rule's find_employee): remember recent numbers, as callers come back.
@lru_cache(maxsize=4096)
def normalize_number(raw: str, region: str) -> str | None:
    """``raw`` as E.164 (``"+79161234567"``), or ``None`` when it is not a public phone number.

    ``region`` is the country that numbers without ``+`` are dialled from (``"RU"``: ``8 916 …``,
    ``7916…`` and ``916…`` are all ``+7 916 …``). Internal extensions (``101``), ``<unknown>``,
    ``anonymous``, empty strings and anything with letters give ``None``.
    """
    text = raw.strip()
    if not text or len(text) > _MAX_LENGTH or not any(c.isdigit() for c in text):
        return None
    if any(not (c.isdigit() or c.isspace() or c in _PUNCTUATION) for c in text):
        return None
    if text.count("+") > 1 or ("+" in text and not text.startswith("+")):
        return None
    compact = "".join(c for c in text if c.isdigit() or c == "+")
    if compact.startswith("00"):
        text = "+" + compact[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension:
        return None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
