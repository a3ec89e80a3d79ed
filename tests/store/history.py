"""A store with a long history (bulk-seeded old rows, a few live ones) and the SQL a real call sends to it.

`seed_history` writes rows the way years of trading leave them: executed signals, filled orders, fills, risk
violations, account snapshots, delivered alerts, fired time exits and finished exit rules, spread over
several accounts and dated long before `NOW` (some orders are bracket legs of older ones). `seed_live` adds
what is open or recent at `NOW`: one pending signal (and a quiet account's three old ones), open orders (one
with the legs of its bracket), today's fills, an armed time exit, an active exit rule, an undelivered alert.

`capture(store)` records every statement the store's engine executes inside the block (the SQL SQLAlchemy
really emitted, with its parameters) and, on SQLite, counts the virtual-machine steps they took: a read that
is served by an index takes about as many steps with 50,000 old rows as with 1,000, a scan grows with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, event, insert
from sqlalchemy.engine import Engine

from daemon.domain import AccountState, Action, Intent, Side
from daemon.store.exit_rules import ExitRuleRow
from daemon.store.repository import Store
from daemon.store.tables import (
    FillRow,
    OrderRow,
    OutboxRow,
    SignalRow,
    SnapshotRow,
    ViolationRow,
    order_root,
)
from daemon.store.time_exits import TimeExitRow

NOW = datetime(2025, 6, 2, 15, 0, tzinfo=UTC)  # a Monday afternoon, New York session open
HOT = "acct1"  # the account the reads below are made for
ACCOUNTS = (HOT, "acct2", "acct3", "acct4")
LIVE_ORDERS = 3  # open orders of HOT at NOW
LIVE_FILLS = 4  # fills of HOT today
QUIET = "acct9"  # an account that traded three times, years ago
LIVE_ENTRY = "b0x"  # an open order of HOT with two bracket legs: its take-profit filled, its stop cancelled
_OLD = datetime(2021, 1, 4, 14, 30, tzinfo=UTC)
_STEP_EVERY = 10  # the progress handler runs every this many VM instructions
_BATCH = 5_000


def _table(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def _bulk(store: Store, model: Any, rows: list[dict[str, Any]]) -> None:
    with store.engine.begin() as conn:
        for i in range(0, len(rows), _BATCH):
            conn.execute(insert(_table(model)), rows[i:i + _BATCH])


def intent_json(key: str, account: str, at: datetime) -> str:
    return Intent(signal_id=f"s_{key}", dedup_key=key, account=account, action=Action.BUY, symbol="AAPL",
                  quantity=Decimal(1), received_at=at).model_dump_json()


def _signal(key: str, account: str, at: datetime, status: str, coid: str | None) -> dict[str, Any]:
    return {"signal_id": f"s_{key}", "account": account, "dedup_key": key, "source": "tradingview",
            "status": status, "reason": None, "intent_json": intent_json(key, account, at), "raw_json": None,
            "received_at": at, "updated_at": at, "client_order_id": coid, "parent_id": None, "route_json": None}


def _order(n: str, account: str, at: datetime, status: str, signal_id: str | None) -> dict[str, Any]:
    coid = f"td{n.zfill(30)}"
    return {"account": account, "broker_order_id": f"b{n}", "client_order_id": coid, "signal_id": signal_id,
            "client_order_root": order_root(coid), "symbol": "AAPL", "side": "buy", "quantity": Decimal(1),
            "order_type": "market", "status": status, "filled_quantity": Decimal(1) if status == "filled" else 0,
            "average_fill_price": None, "limit_price": None, "stop_price": None, "time_in_force": "day",
            "parent_order_id": None, "oco_group": None, "reject_reason": None, "created_at": at, "updated_at": at}


def _fill(n: str, account: str, at: datetime, side: Side) -> dict[str, Any]:
    return {"account": account, "fill_id": f"f{n}", "broker_order_id": f"b{n}", "client_order_id": f"c{n}",
            "symbol": "AAPL", "side": side.value, "quantity": Decimal(1),
            "price": Decimal("100.25"), "commission": Decimal("0.01"), "filled_at": at,
            "realized_pnl": Decimal("0.5"), "multiplier": Decimal(1)}


def seed_history(store: Store, count: int, first: int = 0) -> None:
    """`count` old signals, orders and fills (and about as many other records), numbered from `first`."""
    signals, orders, fills, violations, snapshots, outbox, time_exits, exit_rules = ([] for _ in range(8))
    for i in range(first, first + count):
        account, at = ACCOUNTS[i % len(ACCOUNTS)], _OLD + timedelta(minutes=i)
        n = str(i)
        signals.append(_signal(f"old{n}", account, at, "executed", f"td{n.zfill(30)}"))
        orders.append(_order(n, account, at, "filled" if i % 3 else "cancelled", f"s_old{n}")
                      | ({"parent_order_id": f"b{i - 4}"} if i % 3 == 0 and i >= 4 else {}))  # a leg
        fills.append(_fill(n, account, at, Side.BUY if i % 2 == 0 else Side.SELL))
        violations.append({"account": account, "rule": "max_position", "detail": "too big", "numbers_json": "{}",
                           "signal_id": f"s_old{n}", "symbol": "AAPL", "at": at})
        snapshots.append({"account": account, "as_of": at, "equity": Decimal(100000), "cash": Decimal(100000),
                          "state_json": AccountState(account=account, broker="paper", cash=Decimal(100000),
                                                     equity=Decimal(100000), as_of=at).model_dump_json()})
        outbox.append({"transport": "telegram", "chat": "1", "kind": "fill", "text": "filled", "silent": False,
                       "status": "sent", "attempts": 1, "created_at": at, "next_attempt_at": at, "sent_at": at,
                       "last_error": None, "image": None})
        if i % 10 == 0:
            time_exits.append(_time_exit(f"s_old{n}", account, at, "fired"))
            exit_rules.append(_exit_rule(f"r_old{n}", account, at, "done"))
    for model, rows in ((SignalRow, signals), (OrderRow, orders), (FillRow, fills), (ViolationRow, violations),
                        (SnapshotRow, snapshots), (OutboxRow, outbox), (TimeExitRow, time_exits),
                        (ExitRuleRow, exit_rules)):
        _bulk(store, model, rows)


def _time_exit(entry: str, account: str, at: datetime, status: str) -> dict[str, Any]:
    return {"entry_signal_id": entry, "account": account, "symbol": "AAPL", "side": "buy", "quantity": "1",
            "spec": "30m", "origin": "signal", "armed_at": at, "due_at": at + timedelta(minutes=30),
            "status": status, "close_signal_id": None, "note": None, "updated_at": at}


def _exit_rule(rule_id: str, account: str, at: datetime, status: str) -> dict[str, Any]:
    return {"id": rule_id, "account": account, "symbol": "AAPL", "kind": "trailing_stop", "status": status,
            "rule_json": "{}", "created_at": at, "updated_at": at}


def seed_live(store: Store) -> None:
    """What is open or recent at NOW, for HOT (and one open order of another account)."""
    recent = NOW - timedelta(hours=1)
    _bulk(store, SignalRow, [_signal("live", HOT, recent, "pending", None)]
          + [_signal(f"quiet{i}", QUIET, _OLD + timedelta(days=i), "executed", None) for i in range(3)])
    _bulk(store, OrderRow, [_order(f"{i}x", HOT, recent + timedelta(minutes=i), "new", None)
                            for i in range(LIVE_ORDERS)] + [_order("9x", "acct2", recent, "new", None)]
          + [_order(f"0x{leg}", HOT, recent, status, None) | {"order_type": kind, "parent_order_id": LIVE_ENTRY}
             for leg, kind, status in (("tp", "limit", "filled"), ("sl", "stop", "cancelled"))])
    _bulk(store, FillRow, [_fill(f"{i}x", HOT, recent + timedelta(minutes=i), Side.BUY if i % 2 == 0 else Side.SELL)
                           for i in range(LIVE_FILLS)])
    _bulk(store, TimeExitRow, [_time_exit("s_live", HOT, recent, "armed")])
    _bulk(store, ExitRuleRow, [_exit_rule("r_live", HOT, recent, "active")])
    _bulk(store, OutboxRow, [{"transport": "telegram", "chat": "1", "kind": "fill", "text": "filled",
                              "silent": False, "status": "pending", "attempts": 0, "created_at": recent,
                              "next_attempt_at": recent, "sent_at": None, "last_error": None, "image": None}])


@dataclass
class Captured:
    """What ran inside `capture`: (SQL, parameters) of each statement, and the SQLite VM steps they took."""

    statements: list[tuple[str, Any]] = field(default_factory=list)
    steps: int = 0

    @property
    def reads(self) -> list[tuple[str, Any]]:
        """The statements that look rows up (SELECT, and UPDATE / DELETE with a WHERE)."""
        return [(sql, params) for sql, params in self.statements
                if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH"))]


@contextmanager
def capture(store: Store) -> Iterator[Captured]:
    found = Captured()
    engine: Engine = store.engine
    counted: list[Any] = []

    def tick() -> int:
        found.steps += _STEP_EVERY
        return 0  # go on

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        found.statements.append((statement, parameters))
        raw = conn.connection.dbapi_connection
        if engine.dialect.name == "sqlite" and all(raw is not c for c in counted):
            raw.set_progress_handler(tick, _STEP_EVERY)
            counted.append(raw)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", before)
        for raw in counted:
            raw.set_progress_handler(None, _STEP_EVERY)
