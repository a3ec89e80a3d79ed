"""How the tastytrade adapter reads its account's orders: symbols both ways, order lists, complex-order links.

`Orders` turns tastytrade symbols into the engine's (`/ESZ6` -> `ES1!` while it is the front contract or
the ticker last traded) and back, reads orders (`/orders/live`, every page of `/orders` by received time,
one by id) and turns them into domain orders, bracket exits pointing to their entry: the parts of a
complex order are learnt from its placement, or read once from `/complex-orders/{id}` when first seen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from brokers.base import BrokerUnavailable, OrderNotFound
from brokers.symbols import RollRule, engine_symbol, futures_root, is_continuous, normalize, split_exchange
from brokers.tastytrade import models as tm
from brokers.tastytrade.session import TastytradeSession
from brokers.updates import OrderState
from daemon.domain import Order

Raw = dict[str, Any]
PAGE = 200


class Orders:
    def __init__(self, session: TastytradeSession, account: str, clock: Callable[[], datetime], roll: RollRule,
                 aliases: dict[str, str], skew: timedelta) -> None:
        self.session, self.account, self.clock, self.roll, self.skew = session, account, clock, roll, skew
        self.aliases = aliases  # contract (`ESZ6`) -> the ticker the engine last used for it
        self.account_number: str | None = None
        self.links: dict[str, tuple[str | None, str | None]] = {}  # order id -> (entry id, OCO group)
        self.entries: dict[str, str] = {}  # complex order id -> its trigger (entry) order id

    def path(self, tail: str = "") -> str:
        if self.account_number is None:
            raise BrokerUnavailable(f"tastytrade {self.account}: not connected yet")
        return f"/accounts/{self.account_number}{tail}"

    def instrument(self, ticker: str) -> tm.Instrument:
        bare = split_exchange(ticker)[1].lstrip("/")
        if is_continuous(bare) or futures_root(bare) is not None:
            code = normalize(bare, on=self.clock().date(), rule=self.roll)
            return tm.Instrument("/" + code, tm.FUTURE, bare)
        symbol = normalize(bare)
        return tm.Instrument(symbol, tm.EQUITY, symbol)

    def display(self, symbol: str) -> str:
        """A tastytrade symbol as the engine names it (`/ESZ6` -> `ES1!` while it is the front, say)."""
        if not symbol.startswith("/"):
            return symbol
        code = symbol[1:]
        return engine_symbol(code, self.aliases.get(code), self.clock().date(), self.roll)

    async def live(self) -> list[Raw]:
        return await self.session.items("GET", self.path("/orders/live"), what="tastytrade live orders")

    async def since(self, start: datetime, end: datetime | None = None) -> list[Raw]:
        """Orders received in [start, end], every page of them."""
        params: dict[str, Any] = {"start-at": tm.wire_time(start), "end-at": tm.wire_time(end or self.clock() +
                                                                                           self.skew),
                                  "per-page": PAGE, "sort": "Asc"}
        out: list[Raw] = []
        for page in range(1000):
            response = await self.session.call("GET", self.path("/orders"), params={**params, "page-offset": page},
                                               what="tastytrade orders")
            try:
                body = response.json()
                out += tm.items(body)
                pages = int((body.get("pagination") or {}).get("total-pages") or 1)
            except (ValueError, TypeError, AttributeError) as exc:
                raise BrokerUnavailable(f"tastytrade orders: unreadable answer ({exc})") from None
            if page + 1 >= pages:
                break
        return out

    async def raw(self, order_id: str) -> Raw:
        if not order_id.isdigit():
            raise OrderNotFound(f"tastytrade order {order_id!r}: order ids are numbers")
        data: Raw = await self.session.data("GET", self.path(f"/orders/{order_id}"),
                                            what=f"tastytrade order {order_id}")
        return data

    def learn(self, complex_order: Raw) -> None:
        for raw, parent, group in tm.complex_parts(complex_order):
            self.links[str(raw["id"])] = (parent, group)
            if parent is None:
                self.entries[str(complex_order["id"])] = str(raw["id"])

    async def order(self, raw: Raw) -> Order:
        """An order as the engine sees it; a part of a complex order not seen before has the rest read once."""
        order_id, complex_id = str(raw["id"]), raw.get("complex-order-id")
        if complex_id and order_id not in self.links:
            try:
                self.learn(await self.session.data("GET", self.path(f"/complex-orders/{complex_id}"),
                                                    what=f"tastytrade complex order {complex_id}"))
            except OrderNotFound:
                pass
        parent, group = self.links.get(order_id, (None, None))
        symbol = self.display(str(tm.leg_of(raw).get("symbol") or ""))
        return tm.to_order(raw, self.account, symbol, parent, group, self.clock())

    async def load(self, order_id: str) -> tuple[Order, Raw]:
        raw = await self.raw(order_id)
        return await self.order(raw), raw

    async def with_open(self, raws: list[Raw], known: Mapping[str, OrderState]) -> list[Raw]:
        """`raws` plus every order known to be open that they do not list (a GTC order of an earlier day)."""
        listed = {str(r["id"]) for r in raws}
        out = list(raws)
        for order_id, (status, _) in list(known.items()):
            if status.is_open and order_id not in listed:
                try:
                    out.append(await self.raw(order_id))
                except OrderNotFound:
                    continue
        return out
