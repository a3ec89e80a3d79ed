"""Tradovate wire models (validated at the boundary), status/type maps, point values and the order journal.

The models read only the fields the adapter uses and ignore the rest, so a broker adding fields breaks
nothing; a missing or mistyped field we rely on is a `BrokerError` naming the call. `OrderJournal` is the
adapter's memory of the client order ids it has sent (Tradovate does not deduplicate `clOrdId`): an
append-only JSON-lines file, fsynced before each placement, so a restart still knows what it may have sent.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from brokers.base import BrokerError
from daemon.domain import OrderStatus, OrderType, TimeInForce

log = logging.getLogger(__name__)

# Point value (USD per index point) by futures root. TODO(symbols): belongs in brokers/symbols.py, next to
# the contract calendar, so every futures adapter and the risk rules share one table.
MULTIPLIERS: dict[str, Decimal] = {
    "ES": Decimal(50), "MES": Decimal(5), "NQ": Decimal(20), "MNQ": Decimal(2),
    "RTY": Decimal(50), "M2K": Decimal(5), "YM": Decimal(5), "MYM": Decimal("0.5"), "EMD": Decimal(100),
}

_CONTRACT = re.compile(r"^(?P<root>[A-Z][A-Z0-9]*?)[FGHJKMNQUVXZ]\d{1,2}$")
_CONTINUOUS = re.compile(r"^(?P<root>[A-Z][A-Z0-9]*?)[1-9]!$")


def root_of(symbol: str) -> str | None:
    """Futures root of `ES1!`, `CME_MINI:ES1!` or `ESZ6`; None if the symbol is neither form."""
    symbol = symbol.rpartition(":")[2].strip().upper()
    match = _CONTINUOUS.match(symbol) or _CONTRACT.match(symbol)
    return match["root"] if match else None


STATUS = {
    "Filled": OrderStatus.FILLED,
    "Completed": OrderStatus.FILLED,
    "Canceled": OrderStatus.CANCELLED,
    "Expired": OrderStatus.EXPIRED,
    "Rejected": OrderStatus.REJECTED,
}  # Working, Suspended (bracket legs waiting for their entry), Pending*, Unknown: still open
ORDER_TYPE_OUT = {
    OrderType.MARKET: "Market", OrderType.LIMIT: "Limit", OrderType.STOP: "Stop", OrderType.STOP_LIMIT: "StopLimit",
}
ORDER_TYPE_IN = {v: k for k, v in ORDER_TYPE_OUT.items()} | {"MIT": OrderType.LIMIT, "TrailingStop": OrderType.STOP}
TIF_OUT = {TimeInForce.DAY: "Day", TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}
TIF_IN = {v: k for k, v in TIF_OUT.items()}


def parse_time(value: str | None) -> datetime | None:
    """Tradovate timestamps (`2026-01-02T14:30:00.000Z`) as aware UTC datetimes."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def wire_number(value: Decimal) -> int | float:
    """A Decimal price/quantity as a JSON number (the API has no string decimals); ints stay ints."""
    return int(value) if value == value.to_integral_value() else float(value)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AccessToken(_Wire):
    accessToken: str
    expirationTime: str


class TvAccount(_Wire):
    id: int
    name: str
    active: bool = True


class TvContract(_Wire):
    id: int
    name: str


class TvOrder(_Wire):
    id: int
    accountId: int
    contractId: int
    timestamp: str
    action: str
    ordStatus: str | None = None
    parentId: int | None = None
    ocoId: int | None = None


class TvOrderVersion(_Wire):
    id: int
    orderId: int
    orderQty: int
    orderType: str
    price: Decimal | None = None
    stopPrice: Decimal | None = None
    timeInForce: str | None = None


class TvCommand(_Wire):
    id: int
    orderId: int
    clOrdId: str | None = None
    commandType: str


class TvFill(_Wire):
    id: int
    orderId: int
    contractId: int
    timestamp: str
    action: str
    qty: int
    price: Decimal
    active: bool = True


class TvPosition(_Wire):
    id: int
    accountId: int
    contractId: int
    netPos: int
    netPrice: Decimal | None = None


class TvCashSnapshot(_Wire):
    errorText: str | None = None
    totalCashValue: Decimal = Decimal(0)
    netLiq: Decimal | None = None
    openPnL: Decimal = Decimal(0)
    realizedPnL: Decimal = Decimal(0)
    totalPnL: Decimal | None = None


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BrokerError(f"{what}: unexpected answer from Tradovate ({exc.error_count()} field errors: "
                          f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']})") from None


def parse_list(model: type[M], data: Any, what: str) -> list[M]:
    try:
        return TypeAdapter(list[model]).validate_python(data or [])  # type: ignore[valid-type]
    except ValidationError as exc:
        raise BrokerError(f"{what}: unexpected answer from Tradovate ({exc.error_count()} field errors: "
                          f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']})") from None


def failure_of(data: Any) -> str | None:
    """The broker's reason when an HTTP 200 answer is a business failure; None when it succeeded."""
    if not isinstance(data, dict):
        return None
    reason = data.get("failureReason")
    if reason and reason != "Success":
        text = data.get("failureText") or ""
        return f"{reason}: {text}" if text else str(reason)
    if data.get("errorText"):
        return str(data["errorText"])
    return None


class OrderJournal:
    """Client order ids sent to Tradovate, with the broker order id once known; survives restarts.

    One JSON object per line: `{"cid", "state": "sending"|"placed"|"refused", "symbol", "contract",
    "order_id"?, "at"}`; later lines for the same id update earlier ones. Each line is flushed and fsynced
    before the request it describes is sent.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    self.entries.setdefault(str(entry["cid"]), {}).update(entry)
                except (ValueError, KeyError, TypeError):  # a torn last line after a crash
                    log.warning("tradovate journal %s: unreadable line %d ignored", self.path, number)

    def get(self, cid: str) -> dict[str, Any] | None:
        return self.entries.get(cid)

    def record(self, cid: str, state: str, **fields: Any) -> None:
        entry = {"cid": cid, "state": state, **fields, "at": datetime.now(UTC).isoformat()}
        self.entries.setdefault(cid, {}).update(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def aliases(self) -> dict[str, str]:
        """Contract name -> the ticker the engine last used for it (`ESZ6` -> `ES1!`)."""
        return {e["contract"]: e["symbol"] for e in self.entries.values() if e.get("contract") and e.get("symbol")}
