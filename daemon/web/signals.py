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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from daemon.domain import Action, Intent, OrderType, TimeInForce
from daemon.intake import normalize_ticker
from daemon.money import parse_decimal, plain
from daemon.web import keyvalue, traderspost
from daemon.web.order_fields import OrderFields, take_order_fields

# Retries of a body without an `id` within this window are the same signal.
HASH_DEDUP_WINDOW = timedelta(minutes=5)
# How far in the future an alert's `time` may be before it is refused as a clock problem.
MAX_CLOCK_SKEW = timedelta(seconds=30)

# No alert field nests; deeper bodies are refused as malformed rather than validated field by field.
MAX_JSON_DEPTH = 32

_ACTIONS = {
    "buy": Action.BUY,
    "long": Action.BUY,
    "sell": Action.SELL,
    "short": Action.SELL,
    "exit": Action.EXIT,
    "close": Action.EXIT,
    "flat": Action.EXIT,
    "cancel": Action.CANCEL,
    "add": Action.ADD,
}
_ORDER_TYPES = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stop": OrderType.STOP,
                "stop_limit": OrderType.STOP_LIMIT, "stoplimit": OrderType.STOP_LIMIT,
                "stop-limit": OrderType.STOP_LIMIT, "trailing_stop": OrderType.TRAILING_STOP}
# An optional exchange prefix, then a symbol starting with a letter or digit; one "/" only between two
# parts (BTC/USD). No spaces, no "..": a ticker becomes part of order ids and broker URLs.
_TICKER = re.compile(
    r"(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,31}:)?"
    r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._!&-]{0,31}(?:/[A-Za-z0-9][A-Za-z0-9._!&-]{0,15})?"
)
_UNIX_TIME = re.compile(r"[0-9]+(?:\.[0-9]*)?")
_MILLISECONDS_FROM = Decimal(100_000_000_000)  # Unix times above this are milliseconds (year 5138 in seconds)
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_QUANTITIES = ("quantity", "target_position")
_PRICES = ("limit_price", "stop_price", "price", "take_profit", "stop_loss")
# A refusal lists at most this many problems: a body with thousands of unknown fields gets a short answer.
_MAX_PROBLEMS = 5


class SignalError(Exception):
    """A signal that cannot be accepted; `code` goes in the JSON answer, `detail` says why in plain words."""

    def __init__(self, code: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class AlertLimits:
    """What "absurd" means for an alert's numbers: larger quantities or prices are refused at the boundary."""

    max_quantity: Decimal = Decimal(1_000_000)
    max_price: Decimal = Decimal(1_000_000_000)


_DEFAULT_LIMITS = AlertLimits()


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (TradingView's {{time}}/{{timenow}}) or Unix seconds/milliseconds, between 2000 and 2100."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("time must be ISO 8601 or Unix time, not true/false")
    if isinstance(value, int | float | Decimal) or (isinstance(value, str) and _UNIX_TIME.fullmatch(value.strip())):
        number = parse_decimal(value, "time")
        assert number is not None
        if number > _MILLISECONDS_FROM:
            number /= 1000
        if not _EARLIEST.timestamp() <= number <= _LATEST.timestamp():
            raise ValueError(f"time {plain(number)} is not a Unix time between {_EARLIEST.year} and {_LATEST.year}")
        return datetime.fromtimestamp(float(number), UTC)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            if len(text) > 40:
                raise ValueError
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"time must be ISO 8601 or Unix time, got {value[:40]!r}") from None
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if not _EARLIEST <= parsed <= _LATEST:
            raise ValueError(f"time {value[:40]!r} is not between {_EARLIEST.year} and {_LATEST.year}")
        return parsed
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
    order_fields: OrderFields = Field(default_factory=OrderFields)  # exits, sizing: web/order_fields.py

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("the alert must be a JSON object")
        data = take_order_fields(dict(data))
        for alias, name in (("symbol", "ticker"), ("qty", "quantity"), ("contracts", "quantity"),
                            ("position_size", "target_position"), ("type", "order_type"),
                            ("tif", "time_in_force"), ("passphrase", "secret")):
            if alias in data and name not in data:
                data[name] = data.pop(alias)
        for key in ("time_in_force", "order_type", "action", "sentiment"):
            if isinstance(data.get(key), str):
                data[key] = data[key].strip().lower()
        return data

    @field_validator(*_QUANTITIES, *_PRICES, mode="before")
    @classmethod
    def _number(cls, value: Any, info: ValidationInfo) -> Decimal | None:
        number = parse_decimal(value, str(info.field_name))
        limits = info.context.get("limits", _DEFAULT_LIMITS) if isinstance(info.context, dict) else _DEFAULT_LIMITS
        bound, option = ((limits.max_quantity, "max_quantity") if info.field_name in _QUANTITIES
                         else (limits.max_price, "max_price"))
        if number is not None and abs(number) > bound:
            raise ValueError(f"{info.field_name} {plain(number)} is more than webhook.{option} ({plain(bound)})")
        return number

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime | None:
        return parse_time(value)

    @field_validator("max_lag", mode="before")
    @classmethod
    def _lag(cls, value: Any) -> float | None:
        number = parse_decimal(value, "max_lag")
        return None if number is None else float(number)

    @model_validator(mode="after")
    def _coherent(self) -> TradingViewAlert:
        for name in ("quantity", "limit_price", "stop_price", "price", "take_profit", "stop_loss"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be greater than zero")
        if self.action is not None and self.action not in _ACTIONS:
            raise ValueError(f"action must be one of buy, sell, exit, cancel, add; got {self.action!r}")
        if self.sentiment is not None and self.sentiment not in ("long", "short", "flat"):
            raise ValueError(f"sentiment must be long, short or flat; got {self.sentiment!r}")
        if self.order_type not in _ORDER_TYPES:
            raise ValueError(f"order_type must be market, limit, stop, stop_limit or trailing_stop; got "
                             f"{self.order_type!r}")
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
        if action is Action.ADD and (self.quantity is None or self.target_position is not None):
            raise ValueError("an add alert needs quantity (what to add to the position), not target_position")
        if self.account and self.accounts:
            raise ValueError("name either account (an account or a group) or accounts (a list), not both")
        if not _TICKER.fullmatch(self.ticker.strip()):
            raise ValueError(f"ticker {self.ticker[:40]!r} is not a valid symbol")
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


def _nests_deeper(data: dict[str, Any], limit: int) -> bool:
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def parse_body(body: bytes) -> dict[str, Any]:
    """The native payload of an application/json or text/plain body: a JSON object (TradersPost's schema is
    read as the native fields, `web/traderspost.py`) or key=value pairs (`web/keyvalue.py`)."""
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise SignalError("bad_json", "the body is not UTF-8 text", 400) from None
    except json.JSONDecodeError as exc:
        text = body.decode("utf-8-sig")
        if not keyvalue.looks_like_pairs(text):
            raise SignalError("bad_json", f"the body is not valid JSON: {exc}", 400) from None
        try:
            data = keyvalue.parse_pairs(text)
        except keyvalue.PairsError as err:
            raise SignalError("bad_pairs", str(err), 400) from None
    except RecursionError:
        raise SignalError("bad_json", "the body nests JSON too deeply", 400) from None
    except ValueError:  # an integer past Python's digit limit for conversion
        raise SignalError("bad_json", "the body holds a number too long to read", 400) from None
    if not isinstance(data, dict):
        raise SignalError("bad_json", "the body must be a JSON object", 400)
    if _nests_deeper(data, MAX_JSON_DEPTH):
        # Python's parser stops at its recursion limit, which other code may raise: the limit is ours.
        raise SignalError("bad_json", f"the body nests JSON more than {MAX_JSON_DEPTH} levels deep", 400)
    if _LONE_SURROGATE.search(body) and not _encodable(data):
        # "\ud800" is valid JSON but no valid text: it could not be stored or compared.
        raise SignalError("bad_json", "the body holds an unpaired UTF-16 surrogate escape", 400)
    if not traderspost.is_traderspost(data):
        return data
    try:
        return traderspost.to_native(data)
    except traderspost.NotSupported as err:
        raise SignalError("not_supported", str(err), 422) from None
    except ValueError as err:
        raise SignalError("invalid_field", f"TradersPost body: {err}", 422) from None


_LONE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodable(data: dict[str, Any]) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except (UnicodeEncodeError, ValueError, RecursionError):
        return False
    return True


def validate_alert(data: dict[str, Any], limits: AlertLimits = _DEFAULT_LIMITS) -> TradingViewAlert:
    """The alert, or SignalError naming each bad field (`bad_time` when the problem is the `time` field)."""
    try:
        return TradingViewAlert.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        problems, code = [], "invalid_field"
        for err in exc.errors(include_url=False, include_input=False, include_context=False)[:_MAX_PROBLEMS]:
            where = ".".join(str(p) for p in err["loc"])[:40]
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field (check the spelling against the README)"
            if err["loc"] == ("time",):
                code = "bad_time"
            problems.append(f"{where}: {message}" if where else message)
        if exc.error_count() > _MAX_PROBLEMS:
            problems.append(f"and {exc.error_count() - _MAX_PROBLEMS} more")
        raise SignalError(code, "; ".join(problems), 422) from None


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
        time_in_force=alert.time_in_force,
        **alert.order_fields.intent_fields(),
        strategy=alert.strategy,
        comment=alert.comment,
        received_at=received_at,
        signal_time=alert.time,
        expires_at=started + _max_lag(alert, default_max_lag),
    )


def _max_lag(alert: TradingViewAlert, default_max_lag: float) -> timedelta:
    return timedelta(seconds=alert.max_lag or default_max_lag)
