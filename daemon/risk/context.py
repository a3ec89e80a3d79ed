"""What a risk rule is given (`OrderContext`) and what it reports for `/risk` (`LimitStatus`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from daemon.domain import AccountState, Fill, OrderRequest, utcnow

FillSource = Callable[[str, datetime], Sequence[Fill]]  # (account, since) -> fills since then


@dataclass(frozen=True)
class OrderContext:
    """What a rule may look at: the order and the account as it stands before the order."""

    request: OrderRequest
    signal_id: str | None
    positions: Mapping[str, Decimal]  # symbol -> signed quantity, current
    price: Decimal | None  # best known price for notional checks
    multiplier: Decimal = Decimal(1)
    paused: bool = False
    locked: bool = False
    now: datetime = field(default_factory=utcnow)
    account_state: AccountState | None = None  # broker-reported; only for accounts whose rules need it
    recent_fills: Sequence[Fill] = ()  # since the start of the PDT window; only where PDT/cash rules need it

    @property
    def current(self) -> Decimal:
        return self.positions.get(self.request.symbol, Decimal(0))

    @property
    def after(self) -> Decimal:
        return self.current + self.request.side.sign * self.request.quantity

    @property
    def reduces_only(self) -> bool:
        """True when the order moves the position toward zero without crossing it."""
        current, after = self.current, self.after
        return current != 0 and abs(after) < abs(current) and (after == 0 or (after > 0) == (current > 0))


@dataclass(frozen=True)
class LimitStatus:
    """One line of `/risk`: a configured limit, how much of it is used and left (display strings)."""

    name: str
    used: str
    limit: str
    left: str
    breached: bool = False
