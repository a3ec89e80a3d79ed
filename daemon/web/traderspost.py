"""TradersPost webhook bodies (its published JSON schema) -> the native alert payload, with their documented meaning.

A body is read as TradersPost's when it carries a field or value only TradersPost has (`orderType`,
`takeProfit`, `sentiment: bullish`, ...). Mapping (README, "TradersPost bodies"):

- `action` buy / sell / exit / cancel / add as they are (`add` adds `quantity` to the open position on its
  own side, and does nothing when there is none); `sentiment` flat, or a buy that must leave the position
  bearish-or-flat (and a sell bullish-or-flat), is an exit of the position (`quantity` exits that much).
- `price`, else `signalPrice` -> `price`; `orderType`, `limitPrice`, `stopPrice`, `timeInForce`, `time` as named;
  a limit or stop order without its price uses the signal price (TradersPost: "the current market price").
- `quantity` (default 1) with `quantityType`; `percent_of_position` exits that percent of the position.
- `takeProfit` `limitPrice` / `percent` / `amount` (a price distance) and `stopLoss` `stopPrice` / `percent` /
  `amount` -> `take_profit` / `stop_loss`; `extras.strategy` / `extras.comment` -> `strategy` / `comment`.
- `orderType: trailing_stop` with `trailAmount` / `trailPercent` -> `order_type: trailing_stop` with
  `trailing_stop` `amount` / `percent` (it only closes a position); `stopLoss` `type: trailing_stop` with
  `trailAmount` / `trailPercent` (or `amount` / `percent`) -> the entry's `trailing_stop`.
- `cancel: true` is refused with an exit or cancel action (they cancel already); `ignoreTradingWindows` is
  accepted (there are no trading windows here).

Refused with `NotSupported`: option fields and option tickers (never traded as the underlying),
stop-limit stop losses, `opg` / `cls`, `extendedHours: true`, `test: true`, and
`percent_of_position` with buy or sell (send exit).
"""

from __future__ import annotations

from typing import Any

KNOWN = frozenset({
    "ticker", "action", "sentiment", "price", "signalPrice", "orderType", "limitPrice", "stopPrice",
    "trailAmount", "trailPercent", "quantityType", "quantity", "takeProfit", "stopLoss", "timeInForce", "time",
    "ignoreTradingWindows", "cancel", "extendedHours", "extras",
})
OPTION_FIELDS = frozenset({"optionType", "intrinsicValue", "expiration", "strikeCount", "strikesAway",
                           "strikePrice"})
_ONLY_HERE = (KNOWN | OPTION_FIELDS) - {"ticker", "action", "sentiment", "price", "quantity", "time"}
_EXIT_ACTIONS = ("exit", "cancel")


class NotSupported(ValueError):
    """A valid TradersPost body asking for something traderd does not trade; nothing is guessed."""


def is_traderspost(data: dict[str, Any]) -> bool:
    return bool(_ONLY_HERE & data.keys()) or data.get("sentiment") in ("bullish", "bearish") or \
        data.get("action") == "add"


def to_native(data: dict[str, Any]) -> dict[str, Any]:
    """The native payload of a TradersPost body; `NotSupported` or `ValueError` say what cannot be taken."""
    options = sorted(OPTION_FIELDS & data.keys())
    if options:
        raise NotSupported(f"{', '.join(options)}: options are not supported (nothing is traded for them, not "
                           "even the underlying)")
    if data.get("test") is True:  # in the schema's example, not among its fields
        raise NotSupported("test signals are not supported: send them to a paper account instead")
    unknown = sorted(data.keys() - KNOWN - {"secret", "passphrase", "account", "id", "max_lag", "test"})
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: unknown field (check the spelling against the README)")
    ticker = data.get("ticker")
    if isinstance(ticker, str) and " " in ticker.strip():
        raise NotSupported(f"ticker {ticker[:40]!r} is an option symbol: options are not supported")
    action = data.get("action")
    if data.get("timeInForce") in ("opg", "cls"):
        raise NotSupported(f"timeInForce {data['timeInForce']} (at the open / close) is not supported")
    if data.get("extendedHours") is True:
        raise NotSupported("extendedHours orders are not supported")
    native: dict[str, Any] = {k: data[k] for k in ("secret", "passphrase", "account", "id", "max_lag", "ticker",
                                                   "time") if k in data}
    sentiment = data.get("sentiment")
    closing = sentiment == "flat" or (action, sentiment) in (("buy", "bearish"), ("sell", "bullish"))
    if action == "add" and sentiment is not None:
        raise NotSupported("action add with a sentiment is not supported: add follows the open position's side")
    native["action"] = "exit" if closing and action in ("buy", "sell") else action
    price = data.get("price", data.get("signalPrice"))
    _put(native, "price", price)
    order_type = data.get("orderType", "market")
    native["order_type"] = order_type
    trail = _one(data, "orderType trailing_stop", {"trailAmount": "amount", "trailPercent": "percent"})
    if trail is None and order_type == "trailing_stop":
        raise ValueError("orderType trailing_stop takes one of trailAmount, trailPercent")
    if trail is not None and order_type != "trailing_stop":
        raise ValueError("trailAmount and trailPercent go with orderType trailing_stop")
    if trail is not None and (data.get("takeProfit") or data.get("stopLoss")):
        raise NotSupported("orderType trailing_stop with takeProfit or stopLoss is not supported: the trailing stop "
                           "order is the exit")
    _put(native, "trailing_stop", trail)
    for ours, theirs, needed in (("limit_price", "limitPrice", ("limit", "stop_limit")),
                                 ("stop_price", "stopPrice", ("stop", "stop_limit"))):
        value = data.get(theirs)
        if value is None and order_type in needed:
            value = price  # TradersPost uses the market price; the signal's price is ours
        _put(native, ours, value)
    _put(native, "time_in_force", data.get("timeInForce"))
    kind = data.get("quantityType", "fixed_quantity")
    quantity = data.get("quantity")
    if kind == "percent_of_position":
        if native["action"] != "exit":
            raise NotSupported(f"quantityType percent_of_position with action {action} is not supported: send "
                               "action exit to close that percent of the position")
        native["percent_of_position"] = quantity if quantity is not None else 100
    elif native["action"] == "exit":
        if kind != "fixed_quantity":
            raise ValueError(f"quantityType {kind} sizes an entry, not an exit")
        _put(native, "quantity", quantity)
    elif native["action"] != "cancel":
        native["quantity"] = quantity if quantity is not None else 1
        if kind != "fixed_quantity":
            native["quantity_type"] = kind
    if data.get("cancel") is True and native["action"] not in _EXIT_ACTIONS:
        raise NotSupported("cancel: true (cancel open orders first) is not supported with an entry; send an "
                           "action cancel alert first")
    if native["action"] not in _EXIT_ACTIONS:
        _put(native, "take_profit", _take_profit(data.get("takeProfit")))
        stop_loss = data.get("stopLoss")
        if isinstance(stop_loss, dict) and _trails(stop_loss):
            native["trailing_stop"] = _one(stop_loss, "a trailing stopLoss", {
                "trailAmount": "amount", "trailPercent": "percent", "amount": "amount", "percent": "percent"})
            if native["trailing_stop"] is None or stop_loss.get("stopPrice") is not None:
                raise ValueError("a trailing_stop stopLoss takes one of trailAmount, trailPercent, amount, percent")
        else:
            _put(native, "stop_loss", _stop_loss(stop_loss))
    extras = data.get("extras") or {}
    if not isinstance(extras, dict):
        raise ValueError("extras must be an object")
    for key in ("strategy", "comment"):
        if isinstance(extras.get(key), str) and extras[key]:
            native[key] = extras[key][:200 if key == "comment" else 80]
    return native


def _put(native: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        native[key] = value


def _one(spec: dict[str, Any], what: str, fields: dict[str, str]) -> Any:
    given = [k for k in fields if spec.get(k) is not None]
    if not given:
        return None
    if len(given) > 1:
        raise ValueError(f"{what} takes one of {', '.join(fields)}; got {', '.join(given)}")
    key = given[0]
    return spec[key] if fields[key] == "price" else {fields[key]: spec[key]}


def _trails(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "trailing_stop" or spec.get("trailAmount") is not None or \
        spec.get("trailPercent") is not None


def _take_profit(spec: Any) -> Any:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("takeProfit must be an object")
    return _one(spec, "takeProfit", {"limitPrice": "price", "percent": "percent", "amount": "points"})


def _stop_loss(spec: Any) -> Any:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("stopLoss must be an object")
    kind = spec.get("type", "stop")
    if kind == "stop_limit" or spec.get("limitPrice") is not None:
        raise NotSupported("stop-limit stop losses are not supported: the stop loss is a stop (market) order")
    return _one(spec, "stopLoss", {"stopPrice": "price", "percent": "percent", "amount": "points"})
