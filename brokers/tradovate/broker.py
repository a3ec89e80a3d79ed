"""Tradovate REST adapter (prop-firm futures): orders and OSO brackets, positions, cash, fills by stream and polling.

Calls go through `brokers.tradovate.session` (access tokens, p-ticket throttling); this module adds:
- Business failures (HTTP 200 with `failureReason`/`failureText`) become `OrderRejected` with the reason.
- Idempotency: Tradovate does not deduplicate `clOrdId`, so every client order id is journaled (fsynced,
  `brokers.journal`) before it is sent; a known id, or a lost answer, is looked up in
  `/command/list` (the only entity carrying `clOrdId`) and the existing order returned instead.
- Symbols (`brokers.tradovate.contracts`): `ES1!`/`CME_MINI:ES1!` -> front contract -> `/contract/find`.
  Positions, orders and fills are reported under the ticker the engine used for that contract while it is
  still the front one (`ES1!`), so target-position and exit signals see the position; else the contract name.
- Fills and status changes arrive by the user websocket (`brokers.tradovate.stream`, props events) and by
  polling (`/order/list`, `/fill/list`), both started in `connect()` (`brokers.updates.Feed`); polling runs
  `stream_poll_factor` times slower while the stream is up. Both name a fill by Tradovate's fill `id` and
  report through one `brokers.updates.ReportGate`, so each fill and each status change reaches the engine
  once, and status only moves forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
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
)
from brokers.flatten import cancel_working
from brokers.http import RetryPolicy, place_once
from brokers.journal import OrderJournal, sent_before
from brokers.stream import Backoff, ReconnectingStream
from brokers.symbols import POINT_VALUES, RollRule, futures_root
from brokers.tradovate.contracts import Contracts
from brokers.tradovate.models import (
    M,
    TvAccount,
    TvCashSnapshot,
    TvCommand,
    TvFill,
    TvOrder,
    TvOrderVersion,
    TvPosition,
    build_order,
    failure_of,
    modify_body,
    order_body,
    order_number,
    order_state,
    parse,
    parse_list,
    pick_account,
    provisional_order,
    to_account_state,
    to_fill,
)
from brokers.tradovate.session import TradovateSession
from brokers.tradovate.stream import TradovateStreaming
from brokers.updates import Feed, ReportGate
from config.brokers import TradovateSettings
from daemon.domain import AccountState, Fill, FlattenReport, Order, OrderRequest, OrderStatus, Position, utcnow

log = logging.getLogger(__name__)

DEFAULT_ROLL = RollRule()


class TradovateBroker(BrokerBase, TradovateStreaming):
    name = "tradovate"
    native_trailing = frozenset({"order", "bracket"})  # by a price distance (a percent trail: the daemon's)
    STREAM_GRACE = 120.0  # seconds a stream may be down (reconnecting) before healthy() says so

    def __init__(
        self,
        account: str,
        settings: TradovateSettings,
        state_dir: Path,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
        *,
        poll_interval: float | None = None,
        retry: RetryPolicy | None = None,
        roll: RollRule = DEFAULT_ROLL,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stream_backoff: Backoff | None = None,
        stream_heartbeat: float = 2.5,
    ) -> None:
        super().__init__(account)
        self.settings, self.clock, self.roll, self._sleep = settings, clock, roll, sleep
        self.poll_interval = settings.poll_interval_seconds if poll_interval is None else poll_interval
        self.session = TradovateSession(settings, http, clock=clock, retry=retry, sleep=sleep)
        self.http = self.session.http
        self.journal = OrderJournal(state_dir / "tradovate" / f"{account}.orders")
        self.contracts = Contracts(self.session, clock, roll, self.journal.aliases())
        self.account_id: int | None = settings.account_id
        self.account_spec: str | None = settings.account_spec
        self._versions: dict[int, TvOrderVersion] = {}
        self._clordids: dict[int, str] = {}
        self.reports = ReportGate(self.emit)
        self.updates = Feed(f"tradovate {account}", self.poll_once, lambda: self.poll_interval,
                            lambda: self.poll_interval * self.settings.stream_poll_factor)
        self.updates.stream = self._init_stream(f"tradovate {account}", stream_backoff, stream_heartbeat,
                                                self.updates.wake)

    @property
    def stream(self) -> ReconnectingStream | None:
        return self.updates.stream

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def connect(self) -> None:
        try:
            await self.session.ensure_token()
            accounts = await self._list(TvAccount, "/account/list", "tradovate accounts")
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(f"tradovate is unreachable at {self.settings.base_url}: {exc.reason}") from None
        chosen = pick_account(accounts, self.settings.account_id, self.account_spec)
        if chosen is None:
            wanted = self.settings.account_id or self.account_spec or "any"
            names = ", ".join(a.name for a in accounts) or "none"
            raise AuthenticationFailed(f"tradovate user {self.settings.username!r} has no account {wanted} "
                                       f"(accounts: {names})")
        self.account_id, self.account_spec = chosen.id, chosen.name
        if self.session.user_id is None:
            self.session.user_id = chosen.userId
        orders, fills = await self._lists()  # what exists now is not news: reports are changes from here
        self.reports.seen_fills.update(str(f.id) for f in fills)
        for o in orders:
            self.reports.known[str(o.id)] = order_state(o, fills)
        self.updates.start()

    async def close(self) -> None:
        await self.updates.stop()
        await self.session.aclose()

    def healthy(self) -> bool:
        """REST session and polling alive; a stream refused, or down past its grace period, also fails."""
        return self.session.healthy() and self.updates.healthy(self.STREAM_GRACE)

    def multiplier(self, symbol: str) -> Decimal:
        return POINT_VALUES.get(futures_root(symbol) or "", Decimal(1))

    async def _list(self, model: type[M], path: str, what: str, **params: Any) -> list[M]:
        return parse_list(model, await self.session.get(path, what, **params), what)

    # -- reading orders ----------------------------------------------------------------------------------

    async def _lists(self) -> tuple[list[TvOrder], list[TvFill]]:
        """This account's orders and their (active) fills; `/fill/list` has no account id, so via order id."""
        orders = [o for o in await self._list(TvOrder, "/order/list", "tradovate orders")
                  if o.accountId == self.account_id]
        ids = {o.id for o in orders}
        fills = [f for f in await self._list(TvFill, "/fill/list", "tradovate fills") if f.orderId in ids and f.active]
        self._learn(orders, fills)
        return orders, fills

    async def _details(self, orders: Iterable[TvOrder], *, force: bool = False) -> None:
        """Quantity/type/prices live on OrderVersion, clOrdId on Command: load them for orders lacking them."""
        ids = {o.id for o in orders}
        if not force and ids <= self._versions.keys() and ids <= self._clordids.keys():
            return
        versions = await self._list(TvOrderVersion, "/orderVersion/list", "tradovate versions")
        for version in sorted(versions, key=lambda v: v.id):
            self._versions[version.orderId] = version
        self._learn_commands(await self._list(TvCommand, "/command/list", "tradovate commands"))
        for order_id in ids:
            self._clordids.setdefault(order_id, "")

    def _learn_commands(self, commands: Iterable[TvCommand]) -> None:
        for command in commands:
            if command.commandType == "New" and command.clOrdId:
                self._clordids[command.orderId] = command.clOrdId

    async def _load_order(self, order_id: int) -> tuple[TvOrder, Order]:
        what = f"tradovate order {order_id}"
        raw = parse(TvOrder, await self.session.get("/order/item", what, id=order_id), what)
        await self._details_of(order_id, refresh=True)
        fills = [f for f in await self._list(TvFill, "/fill/deps", what, masterid=order_id) if f.active]
        return raw, await self._to_order(raw, fills)

    async def _to_order(self, raw: TvOrder, fills: list[TvFill]) -> Order:
        symbol = await self.contracts.symbol_of(raw.contractId)
        return build_order(raw, fills, self._versions.get(raw.id), self._clordids.get(raw.id, ""), self.account,
                           symbol, self.clock())

    # -- placing -----------------------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> Order:
        contract, _, display = await self.contracts.resolve(request.symbol)
        path, body = order_body(request, contract, self.account_id, self.account_spec)
        cid = request.client_order_id
        if (existing := await sent_before(self.journal, "tradovate", cid, self.find_order)) is not None:
            return existing  # sent before (this run or an earlier one): never twice
        self.contracts.aliases[contract] = display
        self.journal.record(cid, "sending", symbol=display, contract=contract)
        what = f"tradovate place {cid}"

        async def send() -> Any:
            try:
                return await self.session.call("POST", path, json=body, safe=False, what=what)
            except OrderRejected as exc:
                self.journal.record(cid, "refused", reason=exc.reason)
                raise

        data = await place_once("tradovate", cid, send, lambda: self.find_order(cid), self.http.retry, self._sleep,
                                deadline=request.expires_at, clock=self.clock)
        if isinstance(data, Order):
            return data
        failure = failure_of(data)
        if failure or not isinstance(data, dict) or not data.get("orderId"):
            self.journal.record(cid, "refused", reason=failure)
            raise OrderRejected(f"tradovate refused order {cid} ({request.side.value} "
                                f"{request.quantity.normalize():f} {display}): {failure or 'no order id'}")
        order_id = int(data["orderId"])
        self._clordids[order_id] = cid
        for key, suffix in (("oso1Id", 1), ("oso2Id", 2)):
            if data.get(key):
                self._clordids[int(data[key])] = str(body[f"bracket{suffix}"]["clOrdId"])
        self.journal.record(cid, "placed", order_id=order_id, symbol=display, contract=contract)
        try:
            order = (await self._load_order(order_id))[1]
        except BrokerError as exc:  # placed; the poller and reconciliation will tell the rest
            log.warning("tradovate: order %s placed as %s but not read back: %s", cid, order_id, exc.reason)
            order = provisional_order(request, order_id, display, self.clock())
        self.reports.remember(order)
        return order

    async def find_order(self, client_order_id: str) -> Order | None:
        commands = await self._list(TvCommand, "/command/list", "tradovate commands")
        self._learn_commands(commands)
        ids = sorted({c.orderId for c in commands if c.clOrdId == client_order_id and c.commandType == "New"})
        found: list[Order] = []
        for order_id in ids:
            with contextlib.suppress(OrderNotFound):
                raw, order = await self._load_order(order_id)
                if raw.accountId == self.account_id:
                    found.append(order)
        if len(found) > 1:
            log.error("tradovate: %d orders carry client order id %s: %s", len(found), client_order_id,
                      ", ".join(o.broker_order_id for o in found))
        if not found:
            return None
        entry = self.journal.get(client_order_id)
        if entry is not None and entry.get("state") != "placed":
            self.journal.record(client_order_id, "placed", order_id=int(found[0].broker_order_id))
        return found[0]

    # -- changing orders ---------------------------------------------------------------------------------

    async def cancel_order(self, broker_order_id: str) -> Order:
        order_id = order_number(broker_order_id)
        what = f"tradovate cancel {order_id}"
        data = await self.session.call("POST", "/order/cancelorder", json={"orderId": order_id, "isAutomated": True},
                                safe=True, what=what)  # cancelling twice is harmless: resend is safe
        order = (await self._load_order(order_id))[1]
        failure = failure_of(data)
        if failure and order.status.is_open:
            raise OrderRejected(f"{what}: {failure}")
        self.reports.remember(order)
        return order  # a finished order comes back unchanged (TooLate)

    async def modify_order(
        self,
        broker_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> Order:
        order_id = order_number(broker_order_id)
        what = f"tradovate modify {order_id}"
        current = (await self._load_order(order_id))[1]
        version = self._versions.get(order_id)
        if not current.status.is_open or version is None:
            raise OrderRejected(f"{what}: order is {current.status.value}, it cannot be modified")
        body = modify_body(version, quantity, limit_price, stop_price, what)
        # absolute values: resending is harmless
        data = await self.session.call("POST", "/order/modifyorder", json=body, safe=True, what=what)
        if failure := failure_of(data):
            raise OrderRejected(f"{what}: {failure}")
        order = (await self._load_order(order_id))[1]
        self.reports.remember(order)
        return order

    async def open_orders(self) -> list[Order]:
        orders, fills = await self._lists()
        await self._details(orders, force=True)
        result = [await self._to_order(o, fills) for o in orders]
        return [o for o in result if o.status.is_open]

    # -- positions, account, fills -----------------------------------------------------------------------

    async def _raw_positions(self) -> list[TvPosition]:
        rows = await self._list(TvPosition, "/position/list", "tradovate positions")
        return [p for p in rows if p.accountId == self.account_id and p.netPos != 0]  # flat rows are kept

    async def positions(self) -> list[Position]:
        return [Position(account=self.account, symbol=await self.contracts.symbol_of(p.contractId),
                         quantity=Decimal(p.netPos), average_price=p.netPrice or Decimal(0))
                for p in await self._raw_positions()]

    async def account_state(self) -> AccountState:
        what = "tradovate cash balance"
        data = await self.session.call("POST", "/cashBalance/getcashbalancesnapshot", safe=True, what=what,
                                       json={"accountId": self.account_id})
        return to_account_state(parse(TvCashSnapshot, data, what), what, self.account, self.name, self.clock())

    async def _fill(self, raw: TvFill) -> Fill:
        return to_fill(raw, self._clordids.get(raw.orderId, ""), self.account,
                       await self.contracts.symbol_of(raw.contractId), self.clock())

    async def fills(self, since: datetime | None = None) -> list[Fill]:
        orders, raw = await self._lists()
        await self._details(orders)
        fills = [await self._fill(f) for f in sorted(raw, key=lambda f: (f.timestamp, f.id))]
        return [f for f in fills if since is None or f.filled_at >= since]

    # -- closing -----------------------------------------------------------------------------------------

    async def _liquidate(self, contract_id: int, what: str) -> Order | None:
        data = await self.session.call("POST", "/order/liquidateposition", safe=False, what=what,
                                json={"accountId": self.account_id, "contractId": contract_id, "admin": False})
        if failure := failure_of(data):
            raise OrderRejected(f"{what}: {failure}")
        if not isinstance(data, dict) or not data.get("orderId"):
            return None
        order = (await self._load_order(int(data["orderId"])))[1]
        self.reports.remember(order)
        return order

    async def close_position(self, symbol: str) -> Order | None:
        contract, contract_id, _ = await self.contracts.resolve(symbol)
        if not any(p.contractId == contract_id for p in await self._raw_positions()):
            return None
        return await self._liquidate(contract_id, f"tradovate close {contract}")

    async def flatten(self) -> FlattenReport:
        """Cancel every working order (entries before their bracket legs), then liquidate every position."""
        cancelled, errors = await cancel_working(self)
        closing: list[Order] = []
        for position in await self._raw_positions():
            name = await self.contracts.symbol_of(position.contractId)
            try:
                closed = await self._liquidate(position.contractId, f"tradovate flatten {name}")
            except BrokerError as exc:
                errors.append(f"{name}: {exc.reason}")
                continue
            if closed is not None:
                closing.append(closed)
        return FlattenReport(account=self.account, cancelled=cancelled, closing=closing, errors=errors)

    # -- polling -----------------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Push new fills and order status changes (each exactly once) to the report handler."""
        orders, fills = await self._lists()
        seen = self.reports.seen_fills
        new_fills = sorted((f for f in fills if str(f.id) not in seen), key=lambda f: (f.timestamp, f.id))
        changed = [o for o in orders if self.reports.known.get(str(o.id)) != order_state(o, fills)]
        if not new_fills and not changed:
            return
        await self._details(orders, force=bool(changed))
        for raw in new_fills:  # marked seen after the handler took it: a failed handler sees it again
            await self.reports.fill(await self._fill(raw))
        for raw_order in changed:  # a stale view (the stream was quicker) is dropped there
            order = await self._to_order(raw_order, fills)
            if order.status is OrderStatus.PARTIALLY_FILLED and order.filled_quantity >= order.quantity:
                continue  # the order list was read before the fill that completed it: the next poll tells
            await self.reports.order(order)


def build(account: str, settings: TradovateSettings, context: BrokerContext) -> TradovateBroker:
    """The registry's factory: the order journal lives in `state_dir/tradovate/`."""
    return TradovateBroker(account, settings, context.state_dir)
