"""Seeds a traderd store with a year of trading history: N signals with their orders, fills and positions.

The schema is brought to head by the daemon's own `open_engine` first; the rows then go in through
SQLAlchemy Core multi-row inserts on the daemon's tables (so every column is stored exactly as the daemon
stores it, on SQLite and PostgreSQL alike), a few big transactions in all. The history is spread over the
given accounts and ~250 trading days (weekdays before today, 09:30-16:00 New York), with realistic outcomes:
most entries filled (some in two partial fills) and closed by a filled exit, some refused by a risk rule
(with the violation), expired, refused by the broker, or a limit order cancelled unfilled. Every position
ends flat, and the broker ids (`H...`) never collide with the ids a fresh paper broker hands out, so a daemon
started on the seeded store reconciles nothing and records its own fills as new.

    python bench/history_seed.py sqlite:////tmp/seeded.db --signals 1000000
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.domain import AccountState, Action, Intent, OrderType, SignalStatus, client_order_id  # noqa: E402
from daemon.store.database import normalize_url, open_engine  # noqa: E402
from daemon.store.tables import (  # noqa: E402
    FillRow,
    OrderRow,
    PositionRow,
    SignalRow,
    SnapshotRow,
    ViolationRow,
    apply_fill,
    order_root,
)

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMD", "TSLA", "META", "AMZN", "GOOG", "SPY", "QQQ", "NFLX", "INTC"]
FLUSH_EVERY = 20_000  # signals per multi-row insert round
COMMIT_EVERY = 250_000  # signals per transaction
_OPEN_UTC = timedelta(hours=14, minutes=30)  # 09:30 New York (standard time); the day is 6.5 hours
_DAY = 6.5 * 3600
_COMMISSION = Decimal("0.005")
_MIN_COMMISSION = Decimal(1)
_CASH = Decimal(100000)  # the paper broker's default starting cash: the snapshots agree with it
# Outcomes of an entry: (weight, status, order status or None, fills)
_ENTRY_OUTCOMES: list[tuple[int, str, str | None, int]] = [
    (85, "executed", "filled", 1), (5, "executed", "filled", 2), (4, "rejected", None, 0),
    (2, "expired", None, 0), (2, "failed", "rejected", 0), (2, "executed", "cancelled", 0)]


def trading_days(count: int, before: date) -> list[date]:
    days: list[date] = []
    day = before
    while len(days) < count:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            days.append(day)
    return days[::-1]


@dataclass
class Rows:
    """One insert round's rows, per table."""

    signals: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    fills: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)

    def write(self, conn: Any) -> None:
        for model, rows in ((SignalRow, self.signals), (OrderRow, self.orders), (FillRow, self.fills),
                            (ViolationRow, self.violations)):
            if rows:
                conn.execute(model.__table__.insert(), rows)
                rows.clear()


@dataclass
class Book:
    """The seeded ledger: open quantity, cost and realized P&L per (account, symbol), and the ids used."""

    rng: random.Random
    price: dict[str, Decimal] = field(default_factory=dict)
    position: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]] = field(default_factory=dict)
    orders: int = 0
    fills: int = 0

    def quote(self, symbol: str) -> Decimal:
        last = self.price.get(symbol) or Decimal(self.rng.randint(50, 500))
        moved = (last * Decimal(1 + self.rng.gauss(0, 0.004))).quantize(Decimal("0.01"))
        self.price[symbol] = max(moved, Decimal("1.00"))
        return self.price[symbol]


class Seeder:
    """Generates the history signal by signal into `Rows`; `Book` keeps every position's ledger right."""

    def __init__(self, accounts: list[str], rng: random.Random) -> None:
        self.accounts, self.rng, self.book, self.rows = accounts, rng, Book(rng), Rows()
        self.counts: dict[str, int] = {"signals": 0, "orders": 0, "fills": 0, "violations": 0}
        self._weights = [w for w, *_ in _ENTRY_OUTCOMES]

    def signal(self, n: int, account: str, symbol: str, at: datetime) -> None:
        held = self.book.position.get((account, symbol), (Decimal(0), Decimal(0), Decimal(0)))
        price = self.book.quote(symbol)
        order_status: str | None
        if held[0] > 0:  # an open position: the exit, filled at market
            status, order_status, fills, action, quantity = "executed", "filled", 1, Action.SELL, held[0]
        else:
            _, status, order_status, fills = self.rng.choices(_ENTRY_OUTCOMES, self._weights)[0]
            action, quantity = Action.BUY, Decimal(self.rng.randint(1, 100))
        limit = order_status == "cancelled"
        dedup = f"id:hist-{n}"
        signal_id = f"sig_{int(at.timestamp() * 1000):013x}{n:010x}"
        coid = client_order_id(account, dedup)
        intent = Intent(signal_id=signal_id, dedup_key=dedup, account=account, action=action, symbol=symbol,
                        quantity=quantity, price=price, received_at=at,
                        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                        limit_price=price - 1 if limit else None)
        raw = {"ticker": symbol, "action": action.value, "quantity": str(quantity), "price": str(price),
               "id": f"hist-{n}"}
        done = at + timedelta(milliseconds=self.rng.uniform(1, 5))
        reasons = {"rejected": "max_position: the position would exceed the limit",
                   "expired": "older than max_lag when its turn came", "failed": "broker: insufficient buying power"}
        self.rows.signals.append({
            "signal_id": signal_id, "account": account, "dedup_key": dedup, "source": "tradingview",
            "status": SignalStatus(status).value, "reason": reasons.get(status),
            "intent_json": intent.model_dump_json(),
            "raw_json": json.dumps(raw), "received_at": at, "updated_at": done,
            "client_order_id": coid if order_status else None, "parent_id": None, "route_json": None})
        self.counts["signals"] += 1
        if status == "rejected":
            self.rows.violations.append({"account": account, "rule": "max_position", "detail": reasons["rejected"],
                                         "numbers_json": "{}", "signal_id": signal_id, "symbol": symbol, "at": done})
            self.counts["violations"] += 1
        if order_status:
            self._order(account, symbol, action, quantity, price, coid, signal_id, order_status, fills, at, done)

    def _order(self, account: str, symbol: str, action: Action, quantity: Decimal, price: Decimal, coid: str,
               signal_id: str, status: str, fills: int, at: datetime, done: datetime) -> None:
        self.book.orders += 1
        broker_id = f"H{self.book.orders}"
        parts = [quantity] if fills == 1 else [quantity - quantity // 2, quantity // 2] if fills == 2 else []
        parts = [p for p in parts if p > 0]
        slip = Decimal("0.01") if action is Action.BUY else Decimal("-0.01")
        fill_price = price + slip
        self.rows.orders.append({
            "account": account, "broker_order_id": broker_id, "client_order_id": coid, "signal_id": signal_id,
            "client_order_root": order_root(coid), "symbol": symbol, "side": action.value, "quantity": quantity,
            "order_type": "limit" if status == "cancelled" else "market", "status": status,
            "filled_quantity": sum(parts, Decimal(0)), "average_fill_price": fill_price if parts else None,
            "limit_price": price - 1 if status == "cancelled" else None, "stop_price": None,
            "time_in_force": "day", "parent_order_id": None, "oco_group": None,
            "reject_reason": "insufficient buying power" if status == "rejected" else None,
            "created_at": at, "updated_at": done})
        self.counts["orders"] += 1
        for k, part in enumerate(parts):
            key = (account, symbol)
            qty, cost, realized = self.book.position.get(key, (Decimal(0), Decimal(0), Decimal(0)))
            signed = part if action is Action.BUY else -part
            qty, cost, pnl = apply_fill(qty, cost, signed, fill_price, Decimal(1))
            self.book.position[key] = (qty, cost, realized + pnl)
            self.book.fills += 1
            self.rows.fills.append({
                "account": account, "fill_id": f"{account}-HF{self.book.fills}", "broker_order_id": broker_id,
                "client_order_id": coid, "symbol": symbol, "side": action.value, "quantity": part,
                "price": fill_price, "commission": max(_COMMISSION * part, _MIN_COMMISSION),
                "filled_at": done + timedelta(microseconds=k), "realized_pnl": pnl, "multiplier": Decimal(1)})
            self.counts["fills"] += 1


def schedule(signals: int, accounts: list[str], calendar: list[date],
             rng: random.Random) -> Iterator[tuple[int, str, str, datetime]]:
    """(n, account, symbol, received at) for every signal, in time order, as evenly over the days as fits."""
    per_day = max(1, -(-signals // len(calendar)))
    n = 0
    for day in calendar:
        opened = datetime(day.year, day.month, day.day, tzinfo=UTC) + _OPEN_UTC
        for offset in sorted(rng.uniform(0, _DAY) for _ in range(min(per_day, signals - n))):
            yield n, accounts[n % len(accounts)], SYMBOLS[(n // len(accounts)) % len(SYMBOLS)], \
                opened + timedelta(seconds=offset)
            n += 1


def seed(url: str, signals: int, accounts: list[str], days: int = 250, rng_seed: int = 7) -> dict[str, Any]:
    """Seed `url` (migrated first) with `signals` signals of history; returns what was written and how fast."""
    started = time.perf_counter()
    engine, writer = open_engine(normalize_url(url))
    rng = random.Random(rng_seed)
    seeder = Seeder(accounts, rng)
    calendar = trading_days(days, datetime.now(UTC).date())
    todo = schedule(signals, accounts, calendar, rng)
    try:
        while True:
            with writer.begin() as conn:  # one transaction per COMMIT_EVERY signals
                taken = 0
                for n, account, symbol, at in itertools.islice(todo, COMMIT_EVERY):
                    seeder.signal(n, account, symbol, at)
                    taken += 1
                    if len(seeder.rows.signals) >= FLUSH_EVERY:
                        seeder.rows.write(conn)
                seeder.rows.write(conn)
            if taken < COMMIT_EVERY:
                break
        with writer.begin() as conn:
            _close_all(seeder, calendar[-1], signals)
            seeder.rows.write(conn)
            _positions_and_snapshots(conn, seeder, accounts, calendar)
        if engine.dialect.name == "sqlite":  # a store at rest: its log copied into the database, as a year of
            with engine.connect() as conn:  # checkpoints would have left it (not a 400 MB log for the run)
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    seconds = time.perf_counter() - started
    return {**seeder.counts, "accounts": accounts, "trading_days": len(calendar),
            "first_day": calendar[0].isoformat(), "last_day": calendar[-1].isoformat(),
            "seconds": round(seconds, 1), "signals_per_s": round(seeder.counts["signals"] / max(seconds, 1e-9))}


def _close_all(seeder: Seeder, day: date, n: int) -> None:
    """Exit signals for whatever is still open, at the last day's close, so every position ends flat."""
    close = datetime(day.year, day.month, day.day, tzinfo=UTC) + _OPEN_UTC + timedelta(seconds=_DAY - 60)
    for (account, symbol), (qty, _, _) in sorted(seeder.book.position.items()):
        if qty > 0:
            seeder.signal(n, account, symbol, close)
            n += 1


def _positions_and_snapshots(conn: Any, seeder: Seeder, accounts: list[str], calendar: list[date]) -> None:
    last = datetime(calendar[-1].year, calendar[-1].month, calendar[-1].day, 21, tzinfo=UTC)
    positions = [{"account": a, "symbol": s, "quantity": q, "average_price": Decimal(0), "cost_basis": c,
                  "realized_pnl": r, "updated_at": last} for (a, s), (q, c, r) in seeder.book.position.items()]
    if positions:
        conn.execute(PositionRow.__table__.insert(), positions)
    snapshots = []
    for day in calendar:  # one end-of-day snapshot per account
        at = datetime(day.year, day.month, day.day, 21, tzinfo=UTC)
        for account in accounts:
            state = AccountState(account=account, broker="paper", as_of=at, equity=_CASH, cash=_CASH,
                                 buying_power=_CASH)
            row = SnapshotRow.of(state)
            snapshots.append({"account": row.account, "as_of": row.as_of, "equity": row.equity, "cash": row.cash,
                              "state_json": row.state_json})
    conn.execute(SnapshotRow.__table__.insert(), snapshots)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="sqlite:///path or postgresql://... (migrated to head first)")
    parser.add_argument("--signals", type=int, default=1_000_000)
    parser.add_argument("--accounts", default="paper,fan1,fan2,fan3,fan4,fan5")
    parser.add_argument("--days", type=int, default=250)
    args = parser.parse_args()
    print(json.dumps(seed(args.url, args.signals, args.accounts.split(","), args.days), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
