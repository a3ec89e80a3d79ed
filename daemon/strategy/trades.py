"""Closed round-trip trades of a replay from its fills, with the bars each was entered and left on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel

from daemon.domain import ZERO, Fill, Side


class Trade(BaseModel):
    side: Side
    quantity: Decimal
    entry_time: datetime
    entry_price: Decimal
    exit_time: datetime
    exit_price: Decimal
    gross_pnl: Decimal
    commission: Decimal
    net_pnl: Decimal
    entry_bar: int | None = None  # index of the replayed bar the entry filled in
    exit_bar: int | None = None
    return_pct: float | None = None  # net P&L over the entry's notional (price x quantity x point value), in %

    @property
    def bars_held(self) -> int | None:
        return None if self.entry_bar is None or self.exit_bar is None else self.exit_bar - self.entry_bar


def round_trips(fills: Sequence[Fill], multiplier: Decimal = Decimal(1),
                bar_of: Mapping[str, int] | None = None) -> tuple[list[Trade], Decimal]:
    """Closed trades (flat -> position -> flat, a flip closes one and opens the next) and the open quantity.

    `bar_of` maps a fill id to the bar it filled in; a trade's `entry_bar` is that of its first fill and its
    `exit_bar` that of the fill that brought it back to flat.
    """
    bars = bar_of or {}
    trades: list[Trade] = []
    pos = avg = size = exit_value = exited = pnl = fees = ZERO
    entry_time: datetime | None = None
    entry_bar: int | None = None
    for fill in fills:
        signed = fill.quantity * fill.side.sign
        if pos == 0:
            pos, avg, size, entry_time = signed, fill.price, abs(signed), fill.filled_at
            entry_bar = bars.get(fill.fill_id)
            exit_value = exited = pnl = ZERO
            fees = fill.commission
            continue
        if (pos > 0) == (signed > 0):
            avg = (avg * pos + fill.price * signed) / (pos + signed)
            pos += signed
            size = max(size, abs(pos))
            fees += fill.commission
            continue
        closing = min(abs(pos), abs(signed))
        pnl += (fill.price - avg) * closing * (1 if pos > 0 else -1) * multiplier
        exit_value += fill.price * closing
        exited += closing
        fees += fill.commission
        remainder = pos + signed
        if remainder != 0 and (remainder > 0) == (pos > 0):
            pos = remainder
            continue
        assert entry_time is not None
        notional = avg * size * multiplier
        trades.append(Trade(side=Side.BUY if pos > 0 else Side.SELL, quantity=size, entry_time=entry_time,
                            entry_price=avg, exit_time=fill.filled_at, exit_price=exit_value / exited,
                            gross_pnl=pnl, commission=fees, net_pnl=pnl - fees, entry_bar=entry_bar,
                            exit_bar=bars.get(fill.fill_id),
                            return_pct=float((pnl - fees) / notional * 100) if notional else None))
        pos = remainder
        if pos != 0:  # flipped through zero: the rest opens a new trade at this price
            avg, size, entry_time = fill.price, abs(pos), fill.filled_at
            entry_bar = bars.get(fill.fill_id)
            exit_value = exited = pnl = fees = ZERO
    return trades, pos
