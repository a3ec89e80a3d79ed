"""The trade journal: recorded fills as executions labelled open/close, round trips, and their CSV/JSON forms.

Fills are replayed oldest first per (account, symbol) from the account's first fill, so each is labelled
with the position it met: B (buy to open or add), S (sell to close), SS (sell short), BC (buy to cover).
A fill that crosses zero is two executions (close, then open the rest), its commission split by quantity.
`fills` CSV is TradeNote's generic template (one execution per line); `trades` are round trips from flat to
flat with entry and exit averages, gross P&L from the ledger (multiplier included), fees, net and duration.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from daemon.domain import ZERO, Fill, Side
from daemon.store.repository import Store
from daemon.store.scope import Accounts

TRADENOTE_COLUMNS = ("Account", "T/D", "S/D", "Currency", "Type", "Side", "Symbol", "Qty", "Price", "Exec Time",
                     "Comm", "SEC", "TAF", "NSCC", "Nasdaq", "ECN Remove", "ECN Add", "Gross Proceeds",
                     "Net Proceeds", "Clr Broker", "Liq", "Note")
TRADE_COLUMNS = ("account", "symbol", "side", "quantity", "entry_time", "entry_price", "exit_time", "exit_price",
                 "gross_pnl", "fees", "net_pnl", "duration_seconds", "fills")


@dataclass(frozen=True)
class Execution:
    """One fill, or one part of a fill that crossed zero, with what it did to the position."""

    fill: Fill
    label: str  # B, S, SS, BC
    quantity: Decimal
    commission: Decimal
    multiplier: Decimal

    @property
    def gross(self) -> Decimal:
        """Cash in (sell) or out (buy), before fees."""
        sign = 1 if self.fill.side is Side.SELL else -1
        return sign * self.quantity * self.fill.price * self.multiplier


@dataclass
class RoundTrip:
    account: str
    symbol: str
    side: str  # long | short
    entry_time: datetime
    quantity: Decimal = ZERO  # everything entered
    entry_cost: Decimal = ZERO
    exit_quantity: Decimal = ZERO
    exit_value: Decimal = ZERO
    gross_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    exit_time: datetime | None = None
    fill_ids: list[str] = field(default_factory=list)

    @property
    def entry_price(self) -> Decimal:
        return self.entry_cost / self.quantity

    @property
    def exit_price(self) -> Decimal | None:
        return self.exit_value / self.exit_quantity if self.exit_quantity else None

    def row(self, tz: ZoneInfo) -> dict[str, Any]:
        closed = self.exit_time
        price = self.exit_price
        return {"account": self.account, "symbol": self.symbol, "side": self.side, "quantity": str(self.quantity),
                "entry_time": self.entry_time.astimezone(tz).isoformat(), "entry_price": _price(self.entry_price),
                "exit_time": closed.astimezone(tz).isoformat() if closed else None,
                "exit_price": None if price is None else _price(price),
                "gross_pnl": str(_cents(self.gross_pnl)), "fees": str(_cents(self.fees)),
                "net_pnl": str(_cents(self.gross_pnl - self.fees)),
                "duration_seconds": int((closed - self.entry_time).total_seconds()) if closed else None,
                "fills": len(self.fill_ids)}


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def _price(value: Decimal) -> str:
    return format(value.quantize(Decimal("1e-6")).normalize(), "f")


def replay(fills: Iterable[tuple[Fill, Decimal, Decimal]]) -> tuple[list[Execution], list[RoundTrip]]:
    """Executions and round trips (closed ones first-closed first, then the open ones) from
    (fill, realized P&L, multiplier) rows, oldest first."""
    position: dict[tuple[str, str], Decimal] = {}
    open_trips: dict[tuple[str, str], RoundTrip] = {}
    executions: list[Execution] = []
    closed: list[RoundTrip] = []
    for fill, realized, multiplier in fills:
        key = (fill.account, fill.symbol)
        held = position.get(key, ZERO)
        signed = fill.side.sign * fill.quantity
        closing = min(abs(signed), abs(held)) if held and (held > 0) != (signed > 0) else ZERO
        parts = [(closing, "S" if held > 0 else "BC")] if closing else []
        if abs(signed) > closing:
            opening_long = signed > 0
            parts.append((abs(signed) - closing, "B" if opening_long else "SS"))
        for quantity, label in parts:
            commission = fill.commission * quantity / fill.quantity
            executions.append(Execution(fill, label, quantity, commission, multiplier))
            trip = open_trips.get(key)
            if label in ("S", "BC") and trip is not None:
                trip.exit_quantity += quantity
                trip.exit_value += quantity * fill.price
                trip.gross_pnl += realized
                trip.fees += commission
                trip.fill_ids.append(fill.fill_id)
                held += fill.side.sign * quantity
                if held == 0:
                    trip.exit_time = fill.filled_at
                    closed.append(open_trips.pop(key))
                continue
            if trip is None:
                trip = open_trips[key] = RoundTrip(fill.account, fill.symbol, "long" if label == "B" else "short",
                                                   fill.filled_at)
            trip.quantity += quantity
            trip.entry_cost += quantity * fill.price
            trip.fees += commission
            trip.fill_ids.append(fill.fill_id)
            held += fill.side.sign * quantity
        position[key] = held
    return executions, closed + list(open_trips.values())


def tradenote_rows(executions: Sequence[Execution], tz: ZoneInfo, currency: str = "USD") -> list[list[str]]:
    rows = []
    for ex in executions:
        local = ex.fill.filled_at.astimezone(tz)
        day = local.strftime("%m/%d/%Y")
        comm = _cents(ex.commission)
        rows.append([ex.fill.account, day, day, currency, "0", ex.label, ex.fill.symbol, str(ex.quantity),
                     str(ex.fill.price), local.strftime("%H:%M:%S"), str(comm), "0", "0", "0", "0", "0", "0",
                     str(_cents(ex.gross)), str(_cents(ex.gross) - comm), "", "", ""])
    return rows


def execution_json(ex: Execution, tz: ZoneInfo) -> dict[str, Any]:
    fill = ex.fill
    return {"account": fill.account, "fill_id": fill.fill_id, "broker_order_id": fill.broker_order_id,
            "client_order_id": fill.client_order_id, "symbol": fill.symbol, "side": fill.side.value,
            "action": ex.label, "quantity": str(ex.quantity), "price": str(fill.price),
            "commission": str(_cents(ex.commission)), "multiplier": str(ex.multiplier),
            "gross_proceeds": str(_cents(ex.gross)), "filled_at": fill.filled_at.astimezone(tz).isoformat()}


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return out.getvalue()


def export(store: Store, kind: str, fmt: str, since: datetime | None, account: Accounts, tz: str) -> str:
    """`fills` (executions since `since`) or `trades` (round trips closed since `since`, then the open ones),
    as `csv` or `json`. The whole history of the account is replayed, so positions opened before `since`
    are labelled right."""
    zone = ZoneInfo(tz)
    executions, trips = replay(store.journal_fills(account))
    if kind == "fills":
        chosen = [ex for ex in executions if since is None or ex.fill.filled_at >= since]
        if fmt == "csv":
            return to_csv(TRADENOTE_COLUMNS, tradenote_rows(chosen, zone))
        return json.dumps({"fills": [execution_json(ex, zone) for ex in chosen]}, indent=2) + "\n"
    if kind != "trades":
        raise ValueError(f"export kind must be fills or trades, not {kind!r}")
    rows = [t.row(zone) for t in trips if since is None or t.exit_time is None or t.exit_time >= since]
    if fmt == "csv":
        return to_csv(TRADE_COLUMNS, ([row[c] for c in TRADE_COLUMNS] for row in rows))
    return json.dumps({"trades": rows}, indent=2) + "\n"
