"""TradingView alert payload -> validated `Intent`: field parsing, dedup key, staleness.

TradingView fills placeholders as text, so every number may arrive as a string, and an unfilled or
undefined placeholder arrives as "NaN" or an empty string: both are refused rather than guessed at.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time as _time
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from daemon.domain import Action, Intent, OrderType, TimeInForce

# Retries of a body without an `id` within this window are the same signal.
HASH_DEDUP_WINDOW = timedelta(minutes=5)
# How far in the future an alert's `time` may be before it is refused as a clock problem.
MAX_CLOCK_SKEW = timedelta(seconds=30)

_ACTIONS = {
    "buy": Action.BUY,
    "long": Action.BUY,
    "sell": Action.SELL,
    "short": Action.SELL,
    "exit": Action.EXIT,
    "close": Action.EXIT,
    "flat": Action.EXIT,
    "cancel": Action.CANCEL,
}
_ORDER_TYPES = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stop": OrderType.STOP,
                "stop_limit": OrderType.STOP_LIMIT, "stoplimit": OrderType.STOP_LIMIT,
                "stop-limit": OrderType.STOP_LIMIT}
_TICKER = re.compile(r"^[A-Z0-9._!/&-]{1,32}$")


class SignalError(Exception):
    """A signal that cannot be accepted; `code` goes in the JSON answer, `detail` says why in plain words."""

    def __init__(self, code: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


def _decimal(value: Any, field: str) -> Decimal | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a number")
    try:
        number = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"{field} must be a number, got {str(value)[:40]!r}") from None
    if not number.is_finite():
        raise ValueError(f"{field} must be a finite number (an unfilled TradingView placeholder?)")
    return number


def normalize_ticker(ticker: str) -> str:
    """`NASDAQ:AAPL` -> `AAPL`, `CME_MINI:ES1!` -> `ES1!`; upper case."""
    return ticker.strip().split(":")[-1].upper()


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (TradingView's {{time}}/{{timenow}}) or Unix seconds/milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        number = float(value)
        if number > 1e11:  # milliseconds
            number /= 1000
        return datetime.fromtimestamp(number, UTC)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"time must be ISO 8601 or Unix time, got {value[:40]!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError("time must be ISO 8601 or Unix time")


class TradingViewAlert(BaseModel):
    """The alert message body as documented in the README. Unknown fields are refused (typo safety)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    secret: str | None = Field(None, repr=False)
    ticker: str = Field(min_length=1, max_length=64, validation_alias="ticker")
    exchange: str | None = None
    action: str | None = None
    sentiment: str | None = None
    quantity: Decimal | None = None
    target_position: Decimal | None = None
    order_type: str = "market"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    price: Decimal | None = None
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    account: str | None = Field(None, max_length=40)
    accounts: list[str] | None = Field(None, min_length=1, max_length=50)  # fan out to these accounts
    strategy: str | None = Field(None, max_length=80)
    id: str | None = Field(None, max_length=128)
    time: datetime | None = None
    max_lag: float | None = Field(None, gt=0, le=86_400)
    comment: str | None = Field(None, max_length=200)
    interval: str | None = None
    market_position: str | None = None
    prev_market_position: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("the alert must be a JSON object")
        data = dict(data)
        for alias, name in (("symbol", "ticker"), ("qty", "quantity"), ("contracts", "quantity"),
                            ("position_size", "target_position"), ("type", "order_type"),
                            ("tif", "time_in_force"), ("passphrase", "secret")):
            if alias in data and name not in data:
                data[name] = data.pop(alias)
        for key in ("time_in_force", "order_type", "action", "sentiment"):
            if isinstance(data.get(key), str):
                data[key] = data[key].strip().lower()
        return data

    @field_validator("quantity", "target_position", "limit_price", "stop_price", "price", "take_profit",
                     "stop_loss", mode="before")
    @classmethod
    def _number(cls, value: Any, info: Any) -> Decimal | None:
        return _decimal(value, info.field_name)

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime | None:
        return parse_time(value)

    @field_validator("max_lag", mode="before")
    @classmethod
    def _lag(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @model_validator(mode="after")
    def _coherent(self) -> TradingViewAlert:
        for name in ("quantity", "limit_price", "stop_price", "price", "take_profit", "stop_loss"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be greater than zero")
        if self.action is not None and self.action not in _ACTIONS:
            raise ValueError(f"action must be one of buy, sell, exit, cancel; got {self.action!r}")
        if self.sentiment is not None and self.sentiment not in ("long", "short", "flat"):
            raise ValueError(f"sentiment must be long, short or flat; got {self.sentiment!r}")
        if self.order_type not in _ORDER_TYPES:
            raise ValueError(f"order_type must be market, limit, stop or stop_limit; got {self.order_type!r}")
        order_type = _ORDER_TYPES[self.order_type]
        if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and self.limit_price is None:
            raise ValueError(f"a {order_type.value} order needs limit_price")
        if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and self.stop_price is None:
            raise ValueError(f"a {order_type.value} order needs stop_price")
        if self.action is None and self.target_position is None and self.sentiment != "flat":
            raise ValueError("the alert needs an action (buy, sell, exit, cancel) or a target_position")
        action = self.resolved_action()
        if action in (Action.BUY, Action.SELL) and self.target_position is None and self.quantity is None:
            raise ValueError(f"a {action.value} alert needs quantity (or target_position)")
        if self.account and self.accounts:
            raise ValueError("name either account (an account or a group) or accounts (a list), not both")
        if not _TICKER.match(normalize_ticker(self.ticker)):
            raise ValueError(f"ticker {self.ticker!r} is not a valid symbol")
        return self

    def resolved_action(self) -> Action:
        """`sentiment: flat` means the strategy is now flat: close whatever the action says."""
        if self.action is None:
            if self.target_position is not None:
                return Action.BUY if self.target_position >= 0 else Action.SELL
            return Action.EXIT
        action = _ACTIONS[self.action]
        if self.sentiment == "flat" and self.target_position is None and action in (Action.BUY, Action.SELL):
            return Action.EXIT
        return action


def parse_body(body: bytes) -> dict[str, Any]:
    """JSON object from an application/json or text/plain body."""
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignalError("bad_json", f"the body is not valid JSON: {exc}", 400) from None
    if not isinstance(data, dict):
        raise SignalError("bad_json", "the body must be a JSON object", 400)
    return data


def validate_alert(data: dict[str, Any]) -> TradingViewAlert:
    try:
        return TradingViewAlert.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field (check the spelling against the README)"
            problems.append(f"{where}: {message}" if where else message)
        raise SignalError("invalid_field", "; ".join(problems), 422) from None


def new_signal_id() -> str:
    """Sortable, unique: milliseconds since the epoch plus randomness."""
    return f"sig_{int(_time.time() * 1000):013x}{secrets.token_hex(5)}"


def dedup_keys(alert: TradingViewAlert, data: dict[str, Any], now: datetime) -> list[str]:
    """Keys identifying this signal, the one to store first; the others are only looked up.

    With an `id`, the id is the key. Without one, a hash of the body in a time bucket: a resend of the
    same body within the window (current or previous bucket) is a duplicate, the same body later is new.
    """
    if alert.id:
        return [f"id:{alert.id}"]
    canonical = json.dumps({k: v for k, v in data.items() if k not in ("secret", "passphrase")},
                           sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    bucket = int(now.timestamp() // HASH_DEDUP_WINDOW.total_seconds())
    return [f"h:{digest}:{bucket}", f"h:{digest}:{bucket - 1}"]


def timing_problem(alert: TradingViewAlert, *, received_at: datetime, default_max_lag: float) -> SignalError | None:
    """Why the alert is too old to act on or dated in the future, or None when its time is fine."""
    if alert.time is None:
        return None
    if alert.time - received_at > MAX_CLOCK_SKEW:
        return SignalError("bad_time", f"the alert's time {alert.time.isoformat()} is in the future", 422)
    max_lag = _max_lag(alert, default_max_lag)
    lag = received_at - alert.time
    if lag > max_lag:
        return SignalError(
            "stale",
            f"the alert is {lag.total_seconds():.1f} s old, more than max_lag {max_lag.total_seconds():g} s",
            422,
        )
    return None


def to_intent(
    alert: TradingViewAlert,
    *,
    signal_id: str,
    dedup_key: str,
    account: str,
    received_at: datetime,
    default_max_lag: float,
) -> Intent:
    """The Intent of a validated alert; whether its time allows acting on it is `timing_problem`'s answer."""
    started = alert.time or received_at
    return Intent(
        signal_id=signal_id,
        dedup_key=dedup_key,
        account=account,
        source="tradingview",
        action=alert.resolved_action(),
        symbol=normalize_ticker(alert.ticker),
        quantity=alert.quantity,
        target_position=alert.target_position,
        order_type=_ORDER_TYPES[alert.order_type],
        limit_price=alert.limit_price,
        stop_price=alert.stop_price,
        price=alert.price,
        take_profit=alert.take_profit,
        stop_loss=alert.stop_loss,
        time_in_force=alert.time_in_force,
        strategy=alert.strategy,
        comment=alert.comment,
        received_at=received_at,
        signal_time=alert.time,
        expires_at=started + _max_lag(alert, default_max_lag),
    )


def _max_lag(alert: TradingViewAlert, default_max_lag: float) -> timedelta:
    return timedelta(seconds=alert.max_lag or default_max_lag)
