"""Started broker stand-ins for the adapter tests, adapters connected to them, their orders, and report collectors.

Each `*_running` is an async context manager: the stand-in started on loopback, stopped afterwards, and on a
clean exit (with `check`) proof that no exchange broke the published contract. `quick_retries` and
`request_maker` are how every adapter test builds its retry policy and its order requests; `Collected`
keeps what streaming adapters report. `projectx_running` (beside
its front contracts, in the ProjectX adapter tests) is built on `running`; `alpaca_running` (in the Alpaca
adapter tests) is the same pattern for a stand-in of another kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

import httpx

from brokers.base import Broker, BrokerReport
from brokers.http import RetryPolicy
from brokers.stream import ReconnectingStream
from brokers.symbols import normalize
from daemon.domain import Fill, OrderRequest, OrderStatus, Side, client_order_id
from tests.standins.faults import StandinServer
from tests.standins.schwab_api import SchwabStandin
from tests.standins.tastytrade_api import TastytradeStandin
from tests.standins.tradovate_api import TradovateStandin, TvContract

S = TypeVar("S", bound=StandinServer)
B = TypeVar("B", bound=Broker)


class LogsIn(Protocol):
    async def login(self) -> Any: ...


C = TypeVar("C", bound=LogsIn)


@asynccontextmanager
async def running(stand: S, *, check: bool = True) -> AsyncIterator[S]:
    """`stand` started, stopped afterwards; with `check`, a clean exit also proves no exchange broke the
    contract."""
    await stand.start()
    try:
        yield stand
    finally:
        await stand.stop()
    if check:
        stand.assert_no_violations()


@asynccontextmanager
async def logged_in(client: Callable[[httpx.AsyncClient], C], url: str) -> AsyncIterator[C]:
    """A test's own HTTP client of a stand-in at `url` (`client` wraps the httpx client), logged in."""
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        made = client(http)
        await made.login()
        yield made


@asynccontextmanager
async def connected(broker: B) -> AsyncIterator[B]:
    """`broker` connected, and closed afterwards."""
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


def schwab_running(*, check: bool = True, **options: Any) -> AbstractAsyncContextManager[SchwabStandin]:
    """A started Schwab stand-in (built with `options`); see `running`."""
    return running(SchwabStandin(**options), check=check)


def tastytrade_running(*, check: bool = True, **options: Any
                       ) -> AbstractAsyncContextManager[TastytradeStandin]:
    """A started tastytrade stand-in (built with `options`); see `running`."""
    return running(TastytradeStandin(**options), check=check)


def tradovate_fronts(tv: TradovateStandin) -> None:
    """The stand-in lists the Dec 2026 contracts; after a roll, add today's front ones so `ES1!` resolves."""
    values = {"ES": ("50", "6000"), "NQ": ("20", "21000"), "MES": ("5", "6000"), "MNQ": ("2", "21000")}
    for root, (point_value, price) in values.items():
        name = normalize(f"{root}1!")
        if not any(c.name == name for c in tv.contracts.values()):
            contract_id = max(tv.contracts) + 1
            tv.contracts[contract_id] = TvContract(contract_id, name, contract_id + 50000, Decimal("0.25"),
                                                   Decimal(point_value))
            tv.prices[contract_id] = Decimal(price)


def tradovate_running(*, check: bool = True, **options: Any
                      ) -> AbstractAsyncContextManager[TradovateStandin]:
    """A started Tradovate stand-in (built with `options`) with today's front contracts; see `running`."""
    stand = TradovateStandin(**options)
    tradovate_fronts(stand)
    return running(stand, check=check)


def reports_until_fills(broker: Broker, fills: int) -> tuple[list[BrokerReport], asyncio.Event]:
    """Collect `broker`'s reports; the event is set once `fills` of them carry a fill."""
    reports: list[BrokerReport] = []
    enough = asyncio.Event()

    async def handler(report: BrokerReport) -> None:
        reports.append(report)
        if sum(r.fill is not None for r in reports) >= fills:
            enough.set()

    broker.set_report_handler(handler)
    return reports, enough


def quick_retries(max_retry_after: float) -> RetryPolicy:
    """Retries fast enough for a test (a few, milliseconds apart), a 429's Retry-After honoured up to the bound."""
    return RetryPolicy(retries=3, initial=0.01, maximum=0.05, jitter=0.01, max_retry_after=max_retry_after)


class RequestMaker(Protocol):
    def __call__(self, symbol: str = ..., qty: str = ..., key: str = ..., **kw: Any) -> OrderRequest: ...


def request_maker(account: str, symbol: str, qty: str) -> RequestMaker:
    """`req(symbol, qty, key, **fields)`: a buy (unless `side=` says otherwise) for `account` whose client
    order id derives from `key`, by default `qty` of `symbol`."""
    default_symbol, default_qty = symbol, qty

    def req(symbol: str = default_symbol, qty: str = default_qty, key: str = "sig-1", **kw: Any) -> OrderRequest:
        return OrderRequest(client_order_id=client_order_id(account, key), account=account, symbol=symbol,
                            side=kw.pop("side", Side.BUY), quantity=Decimal(qty), **kw)

    return req


class Collected(Generic[B]):
    """Adapters a test connected with `attach`, every report they pushed, and `close` for all of them."""

    def __init__(self) -> None:
        self.reports: list[BrokerReport] = []
        self.made: list[B] = []

    async def attach(self, broker: B) -> B:
        self.made.append(broker)

        async def keep(report: BrokerReport) -> None:
            self.reports.append(report)

        broker.set_report_handler(keep)
        await broker.connect()
        return broker

    async def close(self) -> None:
        for broker in self.made:
            await broker.close()

    def fills(self, order_id: str | None = None) -> list[Fill]:
        return [r.fill for r in self.reports if r.fill is not None and order_id in (None, r.fill.broker_order_id)]

    def statuses(self, order_id: str) -> list[OrderStatus]:
        return statuses_of(self.reports, order_id)


def statuses_of(reports: list[BrokerReport], order_id: str) -> list[OrderStatus]:
    """The statuses reported for one order, in the order they came."""
    return [r.order.status for r in reports if r.order is not None and r.order.broker_order_id == order_id]


class Recorder:
    """A report handler that keeps every report (install it with `set_report_handler`)."""

    def __init__(self) -> None:
        self.reports: list[BrokerReport] = []

    async def __call__(self, report: BrokerReport) -> None:
        self.reports.append(report)

    @property
    def fills(self) -> list[tuple[str, Decimal, str]]:
        """(symbol, quantity, fill id) of each reported fill."""
        return [(r.fill.symbol, r.fill.quantity, r.fill.fill_id) for r in self.reports if r.fill is not None]

    def statuses(self, order_id: str) -> list[OrderStatus]:
        return statuses_of(self.reports, order_id)


def stream_of(broker: Any) -> ReconnectingStream:
    """The stream of an adapter's `updates` feed (which a streaming test switched on)."""
    assert broker.updates.stream is not None
    stream: ReconnectingStream = broker.updates.stream
    return stream
