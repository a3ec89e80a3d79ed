"""ProjectX Gateway adapter (TopstepX and other prop firms, CME futures): orders, brackets, positions, fills.

Calls go through `brokers.projectx.session` (bearer token, renewal, `success: false` as typed errors).

Symbols (`brokers.projectx.contracts`): a TradingView ticker (`ES1!`, `CME_MINI:MNQ1!`, `ESZ6`) is resolved
with `brokers.symbols.normalize` to a contract name and then to a contract id with `/api/Contract/search`;
anything unknown is refused with `UnknownSymbol` before an order is sent. Orders, positions and fills of the
front-month contract are reported under the continuous ticker (`ES1!`), others under their name (`ESH7`).

Idempotency: `customTag` carries the engine's client order id (the gateway keeps it unique per account).
When a placement's answer is lost (timeout, reset, 5xx, 429), `/api/Order/search` is searched for that tag
before anything is sent again; a "custom tag already exists" refusal returns the existing order.

Brackets use the gateway's own `stopLossBracket`/`takeProfitBracket` (signed tick offsets from the fill
price; the account must be in "Auto OCO Brackets" mode): the gateway creates the exits when the entry
fills and cancels one when the other fills, even while traderd is down. Our absolute prices are converted
to ticks from the entry's limit/stop price (market orders: the signal's reference price), so the exits sit
at the requested prices when the entry fills there. The exits are reported as children of the entry
(client order id `<entry>-tp` / `-sl`).

Fills and order changes (`brokers.projectx.stream`): the real-time user hub (SignalR) when `stream` is on,
with polling of `/api/Trade/search` and `/api/Order/searchOpen` under it (fast while the hub is down, slow
as reconciliation while it is up); each fill reaches the engine once, keyed by the gateway's trade id.
Market data: `bars()` reads `/api/History/retrieveBars` for the contract a ticker means (`MES1!`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from brokers.base import (
    AuthenticationFailed,
    BrokerBase,
    BrokerContext,
    BrokerError,
    BrokerUnavailable,
    OrderNotFound,
    OrderRejected,
    UnknownSymbol,
)
from brokers.http import RetryPolicy, place_once
from brokers.projectx import models as px
from brokers.projectx.contracts import Contracts
from brokers.projectx.session import ProjectXSession
from brokers.projectx.stream import LOOKBACK, ProjectXUpdates, SignalRHub
from brokers.updates import Feed, ReportGate
from config.brokers import ProjectXSettings
from daemon.domain import AccountState, Bar, FlattenReport, Order, OrderRequest, Position, utcnow

log = logging.getLogger(__name__)

_TAG_TAKEN = re.compile(r"custom\s*tag", re.IGNORECASE)


class ProjectXBroker(ProjectXUpdates, BrokerBase):
    name = "projectx"
    native_trailing = frozenset({"order", "bracket"})  # by a price distance (a percent trail: the daemon's)

    def __init__(
        self, account: str, settings: ProjectXSettings, http: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow, *, poll_interval: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, retry: RetryPolicy | None = None,
        stream_backoff: tuple[float, float] = (0.5, 30.0), stream_grace: float = 30.0,
    ) -> None:
        super().__init__(account)
        self.settings = settings
        self.clock = clock
        self._sleep = sleep
        self.poll_interval = settings.poll_interval_seconds if poll_interval is None else poll_interval
        self.session = ProjectXSession(f"projectx {account}", settings, http, clock=clock, sleep=sleep,
                                       retry=retry, on_token=self._token_renewed)
        self.http = self.session.http
        self.account_id: int | None = settings.account_id
        self.contracts = Contracts(self.session, clock)
        self._tags: dict[int, str] = {}  # order id -> client order id (trades do not carry it)
        self._parents: dict[int, int] = {}  # bracket exit id -> entry id
        self._awaiting_exits: dict[str, list[tuple[int, str, px.PxSide, int]]] = {}  # contract -> entries
        self._created: dict[int, datetime] = {}
        self.reports = ReportGate(self.emit)
        self._fills_after: datetime | None = None
        self.reconcile_interval = settings.reconcile_interval_seconds
        self.stream_grace = stream_grace
        self.updates = Feed(f"projectx {account}", self.poll_once, lambda: self.poll_interval, self._reconcile_pace)
        self._hub: SignalRHub | None = None
        if settings.stream:
            self._hub = SignalRHub(f"projectx {account}", settings.user_hub_url(), lambda: self._token,
                                   self._on_hub_event, self._hub_subscriptions, on_state=self._hub_state,
                                   backoff=stream_backoff, connect_timeout=settings.timeout_seconds)
            self.updates.stream = self._hub.stream

    @property
    def _token(self) -> str | None:
        return self.session.token

    def _token_renewed(self, token: str) -> None:
        if self._hub is not None and self._hub.token_in_use not in (None, token):
            self._hub.restart()  # the hub reconnects with the renewed token

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def connect(self) -> None:
        try:
            await self.session.login()
            await self._resolve_account()
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(f"projectx is unreachable at {self.settings.base_url}: {exc.reason}") from None
        if self._fills_after is None:
            self._fills_after = self.clock() - timedelta(seconds=1)
        self.updates.start()

    async def _resolve_account(self) -> px.PxAccount:
        answer = await self.session.post("/api/Account/search", {"onlyActiveAccounts": True}, px.AccountsAnswer,
                                         what="projectx accounts", safe=True)
        found = px.pick_account(answer.accounts or [], self.account_id, self.settings.account_name)
        if found is None:
            wanted = self.account_id or self.settings.account_name or "any active account"
            raise AuthenticationFailed(f"projectx: {wanted} not among the active accounts of {self.settings.username}")
        self.account_id = found.id  # from now on always this one, even if it stops being tradable
        return found

    async def close(self) -> None:
        await self.updates.stop()
        await self.http.aclose()

    def healthy(self) -> bool:
        """Signed in, the last REST call answered, polling alive, and the hub up (or reconnecting briefly)."""
        return self._token is not None and self.http.healthy() and self.updates.healthy(self.stream_grace)

    @property
    def stream_connected(self) -> bool:
        return self._hub is not None and self._hub.connected

    @property
    def _acct(self) -> int:
        if self.account_id is None:
            raise BrokerUnavailable(f"projectx {self.account}: not connected")
        return self.account_id

    def multiplier(self, symbol: str) -> Decimal:
        return self.contracts.multiplier(symbol)

    # -- conversion --------------------------------------------------------------------------------------

    def _link_exit(self, o: px.PxOrder) -> None:
        """An untagged order opposite a filled bracketed entry on the same contract is one of its exits."""
        waiting = self._awaiting_exits.get(o.contract_id)
        if o.custom_tag or o.id in self._parents or not waiting:
            return
        for i, (entry_id, cid, side, expected) in enumerate(waiting):
            if o.side != side and o.id > entry_id:
                kind = "tp" if o.type == px.PxOrderType.LIMIT else "sl"
                self._parents[o.id], self._tags[o.id] = entry_id, f"{cid}-{kind}"
                waiting[i] = (entry_id, cid, side, expected - 1)
                if expected <= 1:
                    waiting.pop(i)
                return

    async def _order(self, o: px.PxOrder) -> Order:
        self._link_exit(o)
        if o.custom_tag:
            self._tags[o.id] = o.custom_tag
        created = self._created.setdefault(o.id, o.created or self.clock())
        return px.to_order(o, account=self.account, symbol=await self.contracts.symbol_of(o.contract_id),
                        client_order_id=self._tags.get(o.id, ""), parent=self._parents.get(o.id), created=created)

    # -- orders ------------------------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> Order:
        contract = await self.contracts.for_ticker(request.symbol)
        body = px.order_body(request, contract, self._acct)
        cid = request.client_order_id
        started = self.clock()

        async def send() -> px.PlaceAnswer | Order:
            try:
                return await self.session.post("/api/Order/place", body, px.PlaceAnswer, what=f"projectx place {cid}",
                                               safe=False, errors={8: UnknownSymbol, 9: UnknownSymbol},
                                               default=OrderRejected)
            except OrderRejected as exc:
                if _TAG_TAKEN.search(exc.reason) and (existing := await self.find_order(cid)) is not None:
                    return existing
                raise

        result = await place_once("projectx", cid, send, lambda: self.find_order(cid, since=started),
                                  self.http.retry, self._sleep, deadline=request.expires_at, clock=self.clock)
        if isinstance(result, Order):
            return result
        return await self._placed(result.order_id, request, contract, started, body)

    async def _placed(
        self, order_id: int | None, request: OrderRequest, contract: px.PxContract, started: datetime,
        body: dict[str, Any],
    ) -> Order:
        if order_id is None:
            found = await self.find_order(request.client_order_id, since=started)
            if found is None:
                raise BrokerUnavailable(f"projectx place {request.client_order_id}: accepted without an order id")
            return found
        self._tags[order_id] = request.client_order_id
        if "takeProfitBracket" in body or "stopLossBracket" in body:
            exits = ("takeProfitBracket" in body) + ("stopLossBracket" in body)
            side = px.PxSide(body["side"])
            self._awaiting_exits.setdefault(contract.id, []).append((order_id, request.client_order_id, side, exits))
        try:
            order = await self._order(await self._get(order_id, since=started))
        except BrokerError as exc:  # placed for sure: answer with what we sent rather than fail
            log.warning("projectx: order %s placed but not read back: %s", order_id, exc.reason)
            order = px.provisional_order(request, order_id, self.account, await self.contracts.symbol_of(contract.id))
        self.reports.remember(order)
        return order

    async def _search(self, since: datetime | None = None) -> list[px.PxOrder]:
        start = (since or self.clock() - LOOKBACK) - timedelta(seconds=5)
        body = {"accountId": self._acct, "startTimestamp": px.iso(start)}
        answer = await self.session.post("/api/Order/search", body, px.OrdersAnswer, what="projectx order search",
                                         safe=True)
        return answer.orders or []

    async def _get(self, order_id: int, since: datetime | None = None) -> px.PxOrder:
        for o in await self._search(since or self._created.get(order_id)):
            if o.id == order_id:
                return o
        raise OrderNotFound(f"projectx: no order {order_id}")

    async def find_order(self, client_order_id: str, since: datetime | None = None) -> Order | None:
        if not client_order_id:
            return None
        found = [o for o in await self._search(since) if o.custom_tag == client_order_id]
        if not found:
            return None
        order = await self._order(max(found, key=lambda o: o.id))
        self.reports.remember(order)
        return order

    def _order_id(self, broker_order_id: str) -> int:
        try:
            return int(broker_order_id)
        except ValueError:
            raise OrderNotFound(f"projectx: {broker_order_id!r} is not a ProjectX order id") from None

    async def cancel_order(self, broker_order_id: str) -> Order:
        oid = self._order_id(broker_order_id)
        try:  # cancelling twice is harmless, so a lost answer may be retried
            await self.session.post("/api/Order/cancel", {"accountId": self._acct, "orderId": oid}, px.Envelope,
                                    what=f"projectx cancel {oid}", safe=True,
                                    errors={1: AuthenticationFailed, 2: OrderNotFound, 6: AuthenticationFailed},
                                    default=OrderRejected)
        except OrderRejected:
            pass  # no longer open (filled, cancelled): answer with the order as it is
        return await self._order(await self._get(oid))

    async def modify_order(
        self, broker_order_id: str, *, quantity: Decimal | None = None, limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> Order:
        oid = self._order_id(broker_order_id)
        body: dict[str, Any] = {"accountId": self._acct, "orderId": oid}
        for key, value in (("size", quantity), ("limitPrice", limit_price), ("stopPrice", stop_price)):
            if value is not None:
                body[key] = int(value) if key == "size" else px.num(value)
        await self.session.post("/api/Order/modify", body, px.Envelope, what=f"projectx modify {oid}", safe=True,
                                errors={1: AuthenticationFailed, 2: OrderNotFound}, default=OrderRejected)
        return await self._order(await self._get(oid))

    async def open_orders(self) -> list[Order]:
        answer = await self.session.post("/api/Order/searchOpen", {"accountId": self._acct}, px.OrdersAnswer,
                                         what="projectx open orders", safe=True)
        return [await self._order(o) for o in answer.orders or []]

    # -- positions, account, fills -----------------------------------------------------------------------

    async def _positions(self) -> list[px.PxPosition]:
        answer = await self.session.post("/api/Position/searchOpen", {"accountId": self._acct}, px.PositionsAnswer,
                                         what="projectx positions", safe=True)
        return [p for p in answer.positions or [] if p.size]

    async def positions(self) -> list[Position]:
        return [
            Position(account=self.account, symbol=await self.contracts.symbol_of(p.contract_id),
                     quantity=Decimal(p.signed_size), average_price=p.average_price)
            for p in await self._positions()
        ]

    async def account_state(self) -> AccountState:
        account = await self._resolve_account()
        return AccountState(account=self.account, broker=self.name, cash=account.balance,
                            equity=account.balance, as_of=self.clock())

    async def close_position(self, symbol: str) -> Order | None:
        return await self._close(await self.contracts.for_ticker(symbol))

    async def _close(self, contract: px.PxContract) -> Order | None:
        started = self.clock()
        try:
            await self.session.post("/api/Position/closeContract", {"accountId": self._acct, "contractId": contract.id},
                                    px.Envelope, what=f"projectx close {contract.name}", safe=False,
                                    errors={2: OrderNotFound, 3: UnknownSymbol, 4: UnknownSymbol},
                                    default=OrderRejected)
        except OrderNotFound:
            return None  # no position
        except BrokerUnavailable:  # answer lost: closed if the position is gone, else the caller is told
            if any(p.contract_id == contract.id for p in await self._positions()):
                raise
        closing = [o for o in await self._search(started)
                   if o.contract_id == contract.id and not o.custom_tag and o.type == px.PxOrderType.MARKET]
        if not closing:
            return None
        order = await self._order(max(closing, key=lambda o: o.id))
        self.reports.remember(order)
        return order

    async def flatten(self) -> FlattenReport:
        """Cancel every working order first (so no exit reopens a position), then close every position."""
        cancelled, closing, errors = [], [], []
        for order in await self.open_orders():
            try:
                cancelled.append(await self.cancel_order(order.broker_order_id))
            except BrokerError as exc:
                errors.append(f"cancel {order.symbol} {order.broker_order_id}: {exc.reason}")
        for position in await self._positions():
            try:
                contract = await self.contracts.by_id(position.contract_id)
                if contract is None:
                    raise UnknownSymbol(f"contract {position.contract_id} not found")
                if (closed := await self._close(contract)) is not None:
                    closing.append(closed)
            except BrokerError as exc:
                errors.append(f"close {position.contract_id}: {exc.reason}")
        return FlattenReport(account=self.account, cancelled=cancelled, closing=closing, errors=errors)

    # -- market data -------------------------------------------------------------------------------------

    async def bars(self, symbol: str, timeframe_seconds: int, start: datetime, end: datetime) -> list[Bar]:
        """Closed bars of `timeframe_seconds` starting in [start, end), oldest first, from retrieveBars."""
        contract = await self.contracts.for_ticker(symbol)
        step = timedelta(seconds=timeframe_seconds)
        out: dict[datetime, Bar] = {}
        for body in px.bars_bodies(contract.id, timeframe_seconds, start, end):
            answer = await self.session.post("/api/History/retrieveBars", body, px.BarsAnswer, safe=True,
                                             what=f"projectx bars {contract.name}", errors={1: UnknownSymbol})
            for b in answer.bars or []:
                at = b.t.astimezone(UTC)
                if start <= at < end and at + step <= self.clock():
                    out[at] = Bar(symbol=symbol, start=at, end=at + step, open=b.o, high=b.h, low=b.l,
                                  close=b.c, volume=Decimal(b.v))
        return [out[at] for at in sorted(out)]


def build(account: str, settings: ProjectXSettings, context: BrokerContext) -> ProjectXBroker:
    """The registry's factory (the gateway's own clock stamps its fills)."""
    return ProjectXBroker(account, settings)
