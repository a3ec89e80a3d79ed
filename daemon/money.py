"""Decimal parsing and money formatting shared by every layer: one strict reading of a number from outside.

`parse_decimal` is the one way a number from outside (a webhook body, a CSV row, a command-line flag) becomes
a `Decimal`: finite, never a boolean, plain decimal notation (a comma is refused, not guessed at: "1,5" is
one and a half in half the world and fifteen in the other half), at most `MAX_DIGITS` significant digits
and a bounded exponent, so no later arithmetic can overflow or fail to quantize. Errors name the field.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

# The default decimal context computes with 28 significant digits: more cannot be represented exactly.
MAX_DIGITS = 28
# |adjusted exponent| bound: 1e-28 .. 9.99e28 leaves room for products and quantizing in the 28-digit context.
MAX_EXPONENT = 28
MAX_TEXT = 64
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?")
# An int with more bits than this has more than MAX_DIGITS digits: refused before any conversion to text
# (Python refuses to convert ints over 4,300 digits at all).
_MAX_INT_BITS = (10**MAX_DIGITS).bit_length()


class NotANumber(ValueError):
    """A value that is not an acceptable number; the message names the field and says why."""


def _refuse(field: str, why: str) -> NotANumber:
    return NotANumber(f"{field} {why}")


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else type(value).__name__
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def parse_decimal(value: Any, field: str, *, empty_is_none: bool = False) -> Decimal | None:
    """`value` as a finite Decimal, None for None (and for blank text when `empty_is_none`).

    Accepts int, float, Decimal and text in plain or scientific decimal notation. Raises `NotANumber`.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise _refuse(field, "must be a number, not true/false")
    if isinstance(value, str):
        text = _from_text(value, field, empty_is_none)
        return None if text is None else _checked(text, field)
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise _refuse(field, f"has more than {MAX_DIGITS} digits")
        return _checked(Decimal(value), field)
    if isinstance(value, float):
        return _checked(Decimal(repr(value)), field)
    if isinstance(value, Decimal):
        return _checked(value, field)
    raise _refuse(field, f"must be a number, got {_shown(value)}")


def _from_text(value: str, field: str, empty_is_none: bool) -> Decimal | None:
    text = value.strip()
    if text == "":
        if empty_is_none:
            return None
        raise _refuse(field, "is empty (an unfilled TradingView placeholder?)")
    if len(text) > MAX_TEXT:
        raise _refuse(field, f"is too long to be a number ({len(text)} characters)")
    if "," in text:
        raise _refuse(field, f"must use a dot as the decimal mark and no thousands separator, got {_shown(text)}")
    if not _NUMBER.fullmatch(text):
        lowered = text.lower().lstrip("+-")
        if lowered in ("nan", "inf", "infinity"):
            raise _refuse(field, f"must be a finite number, got {_shown(text)} (an unfilled TradingView placeholder?)")
        raise _refuse(field, f"must be a number, got {_shown(text)}")
    try:
        return Decimal(text)
    except InvalidOperation:  # the pattern admits only what Decimal reads; kept as a guard
        raise _refuse(field, f"must be a number, got {_shown(text)}") from None


def _checked(number: Decimal, field: str) -> Decimal:
    if not number.is_finite():
        raise _refuse(field, "must be a finite number (an unfilled TradingView placeholder?)")
    if number.is_zero():
        return Decimal(0)  # 0E+999999 is zero too, without the exponent
    # Written trailing zeros count too: "1.000…" with 30 zeros cannot be held exactly in 28 digits either.
    if len(number.as_tuple().digits) > MAX_DIGITS:
        raise _refuse(field, f"has more than {MAX_DIGITS} significant digits")
    if abs(number.adjusted()) > MAX_EXPONENT:
        raise _refuse(field, f"is out of range (more than {MAX_EXPONENT} digits before or after the point)")
    return number


def decimal_or_none(value: Any) -> Decimal | None:
    """Lenient reading of a number the daemon wrote itself (event data): None when it is not one."""
    try:
        return parse_decimal(value, "value", empty_is_none=True)
    except NotANumber:
        return None


def plain(value: Decimal) -> str:
    """A Decimal in plain notation without trailing zeros: 10.50 -> "10.5", 1E+1 -> "10"."""
    return f"{value.normalize():f}"


def money(value: Decimal | str | None, *, signed: bool = False, grouped: bool = True, symbol: str = "",
          places: int = 2) -> str:
    """Money for people: `places` decimals (cents), thousands separators unless `grouped` is off, "-" for
    None. `signed` puts + before a gain (and a zero: a P&L line reads "+0.00"); a loss is never "-0.00" once
    rounded to zero. `symbol` ("$") goes between the sign and the digits."""
    if value is None:
        return "-"
    rounded = Decimal(value).quantize(Decimal(1).scaleb(-places))
    if rounded.is_zero():
        rounded = abs(rounded)
    sign = "-" if rounded < 0 else ("+" if signed else "")
    digits = f"{abs(rounded):,.{places}f}" if grouped else f"{abs(rounded):.{places}f}"
    return f"{sign}{symbol}{digits}"


def number(value: Decimal | int) -> str:
    """A quantity or limit for people: thousands separators, no trailing zeros (1,000 / 2.5 / 12,500.25)."""
    return f"{value:,}" if isinstance(value, int) else f"{value.normalize():,f}"


def plain_money(value: Decimal) -> str:
    """Cents without grouping, for machine-readable details and numbers in rule messages: 1234.50."""
    return money(value, grouped=False)
