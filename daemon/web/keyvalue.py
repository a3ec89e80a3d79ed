"""`key=value` alert bodies -> the native JSON payload: `ticker=ES1! action=buy quantity=2 stop_loss.ticks=12`.

Pairs are separated by spaces or new lines; a value with spaces is quoted (`comment="breakout entry"`,
shell rules via `shlex`). A dotted key builds an object (`stop_loss.ticks=12` is `{"stop_loss": {"ticks":
"12"}}`). Values stay text, as TradingView placeholders arrive; the alert model parses them as for JSON.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_START = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")


class PairsError(ValueError):
    """Text that looks like key=value pairs but is not well formed; the message says where."""


def looks_like_pairs(text: str) -> bool:
    """True for text whose first word is `key=...` (JSON never starts that way)."""
    return _START.match(text.lstrip()) is not None


def parse_pairs(text: str) -> dict[str, Any]:
    """The payload of a key=value body; `PairsError` for a word without `=`, a bad key or a repeated key."""
    try:
        words = shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise PairsError(f"the key=value body cannot be read: {exc}") from None
    data: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise PairsError(f"{word[:40]!r} is not a key=value pair")
        if not _KEY.match(key):
            raise PairsError(f"{key[:40]!r} is not a field name")
        name, _, sub = key.partition(".")
        if sub:
            target = data.setdefault(name, {})
            if not isinstance(target, dict):
                raise PairsError(f"{name} is given both as a value and as {key}")
            slot: dict[str, Any] = target
            field = sub
        else:
            if name in data and isinstance(data[name], dict):
                raise PairsError(f"{name} is given both as a value and with sub-fields")
            slot, field = data, name
        if field in slot:
            raise PairsError(f"{key} is given twice")
        slot[field] = value
    if not data:
        raise PairsError("the body holds no key=value pairs")
    return data
