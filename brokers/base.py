"""The Broker protocol every adapter implements, how one is built, the reports it pushes, and its typed errors.

A broker adapter is bound to one trading account. The engine, reconciliation, the queries and the strategy
runner talk to it only through `Broker`, and hear back through the report handler installed with
`set_report_handler`, so a new broker is a new folder under `brokers/` and nothing in `daemon/` changes.
Its module offers a `BrokerFactory` (`build(account, settings, context)`), named in `brokers.registry`.
Adapters subclass `BrokerBase`, which implements the optional methods with the defaults below.

| method                    | required | notes (default of an optional one)                                   |
|---------------------------|----------|----------------------------------------------------------------------|
| name, account             | yes      | the broker's name (as in the registry) and the account it trades     |
| set_report_handler        | yes      | where order updates and fills go (`BrokerBase` keeps it, `emit`s)    |
| connect / close           | yes      | authenticate, start streams; release everything                      |
| place_order               | yes      | idempotent on `client_order_id`: never places it twice               |
| find_order                | yes      | look an order up by client order id (lost responses, restarts)       |
| cancel_order              | yes      | cancelling a finished order returns it unchanged                     |
| modify_order              | yes      | quantity / limit / stop of a resting order                           |
| open_orders               | yes      | for reconciliation and `/orders`                                     |
| positions / account_state | yes      | for risk checks, reconciliation and `/positions`, `/pnl`             |
| fills                     | yes      | fills since a time, for reconciliation after a gap                   |
| close_position            | yes      | market order that closes one symbol                                  |
| flatten                   | yes      | cancel all orders and close all positions (native where available)   |
| observe_price             | no       | a price seen in a signal, which the paper broker trades on (ignored) |
| healthy                   | no       | connectivity for `/status` and `/healthz` (True)                     |
| multiplier                | no       | point value of a symbol, for P&L and notional (1)                    |
| quantity_step             | no       | smallest quantity increment, for sizing by notional or risk (1)      |
| bars                      | no       | OHLCV bars from the broker's market data (`NotImplementedError`)     |
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from daemon.domain import AccountState, Bar, Fill, FlattenReport, Order, OrderRequest, Position


class BrokerError(Exception):
    """Base of every error an adapter raises. `reason` is safe to show the trader (no secrets)."""

    retryable = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OrderRejected(BrokerError):
    """The broker refused the order for a business reason (insufficient funds, market closed, ...)."""


class UnknownSymbol(OrderRejected):
    """The ticker does not map to an instrument of this broker; nothing was sent (a refusal, not an outage)."""


class DeadlinePassed(BrokerError):
    """The order's `expires_at` passed before it could be sent (or resent); nothing more was sent."""


class OrderNotFound(BrokerError):
    """No order with that id."""


class BrokerUnavailable(BrokerError):
    """Network failure, timeout, 5xx or throttling: the state of the request may be unknown."""

    retryable = True


class AuthenticationFailed(BrokerError):
    """Credentials were refused; retrying will not help until the configuration changes."""


class BrokerReport:
    """Tagged union of what a broker pushes to the engine: an order update or a fill."""

    __slots__ = ("fill", "order")

    def __init__(self, *, order: Order | None = None, fill: Fill | None = None) -> None:
        if (order is None) == (fill is None):
            raise ValueError("a report carries exactly one of order or fill")
        self.order = order
        self.fill = fill


ReportHandler = Callable[[BrokerReport], Awaitable[None]]


@runtime_checkable
class Broker(Protocol):
    name: str
    account: str

    def set_report_handler(self, handler: ReportHandler) -> None: ...
    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def place_order(self, request: OrderRequest) -> Order: ...
    async def find_order(self, client_order_id: str) -> Order | None: ...
    async def cancel_order(self, broker_order_id: str) -> Order: ...
    async def modify_order(
        self,
        broker_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> Order: ...
    async def open_orders(self) -> list[Order]: ...
    async def positions(self) -> list[Position]: ...
    async def account_state(self) -> AccountState: ...
    async def fills(self, since: datetime | None = None) -> list[Fill]: ...
    async def close_position(self, symbol: str) -> Order | None: ...
    async def flatten(self) -> FlattenReport: ...
    async def observe_price(self, symbol: str, price: Decimal, at: datetime) -> None: ...
    def healthy(self) -> bool: ...
    def multiplier(self, symbol: str) -> Decimal: ...
    def quantity_step(self, symbol: str) -> Decimal: ...
    async def bars(self, symbol: str, timeframe_seconds: int, start: datetime, end: datetime) -> list[Bar]: ...


def _nobody(text: str) -> None:
    return None


@dataclass(frozen=True)
class BrokerContext:
    """What the daemon gives every adapter it builds, besides the account's settings section."""

    state_dir: Path  # the daemon's state directory; an adapter keeps its files under state_dir/<its name>/
    clock: Callable[[], datetime]  # the daemon's clock (the paper broker's fills are stamped with it)
    # Tell the trader something about the account's broker link (a login about to expire): a chat alert.
    announce: Callable[[str], None] = _nobody


class BrokerFactory(Protocol):
    """An adapter module's `build`: the broker for `account` from its settings section (the model
    `config.brokers.BROKER_SECTIONS` names for the broker)."""

    def __call__(self, account: str, settings: Any, context: BrokerContext) -> Broker: ...


class BrokerBase:
    """Shared plumbing for adapters: the report handler and defaults for the optional methods."""

    name = "base"

    def __init__(self, account: str) -> None:
        self.account = account
        self._report_handler: ReportHandler | None = None

    def set_report_handler(self, handler: ReportHandler) -> None:
        self._report_handler = handler

    async def emit(self, report: BrokerReport) -> None:
        if self._report_handler is not None:
            await self._report_handler(report)

    async def observe_price(self, symbol: str, price: Decimal, at: datetime) -> None:
        return None

    def healthy(self) -> bool:
        return True

    def multiplier(self, symbol: str) -> Decimal:
        """Point value of `symbol`: what one unit of price is worth per contract or share."""
        return Decimal(1)

    def quantity_step(self, symbol: str) -> Decimal:
        """The smallest quantity `symbol` trades in: sizing by notional or risk rounds down to it (whole units)."""
        return Decimal(1)

    async def bars(self, symbol: str, timeframe_seconds: int, start: datetime, end: datetime) -> list[Bar]:
        """Closed bars of `timeframe_seconds` starting in [start, end), oldest first, from the broker."""
        raise NotImplementedError(f"{self.name} offers no market data")
