"""The alert fields that shape an order: exits (fixed, relative, trailing), sizing by `quantity_type`, partial exits.

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
- `trailing_stop`: a stop that follows the best price by `{"amount": 2}` (= `points`, a price distance),
  `{"ticks": 8}`, `{"percent": 1.5}` or `{"dollars": 50}` (per contract). On a buy or sell it is the entry's
  stop-loss (instead of `stop_loss`); with `order_type: trailing_stop` the order itself is a trailing stop,
  which only closes a position.
- `take_profit` / `stop_loss` `{"atr": 2, "period": 14, "timeframe": "5m"}`: that multiple of the Average
  True Range of the account's recent bars (`period` default 14, `timeframe` default 5m).
- `exit_after` (`"45m"`, `"2h"`, `"90s"`, `"3 bars"`, `"3 bars of 15m"`) or `exit_at` (`"15:55"`, exchange
  time): an entry's position is closed at market then; `"N bars"` counts bars of the ATR exit's timeframe.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from daemon.money import parse_decimal
from daemon.shapes import (
    AtrOffset,
    BreakEven,
    Ladder,
    OffsetUnit,
    PriceOffset,
    QuantityType,
    TakeProfitLevel,
    TimeExit,
    Timeframe,
    parse_time_exit,
)

FIELDS = ("take_profit", "stop_loss", "trailing_stop", "quantity_type", "percent_of_position", "exit_after",
          "exit_at")
_LADDER_FIELDS = (*FIELDS, "break_even")

_TRAIL_UNITS = {"amount": OffsetUnit.POINTS, "points": OffsetUnit.POINTS, "ticks": OffsetUnit.TICKS,
                "percent": OffsetUnit.PERCENT, "dollars": OffsetUnit.DOLLARS}
_UNITS = {u.value for u in OffsetUnit if u is not OffsetUnit.POSITION_DOLLARS}
_RISK = (QuantityType.RISK_DOLLAR_AMOUNT, QuantityType.RISK_PERCENT)
_ENTRY_ACTIONS = ("buy", "long", "sell", "short", "add")  # add buys or sells on the open position's side
_QUANTITY = ("quantity", "qty", "contracts")


class OrderFields(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    take_profit: Decimal | PriceOffset | AtrOffset | Ladder | None = None
    stop_loss: Decimal | PriceOffset | AtrOffset | None = None
    trailing_stop: PriceOffset | None = None
    quantity_type: QuantityType = QuantityType.FIXED_QUANTITY
    percent_of_position: Decimal | None = None
    time_exit: TimeExit | None = None

    def intent_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("take_profit", "stop_loss", "trailing_stop", "quantity_type",
                                                       "percent_of_position", "time_exit")}


def positive(value: Any, field: str) -> Decimal:
    """A finite number above zero, from a JSON number or the text a TradingView placeholder became."""
    number = parse_decimal(value, field)  # NotANumber is a ValueError naming the field
    if number is None or number <= 0:
        raise ValueError(f"{field} must be greater than zero")
    return number


def exit_level(value: Any, field: str) -> Decimal | PriceOffset | AtrOffset | None:
    """A take-profit or stop-loss as a price or a distance from the entry price."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return positive(value, field)  # an empty string is an unfilled placeholder: refused, not "no exit"
    if "atr" in value:
        return atr_level(value, field)
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


def trail_level(value: Any) -> PriceOffset | None:
    """A trailing stop's distance from the best price: one of amount, points, ticks, percent, dollars."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"trailing_stop takes one of {', '.join(_TRAIL_UNITS)}, e.g. {{\"percent\": 1.5}}")
    [(key, amount)] = value.items()
    if key not in _TRAIL_UNITS:
        raise ValueError(f"trailing_stop.{key} is not a unit: use {', '.join(_TRAIL_UNITS)}")
    number = positive(amount, f"trailing_stop.{key}")
    if key == "percent" and number >= 100:
        raise ValueError("trailing_stop.percent must be below 100")
    return PriceOffset(unit=_TRAIL_UNITS[key], value=number)


def _check_trailing(fields: OrderFields, data: dict[str, Any], action: str) -> None:
    order_type = str(data.get("order_type") or data.get("type") or "").strip().lower()
    if order_type == "trailing_stop" and fields.trailing_stop is None:
        raise ValueError('order_type trailing_stop needs trailing_stop, e.g. {"amount": 2} or {"percent": 1}')
    if fields.trailing_stop is None:
        return
    if action == "cancel":
        raise ValueError("trailing_stop is not supported with action cancel")
    if fields.stop_loss is not None:
        raise ValueError("trailing_stop is the stop-loss that trails: send stop_loss or trailing_stop, not both")
    if action in ("exit", "close", "flat") and order_type != "trailing_stop":
        raise ValueError("trailing_stop on an exit needs order_type trailing_stop (the exit is then a trailing "
                         "stop order)")


def atr_level(value: dict[str, Any], field: str) -> AtrOffset:
    """`{"atr": k, "period": n, "timeframe": "5m"}`."""
    extra = sorted(set(value) - {"atr", "period", "timeframe"})
    if extra:
        raise ValueError(f"{field} with atr takes atr, period and timeframe; got {', '.join(extra)}")
    period = value.get("period", 14)
    if isinstance(period, bool) or not isinstance(period, int | str) or not str(period).strip().isdigit():
        raise ValueError(f"{field}.period must be a whole number of bars")
    timeframe = str(value.get("timeframe", "5m")).strip().lower()
    if timeframe not in get_args(Timeframe):
        raise ValueError(f"{field}.timeframe must be one of {', '.join(get_args(Timeframe))}; got {timeframe!r}")
    try:
        return AtrOffset(atr=positive(value["atr"], f"{field}.atr"), period=int(period), timeframe=timeframe)
    except ValidationError as exc:
        raise ValueError(f"{field}.period must be between 1 and 500 bars") from exc


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
    take_profit = ladder(levels, data.get("break_even")) if isinstance(levels, list) else exit_level(
        levels, "take_profit")
    stop_loss = exit_level(data.get("stop_loss"), "stop_loss")
    atr_frame = next((x.timeframe for x in (stop_loss, take_profit) if isinstance(x, AtrOffset)), None)
    fields = OrderFields(
        take_profit=take_profit, stop_loss=stop_loss, trailing_stop=trail_level(data.get("trailing_stop")),
        time_exit=parse_time_exit(data.get("exit_after"), data.get("exit_at"), atr_frame),
        quantity_type=QuantityType(kind),
        percent_of_position=None if data.get("percent_of_position") in (None, "") else
        positive(data["percent_of_position"], "percent_of_position"),
    )
    _check_trailing(fields, data, action)
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
    if fields.time_exit is not None and (action not in _ENTRY_ACTIONS or data.get("target_position") not in
                                         (None, "")):
        raise ValueError("exit_after / exit_at go with an entry (buy or sell), not an exit or a target_position")
    rest["order_fields"] = fields
    return rest
