"""End-to-end through the webhook on the Schwab, tastytrade and ccxt (Binance) stand-ins: take-profit ladders with
the stop moved to break-even after the first level, and trailing stops (Schwab's native TRAILING_STOP; the daemon
moving a plain stop by the venue's replace elsewhere). Outcomes are read at the stand-ins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.domain import SignalStatus
from tests.conftest import SECRET, client_for, settings_for, settled
from tests.standin_fixtures import schwab_running, tastytrade_running
from tests.standins.binance_api import BinanceStandIn
from tests.test_ccxt_e2e import crypto_account
from tests.test_schwab_adapter import login
from tests.test_schwab_e2e import schwab_account
from tests.test_tastytrade_e2e import tastytrade_account

URL = f"/webhook/tradingview/{SECRET}"
D = Decimal
Rest = tuple[str, Decimal, Decimal]  # (kind, quantity, price) of a resting order at the stand-in


@dataclass
class Venue:
    """A stand-in, the daemon account on it, and how to read and move its market."""

    name: str
    standin: Any
    account: dict[str, Any]
    ticker: str
    size: Decimal  # of an entry in these tests
    price: Decimal

    def quote(self, price: Decimal) -> None:
        """The market trades at `price`: the stand-in matches its resting orders there."""
        symbol = "BTCUSDT" if self.name == "ccxt" else "AAPL"
        self.standin.set_price(symbol, price if self.name == "ccxt" else str(price))

    def resting(self) -> list[Rest]:
        """The working exits at the venue, as (limit | stop | trailing, quantity, price)."""
        out: list[Rest] = []
        if self.name == "schwab":
            for node in self.standin.book.nodes.values():
                if node["status"] == "WORKING" and node.get("orderLegCollection"):
                    kind = {"LIMIT": "limit", "STOP": "stop", "TRAILING_STOP": "trailing"}[node["orderType"]]
                    price = node.get("price") if kind == "limit" else node.get("stopPrice")
                    out.append((kind, D(str(node["quantity"])), D(str(price))))
        elif self.name == "tastytrade":
            for order in self.standin.book.orders.values():
                if order["status"] == "Live":
                    kind = order["order-type"].lower()
                    price = order.get("price") if kind == "limit" else order.get("stop-trigger")
                    out.append((kind, D(order["size"]), D(str(price))))
        else:
            for order in self.standin.book.orders.values():
                if order["status"] in ("NEW", "PARTIALLY_FILLED"):
                    kind = "limit" if order["type"] in ("LIMIT", "LIMIT_MAKER") else \
                        "trailing" if "trailingDelta" in order else "stop"
                    price = {"limit": order["price"], "stop": order["stopPrice"]}.get(kind, order.get("_level"))
                    out.append((kind, order["origQty"] - order["executedQty"], price))
        return sorted(out)

    def held(self) -> Decimal:
        if self.name == "ccxt":
            book = self.standin.book
            return book.free.get("BTC", D(0)) + book.locked.get("BTC", D(0))
        return self.standin.book.positions.get("AAPL", (D(0),))[0]


@pytest.fixture(params=["schwab", "tastytrade", "ccxt"])
async def venue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Venue]:
    if request.param == "schwab":
        async with schwab_running() as schwab:
            login(schwab, tmp_path / "state", account="acct")
            schwab.set_price("AAPL", "100")
            yield Venue("schwab", schwab, schwab_account(schwab), "AAPL", D(2), D(100))
    elif request.param == "tastytrade":
        async with tastytrade_running() as tasty:
            tasty.set_price("AAPL", "100")
            yield Venue("tastytrade", tasty, tastytrade_account(tasty), "AAPL", D(2), D(100))
    else:
        async with BinanceStandIn() as binance:
            yield Venue("ccxt", binance, crypto_account(binance), "BINANCE:BTCUSDT", D("0.02"), D(60000))
        binance.assert_no_violations()


async def started(start_daemon: Any, venue: Venue, tmp_path: Path) -> Any:
    return await start_daemon(settings_for(tmp_path / "state", daemon={"exit_mark_seconds": 0.2},
                                           accounts={"acct": venue.account}))


async def post(daemon: Any, body: dict[str, Any]) -> Any:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=body)
    assert response.status_code == 202, response.text
    return await settled(daemon, response.json()["signal_id"], within=15)


async def until(check: Callable[[], Any], within: float = 15.0) -> None:
    """Wait (bounded) for `check()` to hold; the assertion names what was last seen."""
    deadline = time.monotonic() + within
    while True:
        seen = check()
        if isinstance(seen, Awaitable):
            seen = await seen
        if seen is True:
            return
        assert time.monotonic() < deadline, f"condition not met within {within} s: {seen!r}"
        await asyncio.sleep(0.05)


def now_is(venue: Venue, expected: list[Rest]) -> Callable[[], Any]:
    def check() -> Any:
        found = venue.resting()
        return True if found == sorted(expected) else found

    return check


def exit_size(venue: Venue, quantity: Decimal) -> Decimal:
    """What an exit of an entry of `quantity` covers: a Binance buy pays its fee in the coin bought."""
    return quantity - quantity * D("0.001") if venue.name == "ccxt" else quantity


async def test_ladder_with_break_even_after_the_first_level(start_daemon, venue: Venue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon = await started(start_daemon, venue, tmp_path)
    half, p = venue.size / 2, venue.price
    record = await post(daemon, {
        "ticker": venue.ticker, "account": "acct", "action": "buy", "quantity": str(venue.size), "price": str(p),
        "id": "lad-1", "stop_loss": {"percent": "2"},
        "take_profit": [{"r": "1", "quantity": str(half)}, {"r": "2"}],
        "break_even": {"after": "tp1", "offset": {"ticks": "1"}}})
    assert record.status is SignalStatus.EXECUTED, record.reason
    each = exit_size(venue, half)
    stop, tp1, tp2 = p * D("0.98"), p * D("1.02"), p * D("1.04")
    await until(now_is(venue, [("limit", each, tp1), ("limit", each, tp2), ("stop", each, stop),
                               ("stop", each, stop)]))
    assert venue.held() == exit_size(venue, venue.size)

    venue.quote(tp1)  # the first level's take-profit fills; its stop goes with it
    await until(now_is(venue, [("limit", each, tp2), ("stop", each, p + D("0.01"))]))
    assert venue.held() == exit_size(venue, venue.size) - each

    venue.quote(p - D("0.5"))  # back down through the entry: the stop at break-even closes the rest
    await until(lambda: venue.held() == 0 or venue.held())
    assert venue.resting() == []


def native(venue: Venue, *, percent: bool = False) -> bool:
    """Whether the venue trails the stop itself (else the daemon moves a plain stop by replacing it): Schwab
    always, Binance a stop order of its own by a percent."""
    return venue.name == "schwab" or (venue.name == "ccxt" and percent)


async def test_an_entrys_trailing_stop_follows_the_price_up_and_closes_the_position(  # type: ignore[no-untyped-def]
        start_daemon, venue: Venue, tmp_path: Path) -> None:
    daemon = await started(start_daemon, venue, tmp_path)
    p, size = venue.price, exit_size(venue, venue.size)
    trail = p / 50  # 2 % of the entry price, as a distance
    record = await post(daemon, {"ticker": venue.ticker, "account": "acct", "action": "buy", "id": "tr-1",
                                 "quantity": str(venue.size), "price": str(p), "trailing_stop": {"amount": str(trail)},
                                 "take_profit": str(p * D("1.2"))})
    assert record.status is SignalStatus.EXECUTED, record.reason
    kind = "trailing" if native(venue) else "stop"
    await until(now_is(venue, [("limit", size, p * D("1.2")), (kind, size, p - trail)]))
    assert (daemon.store.active_exit_rules("acct") == []) is native(venue)
    if venue.name == "schwab":  # the OCO's stop leg is Schwab's trailing stop, $2 below the bid
        [placed] = [b for m, path, b in venue.standin.calls if m == "POST" and path.endswith("/orders")]
        [oco] = placed["childOrderStrategies"]
        [stop] = [leg for leg in oco["childOrderStrategies"] if leg["orderType"] != "LIMIT"]
        assert (stop["orderType"], stop["stopPriceLinkBasis"], stop["stopPriceLinkType"], stop["stopPriceOffset"],
                "stopPrice" in stop) == ("TRAILING_STOP", "BID", "VALUE", 2, False)

    venue.quote(p + trail)  # a new high: the stop follows it up, and again at the next one
    await until(now_is(venue, [("limit", size, p * D("1.2")), (kind, size, p)]))
    venue.quote(p + 3 * trail)
    await until(now_is(venue, [("limit", size, p * D("1.2")), (kind, size, p + 2 * trail)]))
    venue.quote(p + 2 * trail + trail / 2)  # a fall short of the stop leaves it where it is
    await asyncio.sleep(0.6)  # several rounds of marks
    assert venue.resting() == sorted([("limit", size, p * D("1.2")), (kind, size, p + 2 * trail)])
    venue.quote(p + 2 * trail - trail / 10)  # through the trailed stop: closed, the take-profit goes with it
    await until(lambda: venue.held() == 0 or venue.held())
    await until(lambda: venue.resting() == [] or venue.resting())


async def test_a_trailing_stop_order_closes_the_position_by_a_percent(  # type: ignore[no-untyped-def]
        start_daemon, venue: Venue, tmp_path: Path) -> None:
    daemon = await started(start_daemon, venue, tmp_path)
    p = venue.price
    entry = await post(daemon, {"ticker": venue.ticker, "account": "acct", "action": "buy", "id": "tp-1",
                                "quantity": str(venue.size), "price": str(p)})
    assert entry.status is SignalStatus.EXECUTED, entry.reason
    size = exit_size(venue, venue.size)
    await until(lambda: venue.held() == size or venue.held())
    done = await post(daemon, {"ticker": venue.ticker, "account": "acct", "action": "exit", "id": "tp-2",
                               "price": str(p), "order_type": "trailing_stop", "trailing_stop": {"percent": "2"}})
    assert done.status is SignalStatus.EXECUTED, done.reason
    kind = "trailing" if native(venue, percent=True) else "stop"
    await until(now_is(venue, [(kind, size, p * D("0.98"))]))
    assert (daemon.store.active_exit_rules("acct") == []) is native(venue, percent=True)
    if venue.name == "schwab":
        placed = [b for m, path, b in venue.standin.calls if m == "POST" and path.endswith("/orders")][-1]
        assert (placed["orderType"], placed["orderLegCollection"][0]["instruction"], placed["stopPriceLinkType"],
                placed["stopPriceOffset"]) == ("TRAILING_STOP", "SELL", "PERCENT", 2)
    if venue.name == "ccxt":  # Binance's STOP_LOSS trailing by 200 basis points, no stop price
        [trailing] = [o for o in venue.standin.book.orders.values() if o["type"] == "STOP_LOSS"]
        assert (trailing["trailingDelta"], trailing["stopPrice"], trailing["side"]) == (200, D(0), "SELL")
    venue.quote(p * D("1.05"))
    await until(now_is(venue, [(kind, size, p * D("1.05") * D("0.98"))]))
    venue.quote(p * D("1.1"))
    await until(now_is(venue, [(kind, size, p * D("1.1") * D("0.98"))]))
    venue.quote(p * D("1.07"))  # below 2 % under the high of 110 %
    await until(lambda: venue.held() == 0 or venue.held())
    assert venue.resting() == []


async def test_binance_refuses_a_ladder_whose_exits_it_would_refuse(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Each level buys 0.00009 BTC (5.40 USDT, above the 5 USDT minimum), which leaves 0.00008 after the fee:
    # below the minimum for its exits. Sending the entries would leave a position without its stop.
    async with BinanceStandIn() as binance:
        daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"acct": crypto_account(binance)}))
        record = await post(daemon, {
            "ticker": "BINANCE:BTCUSDT", "account": "acct", "action": "buy", "quantity": "0.00018", "price": "60000",
            "id": "small-1", "stop_loss": {"percent": "2"},
            "take_profit": [{"r": "1", "quantity": "0.00009"}, {"r": "2"}], "break_even": {"after": "tp1"}})
        assert record.status is SignalStatus.FAILED, record.reason
        assert "its exits would be refused, leaving the position unprotected" in record.reason
        assert "below the exchange's minimum notional" in record.reason or "NOTIONAL" in record.reason, record.reason
        assert binance.book.orders == {} and binance.book.free.get("BTC", D(0)) == 0
    binance.assert_no_violations()


async def test_a_partial_exit_shrinks_the_trailing_stop_and_it_goes_on_trailing(  # type: ignore[no-untyped-def]
        start_daemon, venue: Venue, tmp_path: Path) -> None:
    daemon = await started(start_daemon, venue, tmp_path)
    p, size, trail = venue.price, exit_size(venue, venue.size), venue.price / 50
    record = await post(daemon, {"ticker": venue.ticker, "account": "acct", "action": "buy", "id": "sh-1",
                                 "quantity": str(venue.size), "price": str(p), "trailing_stop": {"amount": str(trail)},
                                 "take_profit": str(p * 2)})
    assert record.status is SignalStatus.EXECUTED, record.reason
    kind = "trailing" if native(venue) else "stop"
    await until(now_is(venue, [("limit", size, p * 2), (kind, size, p - trail)]))
    half = venue.size / 2
    done = await post(daemon, {"ticker": venue.ticker, "account": "acct", "action": "exit", "id": "sh-2",
                               "quantity": str(half), "price": str(p)})
    if venue.name == "ccxt":  # spot: the coins are locked in the resting stop, the sale is refused; still covered
        assert done.status is SignalStatus.FAILED and "insufficient balance" in done.reason, done.reason
        assert venue.resting() == [("limit", size, p * 2), (kind, size, p - trail)] and venue.held() == size
        return
    assert done.status is SignalStatus.EXECUTED, done.reason
    # never more than is held; one of the two still cancels the other
    await until(now_is(venue, [("limit", size - half, p * 2), (kind, size - half, p - trail)]))
    venue.quote(p + trail)
    await until(now_is(venue, [("limit", size - half, p * 2), (kind, size - half, p)]))
    venue.quote(p - trail / 10)
    await until(lambda: venue.held() == 0 or venue.held())
    assert venue.resting() == []
