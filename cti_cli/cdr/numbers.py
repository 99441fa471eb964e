"""Phone numbers as people type them versus as Asterisk stores them.

`8 916 123-45-67`, `+7 (916) 123-45-67` and `79161234567` are one number. Rule (no phone-number
database, no region setting): keep the digits; an 11-digit number starting with 8 is the
Russian/Kazakh trunk prefix and means 7; numbers of 10 or more digits are equal when their last
10 digits are (national significant number in RU/KZ and NANP); shorter ones (extensions, short
codes) must match exactly.
"""

from __future__ import annotations

SIGNIFICANT_DIGITS = 10


def digits(text: str) -> str:
    """Only the digits, with an 11-digit `8…` trunk prefix turned into the country code 7."""
    only = "".join(c for c in text if c.isascii() and c.isdigit())
    if len(only) == 11 and only.startswith("8"):
        return "7" + only[1:]
    return only


def comparable(text: str) -> str:
    """The part two numbers must share to be the same number ('' when there are no digits)."""
    value = digits(text)
    return value[-SIGNIFICANT_DIGITS:] if len(value) >= SIGNIFICANT_DIGITS else value


def same_number(wanted: str, stored: str) -> bool:
    """Does `stored` (from a CDR) denote the number the user asked about?"""
    a, b = comparable(wanted), comparable(stored)
    return bool(a) and a == b


def like_pattern(wanted: str) -> str:
    """A SQL LIKE pattern that every stored spelling of `wanted` matches (a superset: the
    exact check is `same_number`): its significant digits in order, anything between."""
    return "%" + "%".join(comparable(wanted)) + "%"
