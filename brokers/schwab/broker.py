"""Charles Schwab Trader API adapter (US stocks): orders, TRIGGER/OCO brackets, positions, balances, fills.

- Login (`brokers.schwab.session`): the OAuth token file `traderd auth schwab` wrote; access tokens are
  renewed by the daemon, the login's end is announced 48 h and 6 h ahead, and once it has ended every call
  is refused with the command to run (entries refused; orders and positions at Schwab are untouched).
- The account is addressed only by its encrypted `hashValue` (`/accounts/accountNumbers`).
- Idempotency without a client order id (`brokers.schwab.claims`): each intent is journaled before it is
  sent; a lost answer is looked up by entered time + instrument + instruction + quantity + type + prices
  among unclaimed orders, and only resent when nothing matches. The engine's client order id is ours:
  orders carry it from the journal, bracket exits as `<id>-tp` / `<id>-sl`.
- Brackets are `TRIGGER` orders whose child is the `OCO` of the take-profit limit and the stop-loss. Trailing
  stops are Schwab's `TRAILING_STOP` (`stopPriceLinkType` VALUE or PERCENT), alone or as a bracket's stop leg.
  Modify is Schwab's replace (`PUT`): the order gets a new id, kept under the same client order id.
- Fills are the execution legs of each order's activity (fill id `<order id>:<n>`), heard by polling the
  orders entered in the last `order_lookback_days` plus every order known to be open, through one
  `brokers.updates.ReportGate`. With `stream` on, Schwab's streamer (`brokers.schwab.stream`) wakes the
  poller on each account activity, and polling otherwise slows by `stream_poll_factor`.
- Market data: `bars()` reads the Market Data API's price history (`marketdata_url`, the same login and
  request budget) through `brokers.schwab.prices`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
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
from brokers.changes import cancel_then_reload, modifiable
from brokers.flatten import cancel_then_close, closing_request
from brokers.http import RetryPolicy, place_once
from brokers.journal import sent_before
from brokers.schwab import models as sm
from brokers.schwab import prices
from brokers.schwab.claims import LEG_SUFFIXES, Claims, intent_of, split_cid
from brokers.schwab.session import SchwabSession
from brokers.schwab.stream import ActivityStream, SchwabStreaming
from brokers.schwab.tokens import TokenFile, token_path
from brokers.stream import Backoff
from brokers.symbols import is_continuous, normalize
from brokers.updates import Feed, ReportGate
from config.brokers import SchwabSettings
from daemon.domain import (
    AccountState,
    Bar,
    Fill,
    FlattenReport,
    Order,
    OrderRequest,
    OrderStatus,
    Position,
    client_order_id,
    utcnow,
)

log = logging.getLogger(__name__)
Tree = dict[str, Any]


def _quiet(text: str) -> None:
    log.warning("%s", text)


class SchwabBroker(BrokerBase):
    name = "schwab"
    # TRAILING_STOP orders, alone or as a bracket's stop leg, by a value or a percent of the bid / ask
    native_trailing = frozenset({"order", "order_percent", "bracket", "bracket_percent"})
    STREAM_GRACE = 120.0  # seconds the streamer may be down (reconnecting) before healthy() says so

    def __init__(
        self,
        account: str,
        settings: SchwabSettings,
        state_dir: Path,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
        *,
        announce: Callable[[str], None] = _quiet,
        retry: RetryPolicy | None = None,
        poll_interval: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stream_backoff: Backoff | None = None,
    ) -> None:
        super().__init__(account)
        self.settings, self.clock, self._sleep = settings, clock, sleep
        self.poll_interval = settings.poll_interval_seconds if poll_interval is None else poll_interval
        self.session = SchwabSession(account, settings, TokenFile(token_path(state_dir, account)), clock, announce,
                                     http=http, retry=retry, sleep=sleep)
        self.claims = Claims(state_dir / "schwab" / f"{account}.orders", settings.lookup_skew_seconds)
        self.account_hash: str | None = None
        self.reports = ReportGate(self.emit)
        self.updates = Feed(f"schwab {account}", self.poll_once, lambda: self.poll_interval,
                            lambda: self.poll_interval * settings.stream_poll_factor)
        if settings.stream:
            self.updates.stream = ActivityStream(f"schwab {account}", SchwabStreaming(self.session, settings),
                                                 self.updates.wake, self.updates.wake, stream_backoff)
        self._links: dict[str, tuple[str | None, str | None]] = {}  # order id -> (entry id, OCO group)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def connect(self) -> None:
        try:
            numbers = await self.session.json("GET", "/accounts/accountNumbers", what="schwab account numbers")
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(f"schwab is unreachable at {self.settings.base_url}: {exc.reason}") from None
        self.account_hash = _pick_hash(numbers or [], self.settings.account_number, self.account)
        for tree in await self._list(self.clock() - timedelta(days=self.settings.order_lookback_days)):
            for order, raw in self._orders(tree):  # what exists now is not news: reports are changes from here
                self.reports.seen_fills.update(f.fill_id for f in sm.fills_of(order, raw, self.clock()))
                self.reports.remember(order)
        self.updates.start()

    async def close(self) -> None:
        await self.updates.stop()
        await self.session.aclose()

    def healthy(self) -> bool:
        """Logged in (the refresh token alive), the last request answered, polling alive, and the streamer
        (if on) up or reconnecting within its grace period."""
        return self.session.healthy() and self.updates.healthy(self.STREAM_GRACE)

    def _path(self, tail: str = "") -> str:
        if self.account_hash is None:
            raise BrokerUnavailable(f"schwab {self.account}: not connected yet")
        return f"/accounts/{self.account_hash}{tail}"

    # -- reading orders ----------------------------------------------------------------------------------

    async def _list(self, start: datetime, end: datetime | None = None) -> list[Tree]:
        end = end or self.clock() + timedelta(days=1)
        params = {"fromEnteredTime": sm.wire_time(start), "toEnteredTime": sm.wire_time(end), "maxResults": 3000}
        data = await self.session.json("GET", self._path("/orders"), params=params, what="schwab orders")
        return list(data or [])

    async def _tree(self, order_id: str) -> Tree:
        if not order_id.isdigit():
            raise OrderNotFound(f"schwab order {order_id!r}: order ids are numbers")
        data: Tree = await self.session.json("GET", self._path(f"/orders/{order_id}"), what=f"schwab order {order_id}")
        return data

    def _orders(self, tree: Tree) -> list[tuple[Order, Tree]]:
        """Every order of a strategy tree as an Order (bracket exits pointing to their entry)."""
        out = []
        nodes = list(sm.flatten_tree(tree))
        for raw, parent, group in nodes:
            order_id = str(raw["orderId"])
            if parent is not None or group is not None:
                self._links[order_id] = (parent, group)
            parent, group = self._links.get(order_id, (parent, group))
            cid = self.claims.cid_of(order_id)
            if not cid and parent is not None:
                entry_cid = self.claims.cid_of(parent)
                cid = entry_cid + LEG_SUFFIXES.get(str(raw.get("orderType")), "-leg") if entry_cid else ""
            symbol = str((sm.leg_of(raw).get("instrument") or {}).get("symbol") or "")
            out.append((sm.to_order(raw, self.account, symbol, cid, parent, group, self.clock()), raw))
        return out

    async def _load(self, order_id: str) -> tuple[Order, Tree]:
        tree = await self._tree(order_id)
        for order, raw in self._orders(tree):
            if order.broker_order_id == order_id:
                return order, raw
        raise OrderNotFound(f"schwab order {order_id}: not in its own answer")

    # -- placing -----------------------------------------------------------------------------------------

    def _symbol(self, ticker: str) -> str:
        if is_continuous(ticker):
            raise UnknownSymbol(f"{ticker}: Schwab's Trader API trades stocks here, not futures; nothing was sent")
        return normalize(ticker)

    async def _held(self, symbol: str) -> Decimal:
        return sum((p.quantity for p in await self.positions() if p.symbol == symbol), Decimal(0))

    async def place_order(self, request: OrderRequest) -> Order:
        symbol, cid = self._symbol(request.symbol), request.client_order_id
        if (existing := await sent_before(self.claims.journal, "schwab", cid, self.find_order)) is not None:
            return existing  # sent before (this run or an earlier one): never twice
        body = sm.order_body(request, symbol, await self._held(symbol))
        self.claims.sending(cid, body, self.clock(), self.reports.known)
        what = f"schwab place {cid}"

        async def send() -> str:
            try:
                response = await self.session.call("POST", self._path("/orders"), json=body, safe=False, order=True,
                                                   what=what, forbidden=OrderRejected)
            except OrderRejected as exc:
                self.claims.refused(cid, exc.reason)
                raise
            try:
                return sm.order_id_from(response.headers.get("Location"))
            except ValueError as exc:  # accepted, but which order is it? the lookup says
                raise BrokerUnavailable(f"{what}: {exc}") from None

        result = await place_once("schwab", cid, send, lambda: self.find_order(cid), self.session.http.retry,
                                  self._sleep)
        if isinstance(result, Order):
            return result
        self.claims.placed(cid, result)
        return await self._read_back(result, request, symbol)

    async def _read_back(self, order_id: str, request: OrderRequest, symbol: str) -> Order:
        try:
            orders = self._orders(await self._tree(order_id))
        except BrokerError as exc:  # placed; the poller and reconciliation will tell the rest
            log.warning("schwab: order %s placed as %s but not read back: %s", request.client_order_id, order_id,
                        exc.reason)
            return Order(broker_order_id=order_id, client_order_id=request.client_order_id, account=self.account,
                         symbol=symbol, side=request.side, quantity=request.quantity, order_type=request.order_type,
                         status=OrderStatus.NEW, limit_price=request.limit_price, stop_price=request.stop_price,
                         time_in_force=request.time_in_force, created_at=self.clock(), updated_at=self.clock())
        placed = next(o for o, _ in orders if o.broker_order_id == order_id)
        self.reports.remember(placed)
        for order, _ in orders:  # the caller is told of the entry only: its exits are news for the engine
            if order is not placed:
                await self.reports.order(order)
        return placed

    async def find_order(self, client_order_id: str) -> Order | None:
        base, _ = split_cid(client_order_id)
        entry = self.claims.entry(base)
        if entry is None:
            return None
        order_id = str(entry.get("order_id") or "")
        if not order_id:
            bounds = self.claims.window(base, self.clock())
            if bounds is None:
                return None
            found = self.claims.match(base, await self._list(*bounds))
            if found is None:
                return None
            order_id = str(found["orderId"])
            log.warning("schwab: order %s had no answer; found it as %s by its details", base, order_id)
            self.claims.placed(base, order_id, found_by="lookup")
        try:
            orders = self._orders(await self._tree(order_id))
        except OrderNotFound:
            return None
        wanted = [o for o, _ in orders if o.client_order_id == client_order_id]
        return wanted[0] if wanted else None

    # -- changing orders ---------------------------------------------------------------------------------

    async def cancel_order(self, broker_order_id: str) -> Order:
        async def cancel(_: Tree) -> None:
            await self.session.call("DELETE", self._path(f"/orders/{broker_order_id}"), safe=True, order=True,
                                    what=f"schwab cancel {broker_order_id}")

        order = await cancel_then_reload(broker_order_id, self._load, cancel)
        self.reports.remember(order)
        return order

    async def modify_order(
        self,
        broker_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> Order:
        what = f"schwab modify {broker_order_id}"
        current, raw = await modifiable(broker_order_id, self._load, what)
        body = sm.replace_body(raw, quantity, limit_price, stop_price)
        cid = current.client_order_id or client_order_id(self.account, f"schwab-{broker_order_id}")
        sent_at = self.clock()
        try:
            response = await self.session.call("PUT", self._path(f"/orders/{broker_order_id}"), json=body, safe=False,
                                               order=True, what=what, forbidden=OrderRejected)
            new_id = sm.order_id_from(response.headers.get("Location"))
        except (BrokerUnavailable, ValueError) as exc:
            new_id = await self._find_replacement(broker_order_id, body, sent_at, what, exc)
        self.claims.replaced(cid, broker_order_id, new_id, body, sent_at)
        order, _ = await self._load(new_id)
        self.reports.remember(order)
        return order

    async def _find_replacement(self, old_id: str, body: Tree, sent_at: datetime, what: str,
                                exc: Exception) -> str:
        """A replace whose answer was lost: the new order is the unclaimed one matching `body`, if any."""
        reason = exc.reason if isinstance(exc, BrokerError) else str(exc)
        intent, skew = intent_of(body, sent_at), self.claims.skew
        taken = self.claims.claimed() | set(self.reports.known)
        for tree in await self._list(sent_at - skew, self.clock() + skew):
            if str(tree.get("orderId")) not in taken and sm.matches(tree, intent):
                return str(tree["orderId"])
        raise BrokerUnavailable(f"{what}: {reason}; no replacement order found, the original is left as it is")

    async def open_orders(self) -> list[Order]:
        trees = await self._list(self.clock() - timedelta(days=self.settings.order_lookback_days))
        return [o for tree in trees for o, _ in self._orders(tree) if o.status.is_open]

    # -- positions, account, fills -----------------------------------------------------------------------

    async def _account(self) -> Tree:
        data: Tree = await self.session.json("GET", self._path(), params={"fields": "positions"},
                                             what="schwab account")
        return data

    async def positions(self) -> list[Position]:
        rows = (await self._account()).get("securitiesAccount", {}).get("positions") or []
        return [p for p in (sm.to_position(row, self.account) for row in rows) if p.quantity != 0]

    async def account_state(self) -> AccountState:
        return sm.to_account_state(await self._account(), self.account, self.name, self.clock())

    async def _trees_with_open(self, start: datetime) -> list[Tree]:
        """Orders entered since `start`, plus every order known open that was entered before it."""
        trees = await self._list(start)
        listed = {str(raw["orderId"]) for tree in trees for raw, _, _ in sm.flatten_tree(tree)}
        for order_id, (status, _) in list(self.reports.known.items()):
            if status.is_open and order_id not in listed:
                try:
                    trees.append(await self._tree(order_id))
                except OrderNotFound:
                    continue
        return trees

    async def fills(self, since: datetime | None = None) -> list[Fill]:
        start = (since or self.clock()) - timedelta(days=self.settings.order_lookback_days)
        out = []
        for tree in await self._trees_with_open(start):
            for order, raw in self._orders(tree):
                out += [f for f in sm.fills_of(order, raw, self.clock()) if since is None or f.filled_at >= since]
        return sorted(out, key=lambda f: (f.filled_at, f.fill_id))

    # -- closing -----------------------------------------------------------------------------------------

    async def close_position(self, symbol: str) -> Order | None:
        symbol = self._symbol(symbol)
        request = closing_request("schwab", self.account, symbol, await self._held(symbol), self.clock())
        return None if request is None else await self.place_order(request)

    async def flatten(self) -> FlattenReport:
        """Cancel every working order (entries first: their exits go with them), then close every position."""
        return await cancel_then_close(self)

    # -- market data -------------------------------------------------------------------------------------

    async def bars(self, symbol: str, timeframe_seconds: int, start: datetime, end: datetime) -> list[Bar]:
        """Closed bars of `timeframe_seconds` starting in [start, end), oldest first, from the price history."""
        prices.frequency_of(timeframe_seconds)  # refuse a length Schwab does not serve before any request
        if is_continuous(symbol):
            raise UnknownSymbol(f"{symbol}: Schwab price history here is for stocks, not futures")
        wire = normalize(symbol)

        async def get(params: Any) -> Any:
            return await self.session.json("GET", f"{self.settings.marketdata_url}/pricehistory", params=params,
                                           what=f"schwab price history {wire}")

        return await prices.fetch_bars(get, wire, symbol, timeframe_seconds, start, end, self.clock())

    # -- polling -----------------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Push new fills and order status changes (each exactly once) to the report handler."""
        self.session.check_login()  # the login's end is announced even when nothing trades
        start = self.clock() - timedelta(days=self.settings.order_lookback_days)
        for tree in await self._trees_with_open(start):
            for order, raw in self._orders(tree):
                for fill in sm.fills_of(order, raw, self.clock()):
                    await self.reports.fill(fill)
                await self.reports.order(order)


def _pick_hash(numbers: list[dict[str, Any]], wanted: str | None, account: str) -> str:
    """The `hashValue` of the configured account number (or of the only account); numbers are masked."""
    rows = [(str(n.get("accountNumber") or ""), str(n.get("hashValue") or "")) for n in numbers]
    masked = ", ".join(f"...{number[-4:]}" for number, _ in rows) or "none"
    if wanted is not None:
        found = [h for number, h in rows if number == wanted.strip()]
        if not found:
            raise AuthenticationFailed(f"schwab {account}: this login has no account ...{wanted.strip()[-4:]} "
                                       f"(accounts: {masked})")
        return found[0]
    if len(rows) != 1:
        raise AuthenticationFailed(f"schwab {account}: this login has {len(rows)} accounts ({masked}); set "
                                   "account_number to pick one")
    return rows[0][1]


def build(account: str, settings: SchwabSettings, context: BrokerContext) -> SchwabBroker:
    """The registry's factory: token file and order journal live in `state_dir/schwab/`."""
    return SchwabBroker(account, settings, context.state_dir, clock=context.clock, announce=context.announce)
