"""The one list of tolerated deviations from the brokers' published contracts, each with its reason.

A contract violation is tolerated only if a `Deviation` here matches it (broker, direction, method, path
and a regex on the violation message). Anything else fails the test that produced it. Keep entries narrow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

Direction = Literal["request", "response", "any"]


@dataclass(frozen=True)
class Deviation:
    broker: str
    reason: str
    message: str  # regex searched in the violation message
    direction: Direction = "any"
    method: str = "*"
    path: str = "*"  # fnmatch pattern on the request path

    def matches(self, message: str, *, direction: str, method: str, path: str) -> bool:
        return (
            self.direction in ("any", direction)
            and self.method in ("*", method.upper())
            and fnmatchcase(path, self.path)
            and re.search(self.message, message) is not None
        )


ALPACA_SDK: tuple[Deviation, ...] = (
    Deviation(
        broker="alpaca",
        reason=(
            "alpaca-py serialises qty/limit_price/stop_price (and bracket legs) as JSON numbers where "
            "the spec says string; the live API accepts both (spec: 'Takes in string/number values'). "
            "Only the SDK test tolerates this: traderd's adapter must send strings."
        ),
        message=r"body: \$\.(qty|notional|limit_price|stop_price|trail_price|trail_percent"
        r"|take_profit\.limit_price|stop_loss\.(stop_price|limit_price)): [-0-9.e]+ is not of type 'string'",
        direction="request",
    ),
)

ALPACA_FAULTS: tuple[Deviation, ...] = (
    Deviation(
        broker="alpaca",
        reason=(
            "Fault injection: the live API answers 429 (rate limit) and 5xx (outages) on every endpoint, but "
            "the spec documents them only on a few operations."
        ),
        message=r"status (429|500|502|503|504) not documented",
        direction="response",
    ),
    Deviation(
        broker="alpaca",
        reason=(
            "The live API answers 401 on every endpoint when the key headers are wrong; the spec documents "
            "401 only as a shared component, not per operation."
        ),
        message=r"status 401 not documented",
        direction="response",
    ),
    Deviation(
        broker="alpaca",
        reason=(
            "The live API answers 404 {code, message} for unknown order ids / client order ids and 422 for "
            "a duplicate client_order_id; the spec leaves those statuses undocumented on these operations."
        ),
        message=r"status (404|422) not documented",
        direction="response",
        path="/v2/orders*",
    ),
    Deviation(
        broker="alpaca",
        reason="DELETE /v2/positions/{symbol} answers 404 when there is no position (live API behaviour).",
        message=r"status 404 not documented",
        direction="response",
        method="DELETE",
        path="/v2/positions/*",
    ),
)

ALPACA_SPEC_DEFECTS: tuple[Deviation, ...] = (
    Deviation(
        broker="alpaca",
        reason=(
            "Spec defect: activities are `oneOf: [TradingActivities, NonTradeActivities]` but neither has "
            "required properties, so every activity matches both and `oneOf` can never pass. An activity "
            "matching neither still fails ('is not valid under any of the given schemas')."
        ),
        message=r"is valid under each of .*(NonTradeActivities|TradingActivities)",
        direction="response",
        method="GET",
        path="/v2/account/activities*",
    ),
)

# Adapter tests: our own client must send exactly what the contract says; only stand-in-side
# behaviour of the live service that the spec does not document (or cannot express) is tolerated.
ALPACA: tuple[Deviation, ...] = ALPACA_FAULTS + ALPACA_SPEC_DEFECTS

PROJECTX: tuple[Deviation, ...] = (
    Deviation(
        broker="projectx",
        reason="The gateway answers 401 (empty body) to a missing, invalid or expired bearer token on every "
        "endpoint; the spec documents only 200.",
        message=r"status 401 not documented",
        direction="response",
    ),
    Deviation(
        broker="projectx",
        reason="The gateway answers 429 beyond 200 requests / 60 s and 5xx during outages (fault injection); "
        "the spec documents only 200.",
        message=r"status (429|500|502|503|504) not documented",
        direction="response",
    ),
)

TRADOVATE: tuple[Deviation, ...] = (
    Deviation(
        broker="tradovate",
        reason="The live API answers 401 (text body) to a missing or expired access token; the spec "
        "documents only 200.",
        message=r"status 401 not documented",
        direction="response",
    ),
    Deviation(
        broker="tradovate",
        reason="Fault injection: 429 and 5xx happen on the live API (outages, hard rate limit) but only 200 "
        "is documented.",
        message=r"status (429|500|502|503|504) not documented",
        direction="response",
    ),
    Deviation(
        broker="tradovate",
        reason="`/contract/find` and `/<entity>/item` answer 404 for an unknown name/id on the live API; "
        "the spec documents only 200.",
        message=r"status 404 not documented",
        direction="response",
        method="GET",
    ),
    Deviation(
        broker="tradovate",
        reason="Throttling: the live API answers any endpoint with HTTP 200 {p-ticket, p-time, p-captcha}, "
        "which is not the documented array body of list endpoints.",
        message=r"'p-ticket'.* is not of type 'array'",
        direction="response",
    ),
)

SCHWAB: tuple[Deviation, ...] = (
    Deviation(
        broker="schwab",
        reason="Spec vs client: the spec types the `GET /userPreference` answer as an array of UserPreference, "
        "but schwab-py (used against the live API) reads it as one object (`prefs['streamerInfo'][0]`); the "
        "stand-in answers the object and the adapter reads either.",
        message=r"is not of type 'array'",
        direction="response",
        method="GET",
        path="/trader/v1/userPreference",
    ),
    Deviation(
        broker="schwab",
        reason="Spec defect: `AccountsBaseInstrument` requires `name`, a property it does not even declare; "
        "Schwab's own order examples send `{symbol, assetType}` and its answers carry `description` instead.",
        message=r"instrument: 'name' is a required property",
    ),
    Deviation(
        broker="schwab",
        reason="Fault injection: 429 (throttling beyond 120 requests/min) and 502/504 (gateway) happen on the "
        "live API but the spec documents only 400/401/403/404/500/503.",
        message=r"status (429|502|504) not documented",
        direction="response",
    ),
)

BINANCE: tuple[Deviation, ...] = (
    Deviation(
        broker="binance",
        reason="Fault injection: the live API answers 429 (rate limit, Retry-After), 418 (IP ban) and 5xx "
        "(execution status unknown) on every endpoint; the spec documents only 200/400/401.",
        message=r"status (418|429|500|502|503|504) not documented",
        direction="response",
    ),
    Deviation(
        broker="binance",
        reason="Spec defect: exchangeInfo's `filters` items are given PRICE_FILTER's shape (minPrice, maxPrice, "
        "tickSize required), but LOT_SIZE, NOTIONAL and the other filters have their own fields (REST docs, "
        "'Filters').",
        message=r"\.filters\[\d+\]: '(minPrice|maxPrice|tickSize)' is a required property",
        direction="response",
        method="GET",
        path="/api/v3/exchangeInfo",
    ),
    Deviation(
        broker="binance",
        reason="Spec defect: POST /api/v3/order answers `oneOf` ACK / RESULT / FULL, but the three are nested "
        "supersets without additionalProperties: false, so every RESULT or FULL answer matches more than one.",
        message=r"is valid under each of",
        direction="response",
        method="POST",
        path="/api/v3/order",
    ),
    Deviation(
        broker="binance",
        reason="Spec defect: POST /api/v3/orderList/otoco marks `workingIcebergQty` required, while its own "
        "description ('can only be used if workingTimeInForce is GTC') and the REST docs make it optional, like "
        "the pending legs' `pending*IcebergQty`; the adapter sends no iceberg.",
        message=r"required query parameter 'workingIcebergQty' missing",
        direction="request",
        method="POST",
        path="/api/v3/orderList/otoco",
    ),
)

TASTYTRADE: tuple[Deviation, ...] = (
    Deviation(
        broker="tastytrade",
        reason="The harvested spec documents only the success status of each operation; the live API answers "
        "401 (token, User-Agent), 403, 404, 422 (preflight checks), 429 (no rate-limit headers) and 5xx with "
        "`{error: {code, message}}`.",
        message=r"status (400|401|403|404|422|429|500|502|503|504) not documented",
        direction="response",
    ),
    Deviation(
        broker="tastytrade",
        reason="Spec defect: `account_number` (and `customer_id`) path parameters are typed int32, but account "
        "numbers are alphanumeric (`5WT00001`) and the customer is addressed as `me`.",
        message=r"path parameter '(account_number|customer_id)': \$: '[^']+' is not of type 'integer'",
        direction="request",
    ),
    Deviation(
        broker="tastytrade",
        reason="Spec defect: every order body requires `stop-trigger`, `price-effect` and `value-effect`, which "
        "apply only to stop, priced and notional orders (a market order has none; the SDK omits them), and "
        "complex bodies require the PAIRS-only `ratio-price-comparator` / `ratio-price-threshold`.",
        message=r"'(stop-trigger|price-effect|value-effect|ratio-price-comparator|ratio-price-threshold)' is a "
        r"required property",
        direction="request",
    ),
    Deviation(
        broker="tastytrade",
        reason="Spec defect: `buying-power-effect` and `fee-calculation` are typed string, but the live API (and "
        "the SDK's `BuyingPowerEffect` / `FeeCalculation`) has objects there; positions' `quantity` is typed "
        "object where the live API sends a number (the SDK's Decimal).",
        message=r"\$(\.buying-power-effect|\.fee-calculation|\[\d+\]\.quantity): .* is not of type '(string|object)'",
        direction="response",
    ),
)

BY_BROKER: dict[str, tuple[Deviation, ...]] = {
    "alpaca": ALPACA,
    "alpaca-sdk": ALPACA + ALPACA_SDK,
    "projectx": PROJECTX,
    "tradovate": TRADOVATE,
    "schwab": SCHWAB,
    "binance": BINANCE,
    "tastytrade": TASTYTRADE,
}

# Only for the test of a worker that meets an answer no adapter can read.
ALPACA_MALFORMED: tuple[Deviation, ...] = (
    Deviation(
        broker="alpaca",
        reason=(
            "Fault injection: a 200 whose body is an error object instead of the list of orders (a broker "
            "misbehaving), so the adapter fails with a plain Python error rather than a broker error."
        ),
        message=r"body: \$: \{'code': 20000000, 'message': 'injected 200'\} is not of type 'array'",
        direction="response",
        method="GET",
        path="/v2/orders",
    ),
)
