"""Fills from files for the what-if tools: traderd's own CSV, Alpaca account activities and thinkorswim statements.

Formats (`read_fills(path, fmt)`, `fmt` = `auto` picks one from the file's content):

- `csv`: columns `time,symbol,side,qty,price` and optionally `order_id`; any other column is refused. Rows
  with the same `order_id` are partial fills of one order (one transaction for the PDT count). Without it
  each row is its own order.
- `alpaca`: the JSON of Alpaca's `GET /v2/account/activities/FILL` (a list of activity objects with
  `transaction_time`, `symbol`, `side`, `qty`, `price`, `order_id`; `type` fill or partial_fill).
  (Alpaca Trading API, Account Activities: https://docs.alpaca.markets/)
- `thinkorswim`: the Account Statement CSV exported from thinkorswim's Monitor > Account Statement (also
  Schwab's thinkorswim). Its "Account Trade History" section is read (`Exec Time` as M/D/YY HH:MM:SS, New
  York time; `Side` BUY/SELL; signed `Qty`). That section has no order id, so each execution counts as its
  own order: partial fills of one order are counted as separate transactions there.

Side codes accepted everywhere: buy/sell, B/S, BOT/SLD, BUY/SELL, Buy to Open/Close, Sell to Open/Close,
Sell Short, Buy to Cover, sell_short. Bad input raises `BadInput` with the file and line.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from daemon import money
from daemon.calendar import NEW_YORK
from daemon.domain import Fill, Side

CSV_REQUIRED = ("time", "symbol", "side", "qty", "price")
CSV_OPTIONAL = ("order_id",)
FORMATS = ("auto", "csv", "alpaca", "thinkorswim")
TOS_SECTION = "Account Trade History"

_BUY = {"buy", "b", "bot", "bought", "buy to open", "buy to close", "buy to cover", "cover", "bto", "btc"}
_SELL = {"sell", "s", "sld", "sold", "sell to open", "sell to close", "sell short", "short", "sto", "stc", "ss"}


class BadInput(Exception):
    """A bad file or value; the message names the file and line."""


def parse_side(text: str | None, where: str) -> Side:
    code = " ".join((text or "").replace("_", " ").replace("-", " ").lower().split())
    if code in _BUY:
        return Side.BUY
    if code in _SELL:
        return Side.SELL
    raise BadInput(f"{where}: bad side {text!r} (buy/sell, BOT/SLD, Buy to Open, Sell to Close, ...)")


def parse_time(text: str, tz: ZoneInfo, where: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise BadInput(f"{where}: bad time {text!r} (use ISO 8601, e.g. 2026-03-02T09:31:00-05:00)") from exc
    return ts.replace(tzinfo=tz) if ts.tzinfo is None else ts


def parse_decimal(text: object, where: str, name: str) -> Decimal | None:
    # Broker exports group thousands ("1,234.50"), so commas are dropped before the strict reading.
    cleaned = text.strip().replace(",", "") if isinstance(text, str) else text
    try:
        return money.parse_decimal(cleaned, name, empty_is_none=True)
    except money.NotANumber as exc:
        raise BadInput(f"{where}: bad {name} {text!r}") from exc


def make_fill(where: str, fill_id: str, order_id: str, ts: datetime, symbol: str, side: Side, qty: Decimal | None,
              price: Decimal | None) -> Fill:
    if not symbol:
        raise BadInput(f"{where}: symbol is required")
    if qty is None or price is None:
        raise BadInput(f"{where}: qty and price are required")
    if qty <= 0:
        raise BadInput(f"{where}: qty must be positive")
    return Fill(fill_id=fill_id, broker_order_id=order_id, client_order_id=order_id, account="file",
                symbol=symbol, side=side, quantity=qty, price=price, filled_at=ts)


def _text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not a readable text file ({exc})") from exc


def detect(text: str) -> str:
    head = text.lstrip()[:1]
    if head in ("[", "{"):
        return "alpaca"
    if any(line.strip().startswith(TOS_SECTION) for line in text.splitlines()):
        return "thinkorswim"
    return "csv"


def read_fills(path: str, fmt: str = "auto") -> list[Fill]:
    text = _text(path)
    chosen = detect(text) if fmt == "auto" else fmt
    if chosen == "alpaca":
        return _alpaca(path, text)
    if chosen == "thinkorswim":
        return _thinkorswim(path, text)
    if chosen == "csv":
        return _csv(path, text)
    raise BadInput(f"--format {fmt!r}: one of {', '.join(FORMATS)}")


def _csv(path: str, text: str) -> list[Fill]:
    try:
        reader = csv.DictReader(io.StringIO(text))
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in CSV_REQUIRED if c not in columns]
        unknown = [c for c in columns if c not in CSV_REQUIRED + CSV_OPTIONAL]
        expected = f"expected {','.join(CSV_REQUIRED)}[,{','.join(CSV_OPTIONAL)}]"
        if missing:
            raise BadInput(f"{path}: missing column(s) {', '.join(missing)}; {expected}")
        if unknown:
            raise BadInput(f"{path}: unknown column(s) {', '.join(unknown)}; {expected} (or --format alpaca / "
                           "thinkorswim for a broker's export)")
        fills = []
        for n, raw in enumerate(reader, start=1):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{path} line {reader.line_num}"
            order = row.get("order_id") or f"csv-{n}"
            fills.append(make_fill(where, f"csv-{n}", order, parse_time(row["time"], NEW_YORK, where),
                                   row["symbol"], parse_side(row["side"], where),
                                   parse_decimal(row["qty"], where, "qty"),
                                   parse_decimal(row["price"], where, "price")))
        return fills
    except csv.Error as exc:
        raise BadInput(f"{path}: not a readable CSV file ({exc})") from exc


def _alpaca(path: str, text: str) -> list[Fill]:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise BadInput(f"{path}: expected a list of Alpaca account activities")
    fills = []
    for n, item in enumerate(data, start=1):
        where = f"{path} activity {n}"
        if not isinstance(item, dict):
            raise BadInput(f"{where}: not an object")
        if item.get("activity_type", "FILL") != "FILL":
            continue  # dividends, fees, transfers: not trades
        order = str(item.get("order_id") or f"alpaca-{n}")
        fills.append(make_fill(where, str(item.get("id") or f"alpaca-{n}"), order,
                               parse_time(str(item.get("transaction_time") or ""), NEW_YORK, where),
                               str(item.get("symbol") or ""), parse_side(item.get("side"), where),
                               parse_decimal(item.get("qty"), where, "qty"),
                               parse_decimal(item.get("price"), where, "price")))
    return fills


def _tos_time(text: str, where: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), "%m/%d/%y %H:%M:%S").replace(tzinfo=NEW_YORK)
    except ValueError as exc:
        raise BadInput(f"{where}: bad Exec Time {text!r} (thinkorswim writes M/D/YY HH:MM:SS)") from exc


def _thinkorswim(path: str, text: str) -> list[Fill]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith(TOS_SECTION)), None)
    if start is None or start + 1 >= len(lines):
        raise BadInput(f"{path}: no '{TOS_SECTION}' section (export the Account Statement from thinkorswim)")
    header = next(csv.reader([lines[start + 1]]))
    need = ["Exec Time", "Side", "Qty", "Symbol", "Price"]
    if any(c not in header for c in need):
        raise BadInput(f"{path} line {start + 2}: the trade history needs columns {', '.join(need)}")
    col = {name: header.index(name) for name in header if name}
    rows: list[tuple[int, list[str]]] = []
    for offset, line in enumerate(lines[start + 2:], start=start + 3):
        if not line.strip():
            break
        rows.append((offset, next(csv.reader([line]))))
    fills: list[Fill] = []
    last_time: datetime | None = None
    for number, cells in rows:
        where = f"{path} line {number}"

        def cell(name: str, cells: list[str] = cells) -> str:
            i = col.get(name)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        if cell("Exec Time"):
            last_time = _tos_time(cell("Exec Time"), where)
        if last_time is None:
            raise BadInput(f"{where}: no Exec Time")
        qty = parse_decimal(cell("Qty").lstrip("+"), where, "Qty")
        symbol = cell("Symbol")
        if cell("Type") in ("CALL", "PUT"):  # an option leg: the contract, not the underlying
            symbol = " ".join(p for p in (symbol, cell("Exp"), cell("Strike"), cell("Type")) if p)
        fills.append(make_fill(where, f"tos-{number}", f"tos-{number}", last_time, symbol,
                               parse_side(cell("Side"), where), abs(qty) if qty is not None else None,
                               parse_decimal(cell("Price"), where, "Price")))
    # The statement lists the newest first; executions in the same second keep their true (file-reversed) order.
    fills.reverse()
    return sorted(fills, key=lambda f: f.filled_at)
