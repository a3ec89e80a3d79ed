"""tastytrade adapter (stocks, futures): orders, OTOCO brackets, dry runs, positions, balances, streamed fills.

- Login and renewal: `brokers.tastytrade.session` (OAuth refresh token or session login + remember-token).
- Symbols: `NASDAQ:AAPL` is the equity `AAPL`; `CME_MINI:ES1!` is the front contract `/ESZ6` (rolled by
  `brokers.symbols`), reported back as the ticker the engine last traded it by (`brokers.symbols.engine_symbol`).
- Idempotency: tastytrade does not deduplicate, and `external-identifier` (the engine's client order id,
  `<id>-tp` / `<id>-sl` on bracket exits) is only echoed. So each placement is journaled (fsynced) before it
  is sent; after a lost answer, or on a restart, the orders received since the journaled send time are
  searched for that identifier, and only when none has it is the order sent again.
- Brackets are complex orders: `OTOCO` (the entry, then the OCO of a GTC take-profit limit and a GTC stop),
  `OTO` when only one exit is given. Cancelling an entry cancels its complex order.
- Modify is tastytrade's replace (`PUT`, prices and type only): the order gets a new id, same identifier; a new
  quantity is a cancel and a new placement (`brokers.tastytrade.resize`, an OCO pair placed again together).
- `dry_run(order)` runs the preflight checks of `/orders/dry-run` without placing anything.
- Fills are each order leg's `fills`, heard from the account streamer's Order notifications
  (`brokers.tastytrade.stream`, when `stream` is on and its URL is known) and by polling `/orders/live`
  plus every order known to be open (slower by `stream_poll_factor` while the streamer is up), through
  one `brokers.updates.ReportGate`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx

from brokers.base import (
    AuthenticationFailed,
    BrokerBase,
    BrokerContext,
    BrokerUnavailable,
    OrderNotFound,
    OrderRejected,
)
from brokers.changes import cancel_then_reload, modifiable
from brokers.flatten import cancel_then_close, closing_request
from brokers.http import RetryPolicy, place_once
from brokers.journal import OrderJournal, sent_before
from brokers.stream import Backoff
from brokers.symbols import (
    POINT_VALUES,
    RollRule,
    futures_root,
)
from brokers.tastytrade import models as tm
from brokers.tastytrade.orders import Orders, Raw
from brokers.tastytrade.resize import resize
from brokers.tastytrade.session import TastytradeSession
from brokers.tastytrade.stream import account_stream
from brokers.updates import Feed, ReportGate
from config.brokers import TastytradeSettings
from daemon.domain import (
    AccountState,
    Fill,
    FlattenReport,
    Order,
    OrderRequest,
    Position,
    Side,
    client_order_id,
    utcnow,
)

log = logging.getLogger(__name__)


class TastytradeBroker(BrokerBase):
    name = "tastytrade"
    STREAM_GRACE = 120.0  # seconds the streamer may be down (reconnecting) before healthy() says so

    def __init__(
        self,
        account: str,
        settings: TastytradeSettings,
        state_dir: Path,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
        *,
        retry: RetryPolicy | None = None,
        poll_interval: float | None = None,
        roll: RollRule | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stream_backoff: Backoff | None = None,
    ) -> None:
        super().__init__(account)
        self.settings, self.clock, self.roll, self._sleep = settings, clock, roll or RollRule(), sleep
        self.poll_interval = settings.poll_interval_seconds if poll_interval is None else poll_interval
        self.session = TastytradeSession(account, settings, clock, http=http, retry=retry, sleep=sleep)
        self.journal = OrderJournal(state_dir / "tastytrade" / f"{account}.orders")
        self.skew = timedelta(seconds=settings.lookup_skew_seconds)
        self.orders = Orders(self.session, account, clock, self.roll, self.journal.aliases(), self.skew)
        self.reports = ReportGate(self.emit)
        self.updates = Feed(f"tastytrade {account}", self.poll_once, lambda: self.poll_interval,
                            lambda: self.poll_interval * settings.stream_poll_factor)
        if settings.stream and (url := settings.streamer_url()):
            self.updates.stream = account_stream(f"tastytrade {account}", url, self.session,
                                                 lambda: self.orders.account_number, self._report,
                                                 self.updates.wake, stream_backoff)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def connect(self) -> None:
        try:
            accounts = await self.session.items("GET", "/customers/me/accounts", what="tastytrade accounts")
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(f"tastytrade is unreachable at {self.settings.base_url}: {exc.reason}") from None
        self.orders.account_number = _pick_account(accounts, self.settings.account_number, self.account)
        for raw in await self.orders.live():  # what exists now is not news: reports are changes from here
            order = await self.orders.order(raw)
            self.reports.seen_fills.update(f.fill_id for f in tm.fills_of(order, raw))
            self.reports.remember(order)
        self.updates.start()

    async def close(self) -> None:
        await self.updates.stop()
        await self.session.aclose()

    def healthy(self) -> bool:
        return self.session.healthy() and self.updates.healthy(self.STREAM_GRACE)

    def multiplier(self, symbol: str) -> Decimal:
        return POINT_VALUES.get(futures_root(symbol) or "", Decimal(1))

    # -- placing -----------------------------------------------------------------------------------------

    async def _held(self, inst: tm.Instrument) -> Decimal:
        if inst.kind == tm.FUTURE:
            return Decimal(0)  # futures take Buy / Sell whatever is held
        rows = await self.session.items("GET", self.orders.path("/positions"), what="tastytrade positions")
        return sum((tm.signed_quantity(r) for r in rows if r.get("symbol") == inst.symbol), Decimal(0))

    async def place_order(self, request: OrderRequest) -> Order:
        inst, cid = self.orders.instrument(request.symbol), request.client_order_id
        if (existing := await sent_before(self.journal, "tastytrade", cid, self.find_order)) is not None:
            return existing  # sent before (this run or an earlier one): never twice
        is_complex, body = tm.order_body(request, inst, await self._held(inst))
        if inst.kind == tm.FUTURE:
            self.orders.aliases[inst.symbol[1:]] = inst.display
        self.journal.record(cid, "sending", sent_at=self.clock().isoformat(), symbol=inst.display,
                            **({"contract": inst.symbol[1:]} if inst.kind == tm.FUTURE else {}))
        path, what = self.orders.path("/complex-orders" if is_complex else "/orders"), f"tastytrade place {cid}"

        async def send() -> Raw:
            try:
                data: Raw = await self.session.data("POST", path, json=body, safe=False, what=what,
                                                    forbidden=OrderRejected)
            except OrderRejected as exc:
                self.journal.record(cid, "refused", reason=exc.reason)
                raise
            return data

        result = await place_once("tastytrade", cid, send, lambda: self.find_order(cid), self.session.http.retry,
                                  self._sleep)
        if isinstance(result, Order):
            return result
        return await self._placed(cid, result)

    async def _placed(self, cid: str, data: Raw) -> Order:
        complex_order = data.get("complex-order")
        if complex_order:
            self.orders.learn(complex_order)
            raws = [raw for raw, _, _ in tm.complex_parts(complex_order)]
        else:
            raws = [data["order"]]
        ids = {tm.split_cid(str(r.get("external-identifier") or cid))[1] or "entry": str(r["id"]) for r in raws}
        self.journal.record(cid, "placed", order_id=ids.pop("entry", str(raws[0]["id"])), legs=ids,
                            **({"complex_id": str(complex_order["id"])} if complex_order else {}))
        orders = [await self.orders.order(raw) for raw in raws]
        self.reports.remember(orders[0])
        for order in orders[1:]:  # the caller is told of the entry only: its exits are news for the engine
            await self.reports.order(order)
        return orders[0]

    async def find_order(self, client_order_id: str) -> Order | None:
        """The order carrying `client_order_id` as its external identifier, if this adapter ever sent it: by
        its id once known, else among the orders received since it was journaled (the newest, after a replace)."""
        base, suffix = tm.split_cid(client_order_id)
        entry = self.journal.get(base)
        if entry is None:
            return None
        known = str(entry.get("order_id") or "") if not suffix else str((entry.get("legs") or {}).get(suffix) or "")
        if known:
            try:
                order, _ = await self.orders.load(known)
                return order
            except OrderNotFound:
                pass
        sent_at = tm.parse_time(entry.get("sent_at")) or self.clock()
        found = [raw for raw in await self.orders.since(sent_at - self.skew)
                 if raw.get("external-identifier") == client_order_id]
        if not found:
            return None
        raw = max(found, key=lambda r: int(str(r["id"])))
        if not known and not suffix:
            log.warning("tastytrade: order %s had no answer; found it as %s by its identifier", base, raw["id"])
            self.journal.record(base, "placed", order_id=str(raw["id"]), found_by="lookup",
                                **({"complex_id": str(raw["complex-order-id"])} if raw.get("complex-order-id")
                                   else {}))
        return await self.orders.order(raw)

    async def dry_run(self, order: OrderRequest | None = None) -> str:
        """tastytrade's preflight checks of `order` (default: buy 1 `check_symbol` at market), nothing placed;
        a refusal raises `OrderRejected` with tastytrade's reasons."""
        request = order or OrderRequest(client_order_id=client_order_id(self.account, "dry-run"), account=self.account,
                                        symbol=self.settings.check_symbol, side=Side.BUY, quantity=Decimal(1))
        inst = self.orders.instrument(request.symbol)
        is_complex, body = tm.order_body(request, inst, await self._held(inst))
        what = f"tastytrade dry run of {request.side.value} {request.quantity:f} {inst.symbol}"
        data = await self.session.data("POST", self.orders.path("/complex-orders/dry-run" if is_complex else
                                                          "/orders/dry-run"), json=body, safe=True, what=what,
                                       forbidden=OrderRejected)
        errors = [str(e.get("message")) for e in data.get("errors") or [] if isinstance(e, dict)]
        if errors:
            raise OrderRejected(f"{what}: refused: {'; '.join(errors)}")
        return f"{what}: accepted ({tm.dry_run_summary(data)})"

    # -- changing orders ---------------------------------------------------------------------------------

    async def cancel_order(self, broker_order_id: str) -> Order:
        async def cancel(raw: Raw) -> None:
            complex_id = str(raw.get("complex-order-id") or "")
            whole = complex_id and self.orders.entries.get(complex_id) == broker_order_id  # an entry: its exits too
            path = f"/complex-orders/{complex_id}" if whole else f"/orders/{broker_order_id}"
            await self.session.call("DELETE", self.orders.path(path), safe=True,
                                    what=f"tastytrade cancel {broker_order_id}")

        order = await cancel_then_reload(broker_order_id, self.orders.load, cancel)
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
        what = f"tastytrade modify {broker_order_id}"
        current, raw = await modifiable(broker_order_id, self.orders.load, what)
        if quantity is not None and quantity != current.quantity:
            if not tm.is_exit(current, raw) or limit_price is not None or stop_price is not None:
                raise OrderRejected(f"{what}: tastytrade's replace changes prices, not the quantity; cancel the order "
                                    "and place a new one")
            order = await resize(self.session, self.orders, current, raw, quantity, self._record_replacement)
            self.reports.remember(order)
            return order
        body = tm.replace_body(raw, limit_price, stop_price)
        sent_at = self.clock()
        try:
            new: Raw = await self.session.data("PUT", self.orders.path(f"/orders/{broker_order_id}"), json=body,
                                               safe=False, what=what, forbidden=OrderRejected)
        except BrokerUnavailable as exc:
            found = [r for r in await self.orders.since(sent_at - self.skew)
                     if str(r.get("replaces-order-id") or "") == broker_order_id]
            if not found:
                raise BrokerUnavailable(f"{what}: {exc.reason}; no replacement found, the original is left as it "
                                        "is") from None
            new = found[0]
        new_id = str(new["id"])
        self.orders.links[new_id] = self.orders.links.get(broker_order_id, (None, None))
        self._record_replacement(current.client_order_id, broker_order_id, new_id)
        order = await self.orders.order(new)
        self.reports.remember(order)
        return order

    def _record_replacement(self, cid: str, old_id: str, new_id: str) -> None:
        base, suffix = tm.split_cid(cid)
        entry = self.journal.get(base)
        if entry is None:
            return  # not ours (placed by hand): nothing to keep
        previous = [*entry.get("previous", []), old_id]
        if suffix:
            self.journal.record(base, "placed", legs={**(entry.get("legs") or {}), suffix: new_id}, previous=previous)
        else:
            self.journal.record(base, "placed", order_id=new_id, previous=previous)

    async def open_orders(self) -> list[Order]:
        raws = await self.orders.with_open(await self.orders.live(), self.reports.known)
        return [o for o in [await self.orders.order(raw) for raw in raws] if o.status.is_open]

    # -- positions, account, fills -----------------------------------------------------------------------

    async def positions(self) -> list[Position]:
        rows = await self.session.items("GET", self.orders.path("/positions"), what="tastytrade positions")
        return [p for p in (tm.to_position(r, self.account, self.orders.display(str(r["symbol"]))) for r in rows)
                if p.quantity != 0]

    async def account_state(self) -> AccountState:
        balance = await self.session.data("GET", self.orders.path("/balances/USD"), what="tastytrade balances")
        return tm.to_account_state(balance, await self.positions(), self.account, self.name, self.clock())

    async def fills(self, since: datetime | None = None) -> list[Fill]:
        start = (since or self.clock()) - timedelta(days=self.settings.order_lookback_days)
        out = []
        for raw in await self.orders.with_open(await self.orders.since(start), self.reports.known):
            order = await self.orders.order(raw)
            out += [f for f in tm.fills_of(order, raw) if since is None or f.filled_at >= since]
        return sorted(out, key=lambda f: (f.filled_at, f.fill_id))

    # -- closing -----------------------------------------------------------------------------------------

    async def close_position(self, symbol: str) -> Order | None:
        inst = self.orders.instrument(symbol)
        rows = await self.session.items("GET", self.orders.path("/positions"), what="tastytrade positions")
        held = sum((tm.signed_quantity(r) for r in rows if r.get("symbol") == inst.symbol), Decimal(0))
        request = closing_request("tastytrade", self.account, symbol, held, self.clock())
        return None if request is None else await self.place_order(request)

    async def flatten(self) -> FlattenReport:
        """Cancel every working order (entries first: their exits go with them), then close every position."""
        return await cancel_then_close(self)

    # -- polling -----------------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Push new fills and order status changes (each exactly once) to the report handler."""
        for raw in await self.orders.with_open(await self.orders.live(), self.reports.known):
            await self._report(raw)

    async def _report(self, raw: Raw) -> None:
        """An order as polled or streamed: its new fills, then its status."""
        order = await self.orders.order(raw)
        for fill in tm.fills_of(order, raw):
            await self.reports.fill(fill)
        await self.reports.order(order)


def _pick_account(rows: list[Raw], wanted: str | None, account: str) -> str:
    numbers = [str((r.get("account") or {}).get("account-number") or "") for r in rows]
    numbers = [n for n in numbers if n]
    if wanted is not None:
        if wanted.strip() not in numbers:
            raise AuthenticationFailed(f"tastytrade {account}: this login has no account {wanted.strip()} "
                                       f"(accounts: {', '.join(numbers) or 'none'})")
        return wanted.strip()
    if len(numbers) != 1:
        raise AuthenticationFailed(f"tastytrade {account}: this login has {len(numbers)} accounts "
                                   f"({', '.join(numbers) or 'none'}); set account_number to pick one")
    return numbers[0]


def build(account: str, settings: TastytradeSettings, context: BrokerContext) -> TastytradeBroker:
    """The registry's factory: the order journal lives in `state_dir/tastytrade/`."""
    return TastytradeBroker(account, settings, context.state_dir, clock=context.clock)
