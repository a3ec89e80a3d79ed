"""TradersPost bodies generated from its published schema, and key=value bodies, read with their meaning."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.domain import Action, Intent, OrderType
from daemon.shapes import OffsetUnit, PriceOffset, QuantityType
from daemon.web.keyvalue import PairsError, parse_pairs
from daemon.web.signals import SignalError, parse_body, to_intent, validate_alert

SPEC = Path(__file__).resolve().parents[2] / "shared" / "contracts" / "traderspost" / "webhook-spec.json"
_DOC = json.loads(SPEC.read_text())
BODY = _DOC["paths"]["/trading/webhook/{uuid}/{password}"]["post"]["requestBody"]["content"]["application/json"][
    "schema"]
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under the (OpenAPI 3.1 / JSON Schema) `schema`: the subset TradersPost's spec uses."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return from_schema(_DOC["components"]["schemas"][name])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        if not props:  # extras: free-form
            return st.dictionaries(st.sampled_from(["strategy", "comment", "exitType"]),
                                   st.text(max_size=12) | st.integers())
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries({k: from_schema(v) for k, v in props.items() if k in required},
                                     optional={k: from_schema(v) for k, v in props.items() if k not in required})
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.integers(-3600, 0).map(lambda s: (NOW.timestamp() + s)).map(
                lambda t: datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z"))
        return st.sampled_from(["AAPL", "MSFT", "ES1!", "MNQU2025", "SPY 250624C596", "BTCUSD", ""]) \
            if schema is BODY["properties"]["ticker"] else st.text(max_size=12)
    if kind == "number":
        return st.floats(-1000, 100_000, allow_nan=False, allow_infinity=False) | st.integers(-5, 500)
    if kind == "integer":
        return st.integers(-5, 500)
    if kind == "boolean":
        return st.booleans()
    raise AssertionError(f"schema construct not covered: {schema}")


# Refusals a schema-valid body may meet, each for a documented reason.
REFUSALS = (
    "not supported", "must be greater than zero", "is not a valid symbol", "needs limit_price", "needs stop_price",
    "takes one of", "at most 100", "sizes from the distance to the stop", "cannot read ticker", "ticker:",
    "is in the future", "sizes an entry, not an exit", "greater than zero",
    # A body with no TradersPost-only field is read as a native alert, which never guesses a quantity
    # (TradersPost would default it to 1); the README says so.
    "needs quantity",
    # The boundary's documented bounds on every number (README, bad-input answers): a schema-valid 2e-179 or
    # 1e300 is no price or size anyone trades.
    "is out of range", "significant digits", "max_quantity", "max_price",
    # A trail is a distance or a percent below 100, on a trailing stop order or a trailing stop loss.
    "below 100", "go with orderType trailing_stop",
)


def intent_of(data: dict[str, Any]) -> Intent:
    alert = validate_alert(parse_body(json.dumps(data).encode()))
    return to_intent(alert, signal_id="sig_1", dedup_key="k", account="a", received_at=NOW, default_max_lag=86_400)


def number(value: Any) -> Decimal:
    return Decimal(str(value))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(from_schema(BODY))
def test_every_schema_valid_body_is_read_with_its_meaning_or_refused_clearly(body: dict[str, Any]) -> None:
    try:
        intent = intent_of(body)
    except SignalError as exc:
        assert exc.code in ("not_supported", "invalid_field"), exc.detail
        assert any(reason in exc.detail for reason in REFUSALS), exc.detail
        if any(k in body for k in ("optionType", "strikePrice", "expiration", "strikeCount", "strikesAway",
                                   "intrinsicValue")):
            assert exc.code == "not_supported" and "options are not supported" in exc.detail
        return
    assert not {"optionType", "strikePrice", "expiration"} & body.keys() and " " not in body["ticker"]
    sentiment, action = body.get("sentiment"), body["action"]
    closes = sentiment == "flat" or (action, sentiment) in (("buy", "bearish"), ("sell", "bullish"))
    if action == "cancel":
        assert intent.action is Action.CANCEL
    elif action == "exit" or closes or body.get("quantityType") == "percent_of_position":
        assert intent.action is Action.EXIT
        assert intent.take_profit is None and intent.stop_loss is None
    else:
        assert intent.action is {"buy": Action.BUY, "sell": Action.SELL, "add": Action.ADD}[action]
        assert intent.quantity == number(body.get("quantity", 1))
        assert intent.quantity_type is QuantityType(body.get("quantityType", "fixed_quantity"))
        tp = body.get("takeProfit") or {}
        if tp.get("percent") is not None:
            assert intent.take_profit == PriceOffset(unit=OffsetUnit.PERCENT, value=number(tp["percent"]))
        if tp.get("amount") is not None:
            assert intent.take_profit == PriceOffset(unit=OffsetUnit.POINTS, value=number(tp["amount"]))
        if tp.get("limitPrice") is not None:
            assert intent.take_profit == number(tp["limitPrice"])
        sl = body.get("stopLoss") or {}
        if sl.get("type") == "trailing_stop" or sl.get("trailAmount") is not None or \
                sl.get("trailPercent") is not None:
            assert intent.stop_loss is None  # the stop loss trails instead
            key = next(k for k in ("trailAmount", "trailPercent", "amount", "percent") if sl.get(k) is not None)
            unit = OffsetUnit.PERCENT if key.lower().endswith("percent") else OffsetUnit.POINTS
            assert intent.trailing_stop == PriceOffset(unit=unit, value=number(sl[key]))
            sl = {}
        if sl.get("stopPrice") is not None:
            assert intent.stop_loss == number(sl["stopPrice"])
        if sl.get("percent") is not None:
            assert intent.stop_loss == PriceOffset(unit=OffsetUnit.PERCENT, value=number(sl["percent"]))
    assert intent.order_type is OrderType(body.get("orderType", "market"))
    if intent.order_type is OrderType.TRAILING_STOP:
        kind = "trailAmount" if body.get("trailAmount") is not None else "trailPercent"
        unit = OffsetUnit.POINTS if kind == "trailAmount" else OffsetUnit.PERCENT
        assert intent.trailing_stop == PriceOffset(unit=unit, value=number(body[kind]))
    if body.get("limitPrice") is not None and intent.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        assert intent.limit_price == number(body["limitPrice"])
    price = body.get("price", body.get("signalPrice"))
    assert intent.price == (None if price is None else number(price))
    if "time" in body:
        assert intent.signal_time == datetime.fromisoformat(body["time"].replace("Z", "+00:00"))
    if body.get("timeInForce"):
        assert intent.time_in_force.value == body["timeInForce"]


def test_the_schemas_own_example() -> None:
    example = {k: v for k, v in BODY["example"].items() if k != "test"}
    intent = intent_of(example)
    assert (intent.action, intent.symbol, intent.quantity, intent.price) == (Action.BUY, "AAPL", 10, Decimal("191.25"))
    assert intent.take_profit == PriceOffset(unit=OffsetUnit.PERCENT, value=Decimal(10))
    assert intent.stop_loss == PriceOffset(unit=OffsetUnit.PERCENT, value=Decimal(5))
    assert intent.strategy == "EMA_Crossover" and intent.comment == "Breakout entry"
    with pytest.raises(SignalError, match="test signals are not supported"):
        intent_of(BODY["example"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ticker=ES1! action=buy quantity=2 stop_loss.ticks=12",
         {"ticker": "ES1!", "action": "buy", "quantity": "2", "stop_loss": {"ticks": "12"}}),
        ("ticker=AAPL\naction=sell\nquantity=5\ncomment=\"breakout entry\"\n",
         {"ticker": "AAPL", "action": "sell", "quantity": "5", "comment": "breakout entry"}),
        ("ticker=AAPL action=buy take_profit.dollars=500 take_profit.per=position",
         {"ticker": "AAPL", "action": "buy", "take_profit": {"dollars": "500", "per": "position"}}),
    ],
)
def test_key_value_bodies(text: str, expected: dict[str, Any]) -> None:
    assert parse_pairs(text) == expected
    assert parse_body(text.encode()) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ticker=AAPL action buy", "'action' is not a key=value pair"),
        ("ticker=AAPL ticker=MSFT", "ticker is given twice"),
        ("stop_loss=5 stop_loss.ticks=3", "given both"),
        ("ticker=AAPL comment=\"open", "cannot be read"),
        ("a.b.c=1", "not a field name"),
    ],
)
def test_bad_key_value_bodies(text: str, problem: str) -> None:
    with pytest.raises(PairsError, match=problem):
        parse_pairs(text)
    with pytest.raises(SignalError) as err:
        parse_body(text.encode())
    assert err.value.code == "bad_pairs" and err.value.status == 400
