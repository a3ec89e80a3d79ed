"""Renders chat-ops answers as phone-friendly text: Decimals, signed money, and monospace tables.

Both transports show exactly this text. The only markup is a fenced code block (three backticks on their own
line) for tables; Discord renders it natively and the Telegram transport turns it into `<pre>` HTML.
Tables are kept narrow (phones show about 32-40 monospace columns) and long lists are cut with a
"... and N more" line so no answer exceeds a transport's message limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from daemon.chat.replies import (
    AccountInfo,
    CloseResult,
    ControlResult,
    DayLine,
    HealthCheck,
    PnlLine,
    RiskLine,
    StatusInfo,
    StrategyAction,
    StrategyInfo,
)
from daemon.domain import Fill, FlattenReport, Order, Position
from daemon.money import money
from daemon.queries import TimeExitCountdown

FENCE = "```"
MAX_ROWS = 25
MAX_TEXT = 1900  # under Discord's 2000 and Telegram's 4096, leaving room for markup


def num(value: Decimal | int | str | None) -> str:
    """A quantity or price without exponent or needless trailing zeros: 5012.250 -> 5012.25, 1E+1 -> 10."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    d = Decimal(value)
    if d == 0:
        return "0"
    text = format(d.normalize(), "f")
    return text


def price(value: Decimal | None) -> str:
    """A price: at least two decimals (12.5 -> 12.50), more if the instrument has them (0.0001), at most six."""
    if value is None:
        return "-"
    d = Decimal(value).normalize()
    exponent = d.as_tuple().exponent
    places = min(max(2, -exponent), 6) if isinstance(exponent, int) else 2
    return f"{d:,.{places}f}"


def qty(value: Decimal) -> str:
    """A signed position size: +2 long, -3 short."""
    d = Decimal(value)
    text = num(abs(d))
    return f"+{text}" if d > 0 else (f"-{text}" if d < 0 else "0")


def ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def hhmm(at: datetime) -> str:
    """UTC time of day for fills; the date only when it is not today's (callers pass aware datetimes)."""
    return at.strftime("%m-%d %H:%M")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()) -> str:
    """A monospace table in a fenced block; columns listed in `right` are right-aligned (numbers)."""
    shown = list(rows[:MAX_ROWS])
    widths = [len(h) for h in headers]
    for row in shown:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(cells)]
        return " ".join(out).rstrip()

    body = [line(headers)] + [line(row) for row in shown]
    if len(rows) > MAX_ROWS:
        body.append(f"... and {len(rows) - MAX_ROWS} more")
    return FENCE + "\n" + "\n".join(body) + "\n" + FENCE


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Cut a long answer at a line boundary, keeping fenced blocks closed."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 20].rsplit("\n", 1)[0]
    if cut.count(FENCE) % 2 == 1:
        cut += "\n" + FENCE
    return cut + "\n(cut short)"


def positions_table(positions: Sequence[Position], *, with_account: bool) -> str:
    headers = ["acct", "sym", "qty", "avg", "uPnL"] if with_account else ["sym", "qty", "avg", "uPnL"]
    rows = []
    for p in positions:
        cells = [p.symbol, qty(p.quantity), price(p.average_price), money(p.unrealized_pnl, signed=True)]
        rows.append([p.account, *cells] if with_account else cells)
    first_number = 2 if with_account else 1
    return table(headers, rows, right=range(first_number, len(headers)))


def time_exit_lines(exits: Sequence[tuple[Position, TimeExitCountdown]], *, with_account: bool) -> str:
    """One line per armed time exit: what closes, when, and the time left."""
    lines = [f"{p.account + ' ' if with_account else ''}{p.symbol} {qty(t.quantity)} closes {t.spec}: "
             f"{t.left} left (due {t.due_at:%H:%M} UTC)" for p, t in exits]
    return "\n".join(["Time exits", *lines]) if lines else ""


def order_line_price(order: Order) -> str:
    if order.order_type == "limit":
        return f"LMT {price(order.limit_price)}"
    if order.order_type == "stop":
        return f"STP {price(order.stop_price)}"
    if order.order_type == "stop_limit":
        return f"STP {price(order.stop_price)} LMT {price(order.limit_price)}"
    return "MKT"


def orders_table(orders: Sequence[Order], *, with_account: bool) -> str:
    headers = ["acct", "side", "qty", "sym", "price"] if with_account else ["side", "qty", "sym", "price"]
    rows = []
    for o in orders:
        remaining = o.quantity - o.filled_quantity
        cells = [o.side.value, num(remaining), o.symbol, order_line_price(o)]
        rows.append([o.account, *cells] if with_account else cells)
    return table(headers, rows, right=[2] if with_account else [1])


def fills_table(fills: Sequence[Fill]) -> str:
    rows = [[hhmm(f.filled_at), f.account, f.side.value, num(f.quantity), f.symbol, price(f.price)] for f in fills]
    return table(["time UTC", "acct", "side", "qty", "sym", "price"], rows, right=[3, 5])


def flatten_report(report: FlattenReport, *, verb: str = "flatten") -> str:
    """Exactly what a flatten (or cancel) did on one account: orders cancelled, positions closed, prices."""
    lines = [f"{report.account}:"]
    if not report.cancelled and not report.closing and not report.errors:
        lines.append("  nothing to do (no open orders" + (", no positions)" if verb == "flatten" else ")"))
    for o in report.cancelled:
        left = num(o.quantity - o.filled_quantity)
        lines.append(f"  cancelled {o.side.value} {left} {o.symbol} {order_line_price(o)}")
    for o in report.closing:
        if o.status == "filled" or (o.filled_quantity > 0 and o.average_fill_price is not None):
            filled = num(o.filled_quantity)
            lines.append(f"  closed: {o.side.value} {filled} {o.symbol} @ {price(o.average_fill_price)}")
            if o.filled_quantity < o.quantity:
                lines.append(f"    {num(o.quantity - o.filled_quantity)} still working ({o.status.value})")
        elif o.status == "rejected":
            lines.append(f"  FAILED to close {o.symbol}: {o.reject_reason or 'rejected by broker'}")
        else:
            what = f"{o.side.value} {num(o.quantity)} {o.symbol}"
            lines.append(f"  closing: {what} {o.status.value}, no fill yet")
    for error in report.errors:
        lines.append(f"  ERROR: {error}")
    return "\n".join(lines)


def status_text(st: StatusInfo, now: datetime) -> str:
    lines = [
        f"traderd {st.version}, up {ago(now - st.started_at)}",
        f"pending signals: {st.pending_signals}, alerts queued: {st.outbox_pending}",
    ]
    rows = []
    for acc in st.accounts:
        mode = "LOCKED" if acc.locked else ("paused" if acc.paused else "active")
        equity = money(acc.state.equity) if acc.state else "-"
        rows.append([acc.name, acc.broker, "ok" if acc.connected else "DOWN", mode, equity])
    lines.append(table(["acct", "broker", "link", "mode", "equity"], rows, right=[4]))
    lines += [f"{acc.name} locked: {acc.locked}" for acc in st.accounts if acc.locked]
    return clip("\n".join(lines))


def accounts_text(accounts: Sequence[AccountInfo]) -> str:
    if not accounts:
        return "No accounts configured."
    rows = []
    for acc in accounts:
        state = acc.state
        equity = money(state.equity) if state else "-"
        bp = money(state.buying_power) if state else "-"
        rows.append([acc.name, acc.broker, "paused" if acc.paused else "active", equity, bp])
    return clip("Accounts\n" + table(["acct", "broker", "mode", "equity", "bp"], rows, right=[3, 4]))


def pnl_text(period: str, account: str | None, lines: Sequence[PnlLine]) -> str:
    if not lines:
        return f"P&L {period}: no accounts."
    rows = [
        [
            p.account,
            money(p.realized, signed=True),
            money(p.unrealized, signed=True),
            money(p.fees),
            money(p.net, signed=True),
        ]
        for p in lines
    ]
    if len(lines) > 1 and len({p.currency for p in lines}) == 1:
        real = sum((p.realized for p in lines), Decimal(0))
        unreal = sum((p.unrealized for p in lines), Decimal(0))
        fees = sum((p.fees for p in lines), Decimal(0))
        rows.append(
            [
                "TOTAL",
                money(real, signed=True),
                money(unreal, signed=True),
                money(fees),
                money(real + unreal - fees, signed=True),
            ]
        )
    head = f"P&L {period}" + (f" - {account}" if account else "") + f" ({lines[0].currency})"
    return clip(head + "\n" + table(["acct", "real", "unreal", "fees", "net"], rows, right=[1, 2, 3, 4]))


def daily_text(days: int, lines: Sequence[DayLine]) -> str:
    """`/daily`: realized P&L net of fees per trading day and account, oldest first, with each account's total."""
    head = f"P&L by day, last {days} day{'s' if days != 1 else ''} (realized, net of fees)"
    if not lines:
        return head + "\nNo fills in that time."
    rows = [[line.day.strftime("%a %m-%d"), line.account, money(line.net, signed=True), str(line.fills)]
            for line in lines]
    for account in dict.fromkeys(line.account for line in lines):
        mine = [line for line in lines if line.account == account]
        total = sum((line.net for line in mine), Decimal(0))
        rows.append(["TOTAL", account, money(total, signed=True), str(sum(line.fills for line in mine))])
    return clip(head + "\n" + table(["day", "acct", "net", "fills"], rows, right=[2, 3]))


def close_text(result: CloseResult) -> str:
    """What `/close SYMBOL` did, after the confirmation."""
    what = f"Close {result.symbol} on {result.account}"
    order = result.order
    if not result.ok:
        return f"{what}: FAILED: {result.detail or 'not executed'}"
    if order is None:
        return f"{what}: done. {result.detail or 'nothing was open'}".rstrip()
    if order.filled_quantity > 0 and order.average_fill_price is not None:
        done = f"{order.side.value} {num(order.filled_quantity)} {order.symbol} @ {price(order.average_fill_price)}"
        left = order.quantity - order.filled_quantity
        return f"{what}: done. closed: {done}" + (f"; {num(left)} still working" if left > 0 else "")
    return f"{what}: sent. {order.side.value} {num(order.quantity)} {order.symbol} {order.status.value}, no fill yet"


def risk_text(account: str | None, lines: Sequence[RiskLine]) -> str:
    if not lines:
        return "No risk limits configured" + (f" on {account}." if account else ".")
    parts = []
    for name in dict.fromkeys(line.account for line in lines):
        rows = [
            [("!" if x.breached else "") + x.name, num(x.used), num(x.limit), num(x.left)]
            for x in lines
            if x.account == name
        ]
        parts.append(f"{name}\n" + table(["limit", "used", "max", "left"], rows, right=[1, 2, 3]))
    return clip("Risk\n" + "\n".join(parts))


def health_text(checks: Sequence[HealthCheck]) -> str:
    bad = [c for c in checks if not c.ok]
    lines = [("ok  " if c.ok else "FAIL") + f" {c.name}" + (f": {c.detail}" if c.detail else "") for c in checks]
    head = "Healthy" if not bad else f"{len(bad)} problem(s)"
    return clip(head + "\n" + FENCE + "\n" + "\n".join(lines) + "\n" + FENCE)


def control_text(done: str, unchanged: str, results: Sequence[ControlResult]) -> str:
    """The answer to pause/resume of accounts: one line per account."""
    if not results:
        return "No accounts."
    lines = []
    for res in results:
        line = f"{res.account}: {done if res.changed else unchanged}"
        lines.append(line + (f" ({res.detail})" if res.detail else ""))
    return "\n".join(lines)


def _utc(at: datetime | None) -> str:
    return hhmm(at.astimezone(UTC)) if at is not None else "-"


def strategies_text(strategies: Sequence[StrategyInfo]) -> str:
    """Each strategy: state (with the error when disabled), where it trades, last bar, last signal, next run."""
    if not strategies:
        return "No strategies configured (add [strategies.NAME] to traderd.toml; see docs/strategies.md)."
    lines = [f"Strategies ({len(strategies)}, times UTC)"]
    for s in strategies:
        state = "DISABLED" if s.state == "disabled" else s.state
        lines.append(f"{s.name}: {state}" + (f" - {s.error}" if s.error else ""))
        lines.append(f"  {s.strategy} on {s.account} {s.symbol} {s.timeframe}")
        signal = f"{s.last_signal} (bar {_utc(s.last_signal_at)})" if s.last_signal else "none yet"
        lines.append(f"  last bar {_utc(s.last_bar_end)}, last signal: {signal}")
        if s.state == "running" and s.next_run is not None:
            lines.append(f"  next run {_utc(s.next_run)}")
    return clip("\n".join(lines))


def strategy_control_text(action: StrategyAction, before: StrategyInfo, after: StrategyInfo) -> tuple[str, bool]:
    """The answer to `/strategy pause|resume NAME` and whether it did what was asked."""
    name = before.name
    if action == "pause":
        if before.state == "paused":
            return f"Strategy {name}: already paused.", True
        note = f" (it is also disabled: {after.error})" if after.state == "disabled" else ""
        return f"Strategy {name}: paused. No new signals; positions and orders stay as they are{note}.", True
    if after.state == "disabled":
        return f"Strategy {name}: still DISABLED - {after.error}", False
    if before.state == "disabled":
        return f"Strategy {name}: re-enabled (was disabled: {before.error}); it runs at the next bar close.", True
    if before.state == "paused":
        return f"Strategy {name}: resumed; it runs at the next bar close.", True
    return f"Strategy {name}: was not paused.", True
