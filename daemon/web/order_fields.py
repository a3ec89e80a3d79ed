"""The alert fields that shape an order: exits (absolute or relative), sizing by `quantity_type`, partial exits.

`take_order_fields(data)` removes these fields from a native alert body and returns them validated, so the
alert model keeps its own fields and `to_intent` adds these with `OrderFields.intent_fields()`:

- `take_profit` / `stop_loss`: a price (`"110"`), or an object with one distance from the entry price:
  `{"ticks": 8}`, `{"points": 2}`, `{"percent": 1.5}`, `{"dollars": 100}` (P&L per contract or share),
  `{"dollars": 500, "per": "position"}` (P&L of the whole entry), or `{"price": 110}`; a take-profit also
  `{"r": 2}` (twice the stop's distance).
- `take_profit` as a list is a ladder: each level one of the above plus `quantity` (units) or
  `quantity_percent` (of the entry), the last level taking what is left; `break_even` (`true`, or
  `{"after": 1, "offset": {"ticks": 2}}`) moves the stop of what is left once that level has filled.
- `quantity_type`: what `quantity` counts (`fixed_quantity`, `dollar_amount`, `percent_of_equity`,
  `risk_dollar_amount`, `risk_percent`); the risk types need a `stop_loss`.
- `percent_of_position`: an exit of that percent of the position (0 < p <= 100).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from daemon.money import parse_decimal
from daemon.shapes import BreakEven, Ladder, OffsetUnit, PriceOffset, QuantityType, TakeProfitLevel

FIELDS = ("take_profit", "stop_loss", "quantity_type", "percent_of_position")
_LADDER_FIELDS = (*FIELDS, "break_even")
_UNITS = {u.value for u in OffsetUnit if u is not OffsetUnit.POSITION_DOLLARS}
_RISK = (QuantityType.RISK_DOLLAR_AMOUNT, QuantityType.RISK_PERCENT)
_ENTRY_ACTIONS = ("buy", "long", "sell", "short")
_QUANTITY = ("quantity", "qty", "contracts")


class OrderFields(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    take_profit: Decimal | PriceOffset | Ladder | None = None
    stop_loss: Decimal | PriceOffset | None = None
    quantity_type: QuantityType = QuantityType.FIXED_QUANTITY
    percent_of_position: Decimal | None = None

    def intent_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}


def positive(value: Any, field: str) -> Decimal:
    """A finite number above zero, from a JSON number or the text a TradingView placeholder became."""
    number = parse_decimal(value, field)  # NotANumber is a ValueError naming the field
    if number is None or number <= 0:
        raise ValueError(f"{field} must be greater than zero")
    return number


def exit_level(value: Any, field: str) -> Decimal | PriceOffset | None:
    """A take-profit or stop-loss as a price or a distance from the entry price."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return positive(value, field)  # an empty string is an unfilled placeholder: refused, not "no exit"
    given = {k: v for k, v in value.items() if k != "per"}
    per = value.get("per", "contract")
    if len(given) != 1:
        raise ValueError(f"{field} takes one of price, {', '.join(sorted(_UNITS))}; got {sorted(value) or 'nothing'}")
    [(key, amount)] = given.items()
    if key == "price":
        return positive(amount, f"{field}.price")
    if key not in _UNITS or (key == "r" and not field.startswith("take_profit")):
        units = sorted(u for u in _UNITS if u != "r" or field.startswith("take_profit"))
        raise ValueError(f"{field}.{key} is not a unit: use price, {', '.join(units)}")
    if per not in ("contract", "share", "position") or (per != "contract" and key != "dollars"):
        raise ValueError(f"{field}.per applies to dollars only, and is contract, share or position")
    unit = OffsetUnit.POSITION_DOLLARS if per == "position" else OffsetUnit(key)
    return PriceOffset(unit=unit, value=positive(amount, f"{field}.{key}"))


def ladder(levels: Any, break_even: Any) -> Ladder:
    """A take-profit ladder from a list of levels and the `break_even` field."""
    if not isinstance(levels, list) or not 1 <= len(levels) <= 10:
        raise ValueError("take_profit as a list takes 1 to 10 levels")
    parsed = []
    for number, level in enumerate(levels, start=1):
        field = f"take_profit[{number}]"
        if not isinstance(level, dict):
            raise ValueError(f"{field} must be an object such as {{\"r\": 1, \"quantity_percent\": 50}}")
        sizes = {k: v for k, v in level.items() if k in ("quantity", "quantity_percent") and v not in (None, "")}
        if len(sizes) > 1:
            raise ValueError(f"{field} takes quantity or quantity_percent, not both")
        price = exit_level({k: v for k, v in level.items() if k not in ("quantity", "quantity_percent")}, field)
        assert price is not None
        quantity = positive(sizes["quantity"], f"{field}.quantity") if "quantity" in sizes else None
        percent = positive(sizes["quantity_percent"], f"{field}.quantity_percent") if "quantity_percent" in sizes \
            else None
        if percent is not None and percent > 100:
            raise ValueError(f"{field}.quantity_percent must be at most 100")
        parsed.append(TakeProfitLevel(price=price, quantity=quantity, percent=percent))
    return Ladder(levels=tuple(parsed), break_even=_break_even(break_even, len(parsed)))


def _break_even(value: Any, levels: int) -> BreakEven | None:
    if value in (None, False, "", "false"):
        return None
    spec: dict[str, Any] = {} if value in (True, "true") else value if isinstance(value, dict) else {"": value}
    if set(spec) - {"after", "offset"}:
        raise ValueError("break_even takes true, or an object with after (a take_profit level) and offset")
    after = spec.get("after", 1)
    if isinstance(after, str):
        after = after.strip().lower().removeprefix("tp")
    try:
        number = int(after)
    except (TypeError, ValueError):
        raise ValueError(f"break_even.after must be a take_profit level number; got {after!r}") from None
    if not 1 <= number < levels:
        raise ValueError(f"break_even.after must be a level before the last (1 to {levels - 1}); got {number}")
    offset = exit_level(spec["offset"], "break_even.offset") if spec.get("offset") is not None else None
    if offset is not None and not isinstance(offset, PriceOffset):
        raise ValueError("break_even.offset is a distance such as {\"ticks\": 2}, not a price")
    if offset is not None and offset.unit is OffsetUnit.POSITION_DOLLARS:
        raise ValueError("break_even.offset in dollars is per contract or share, not per position")
    return BreakEven(after=number, offset=offset)


def take_order_fields(data: dict[str, Any]) -> dict[str, Any]:
    """`data` without the order-shape fields, which are parsed into `data["order_fields"]`."""
    if "order_fields" in data:
        raise ValueError("order_fields: unknown field (check the spelling against the README)")
    rest = {k: v for k, v in data.items() if k not in _LADDER_FIELDS}
    levels = data.get("take_profit")
    if data.get("break_even") not in (None, False, "", "false") and not isinstance(levels, list):
        raise ValueError("break_even goes with a take_profit ladder (a list of levels)")
    action = str(data.get("action") or "").strip().lower()
    kind = str(data.get("quantity_type") or "fixed_quantity").strip().lower()
    if kind not in {q.value for q in QuantityType}:
        raise ValueError(f"quantity_type must be one of {', '.join(q.value for q in QuantityType)}; got {kind!r}")
    fields = OrderFields(
        take_profit=ladder(levels, data.get("break_even")) if isinstance(levels, list) else
        exit_level(levels, "take_profit"),
        stop_loss=exit_level(data.get("stop_loss"), "stop_loss"),
        quantity_type=QuantityType(kind),
        percent_of_position=None if data.get("percent_of_position") in (None, "") else
        positive(data["percent_of_position"], "percent_of_position"),
    )
    if fields.percent_of_position is not None:
        if fields.percent_of_position > 100:
            raise ValueError("percent_of_position must be at most 100")
        if action not in ("exit", "close", "flat") or any(data.get(k) not in (None, "") for k in _QUANTITY):
            raise ValueError("percent_of_position goes with action exit, instead of quantity")
    if fields.quantity_type is not QuantityType.FIXED_QUANTITY:
        if action not in _ENTRY_ACTIONS or data.get("target_position") not in (None, ""):
            raise ValueError(f"quantity_type {kind} sizes the quantity of a buy or sell (not an exit or a "
                             "target_position)")
        if fields.quantity_type in _RISK and fields.stop_loss is None:
            raise ValueError(f"quantity_type {kind} sizes from the distance to the stop: it needs stop_loss")
    rest["order_fields"] = fields
    return rest
