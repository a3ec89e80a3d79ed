"""Drives the Tradovate stand-in with plain httpx, as an adapter would, and checks state and contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.standin_fixtures import logged_in, running
from tests.standins.tradovate_api import TradovateStandin

ACCOUNT = 7001
CREDENTIALS = {"name": "trader", "password": "tv-password", "appId": "traderd", "appVersion": "0.1.0",
               "cid": "8", "sec": "tv-secret", "deviceId": "9f2c1e7a-test"}


class Client:
    """A minimal Tradovate REST client: bearer token, JSON POSTs, GET lists."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.token = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def login(self) -> dict[str, Any]:
        body = (await self.http.post("/auth/accesstokenrequest", json=CREDENTIALS)).json()
        self.token = body["accessToken"]
        return body

    async def post(self, path: str, **body: Any) -> dict[str, Any]:
        response = await self.http.post(path, json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def get(self, path: str, **query: Any) -> Any:
        response = await self.http.get(path, params=query, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def place(self, path: str = "/order/placeorder", **order: Any) -> dict[str, Any]:
        base = {"accountSpec": "DEMO7001", "accountId": ACCOUNT, "action": "Buy", "symbol": "ESZ6", "orderQty": 1,
                "orderType": "Market", "isAutomated": True}
        return await self.post(path, **{**base, **order})

    async def status(self) -> dict[int, str]:
        return {o["id"]: o["ordStatus"] for o in await self.get("/order/list")}

    async def net(self, contract_id: int = 3001) -> int:
        return sum(p["netPos"] for p in await self.get("/position/list") if p["contractId"] == contract_id)


@pytest.fixture
async def tv() -> AsyncIterator[TradovateStandin]:
    async with running(TradovateStandin()) as standin:
        yield standin


@pytest.fixture
async def client(tv: TradovateStandin) -> AsyncIterator[Client]:
    async with logged_in(Client, tv.url) as c:
        yield c


async def test_auth_errors_renewal_and_reference_data(tv: TradovateStandin) -> None:
    assert tv.url.endswith("/v1")
    async with httpx.AsyncClient(base_url=tv.url, timeout=5.0) as http:
        c = Client(http)
        wrong = await http.post("/auth/accesstokenrequest", json={**CREDENTIALS, "password": "nope"})
        assert wrong.status_code == 200 and "accessToken" not in wrong.json() and wrong.json()["errorText"]
        assert (await http.get("/account/list")).status_code == 401
        token = await c.login()
        expires = datetime.fromisoformat(token["expirationTime"])
        assert timedelta(minutes=79) < expires - datetime.now(UTC) <= timedelta(minutes=80)
        [account, _] = await c.get("/account/list")
        assert account["id"] == ACCOUNT and account["name"] == "DEMO7001"
        renewed = await c.get("/auth/renewaccesstoken")
        assert renewed["accessToken"] != c.token
        c.token = renewed["accessToken"]
        contract = await c.get("/contract/find", name="MNQZ6")
        assert contract == {"id": 3004, "name": "MNQZ6", "contractMaturityId": 51004}
        assert (await c.get("/contract/item", id=3004))["name"] == "MNQZ6"
        assert (await http.get("/contract/find", params={"name": "ZZZ9"}, headers=c.headers)).status_code == 404
        cash = await c.post("/cashBalance/getcashbalancesnapshot", accountId=ACCOUNT)
        assert cash["totalCashValue"] == 50000 and cash["openPnL"] == 0


async def test_market_order_fill_position_and_reports(tv: TradovateStandin, client: Client) -> None:
    placed = await client.place(orderQty=2, clOrdId="sig-1")
    order_id = placed["orderId"]
    assert (await client.status())[order_id] == "Filled"
    [fill] = await client.get("/fill/list")
    assert fill["orderId"] == order_id and fill["qty"] == 2 and fill["price"] == 6000 and fill["action"] == "Buy"
    [position] = await client.get("/position/list")
    assert position["netPos"] == 2 and position["netPrice"] == 6000 and position["accountId"] == ACCOUNT
    reports = await client.get("/executionReport/deps", masterid=order_id)
    assert [r["execType"] for r in reports] == ["New", "Trade"] and reports[1]["avgPx"] == 6000
    tv.set_price("ESZ6", "6002.50")
    cash = await client.post("/cashBalance/getcashbalancesnapshot", accountId=ACCOUNT)
    assert cash["openPnL"] == 250 and cash["netLiq"] == 50250
    await client.place(action="Sell", orderQty=2)
    assert await client.net() == 0
    cash = await client.post("/cashBalance/getcashbalancesnapshot", accountId=ACCOUNT)
    assert cash["realizedPnL"] == 250 and cash["totalCashValue"] == 50250


async def test_limit_fills_on_price_move_modify_and_cancel(tv: TradovateStandin, client: Client) -> None:
    limit = (await client.place(orderType="Limit", price=5990))["orderId"]
    far = (await client.place(orderType="Limit", price=5900))["orderId"]
    stop = (await client.place(action="Sell", orderType="Stop", stopPrice=5950))["orderId"]
    assert (await client.status()) == {limit: "Working", far: "Working", stop: "Working"}
    tv.set_price("ESZ6", 5990)
    assert (await client.status())[limit] == "Filled"
    modified = await client.post("/order/modifyorder", orderId=far, orderQty=1, orderType="Limit", price=5995,
                                 isAutomated=True)
    assert modified["commandId"] > 0
    assert (await client.status())[far] == "Filled"  # now marketable
    assert [v["price"] for v in await client.get("/orderVersion/deps", masterid=far)] == [5900, 5995]
    assert (await client.post("/order/cancelorder", orderId=stop, isAutomated=True))["commandId"] > 0
    assert (await client.status())[stop] == "Canceled"
    again = await client.post("/order/cancelorder", orderId=stop, isAutomated=True)
    assert again["failureReason"] == "TooLate" and again["failureText"]
    off_tick = await client.place(orderType="Limit", price=5990.1)
    assert off_tick["failureReason"] == "InvalidPrice" and "orderId" not in off_tick
    unknown = await client.place(symbol="ZZZ9")
    assert unknown["failureReason"] == "InvalidContract"


async def test_clordid_is_not_deduplicated(tv: TradovateStandin, client: Client) -> None:
    first = await client.place(orderType="Limit", price=5900, clOrdId="sig-9")
    second = await client.place(orderType="Limit", price=5900, clOrdId="sig-9")
    assert first["orderId"] != second["orderId"]
    new = [c for c in await client.get("/command/list") if c.get("clOrdId") == "sig-9"]
    assert [c["orderId"] for c in new] == [first["orderId"], second["orderId"]]
    assert all(c["commandType"] == "New" and c["isAutomated"] is True for c in new)
    assert tv.orders_with_clordid("sig-9") == [first["orderId"], second["orderId"]]


async def test_is_automated_is_required(client: Client) -> None:
    refused = await client.place(isAutomated=False)
    assert "orderId" not in refused and "isAutomated" in refused["failureText"]
    async with TradovateStandin(require_automated=False) as lax, httpx.AsyncClient(base_url=lax.url) as http:
        c = Client(http)
        await c.login()
        assert "orderId" in await c.place(isAutomated=False)
    lax.assert_no_violations()


async def test_oso_bracket(tv: TradovateStandin, client: Client) -> None:
    result = await client.place(
        "/order/placeoso", orderType="Limit", price=5995,
        bracket1={"action": "Sell", "orderType": "Stop", "stopPrice": 5985},
        bracket2={"action": "Sell", "orderType": "Limit", "price": 6010},
    )
    entry, sl, tp = result["orderId"], result["oso1Id"], result["oso2Id"]
    assert await client.status() == {entry: "Working", sl: "Suspended", tp: "Suspended"}
    tv.set_price("ESZ6", 5995)
    assert await client.status() == {entry: "Filled", sl: "Working", tp: "Working"}
    tv.set_price("ESZ6", 6012)
    assert await client.status() == {entry: "Filled", sl: "Canceled", tp: "Filled"}
    assert await client.net() == 0
    orders = {o["id"]: o for o in await client.get("/order/list")}
    assert orders[sl]["parentId"] == entry and orders[sl]["ocoId"] == tp


async def test_liquidate_position_cancels_orders_and_flattens(client: Client) -> None:
    await client.place(action="Sell", orderQty=3)
    resting = (await client.place(orderType="Limit", price=5900))["orderId"]
    flat = await client.post("/order/liquidateposition", accountId=ACCOUNT, contractId=3001, admin=False)
    assert flat["orderId"] > 0 and await client.net() == 0
    assert (await client.status())[resting] == "Canceled"
    nothing = await client.post("/order/liquidateposition", accountId=ACCOUNT, contractId=3001, admin=False)
    assert nothing["failureReason"] == "UnknownReason"


async def test_p_ticket_throttling_requires_the_ticket(tv: TradovateStandin, client: Client) -> None:
    tv.throttle_next(p_time=1, path="/order/placeorder")
    throttled = await client.place(clOrdId="sig-t")
    assert set(throttled) == {"p-ticket", "p-time", "p-captcha"} and throttled["p-time"] == 1
    assert throttled["p-captcha"] is False
    without_ticket = await client.place(clOrdId="sig-t")
    assert "p-ticket" in without_ticket and "orderId" not in without_ticket
    await asyncio.sleep(without_ticket["p-time"] + 0.05)
    placed = await client.place(clOrdId="sig-t", **{"p-ticket": without_ticket["p-ticket"]})
    assert placed["orderId"] > 0
    assert tv.orders_with_clordid("sig-t") == [placed["orderId"]] and tv.throttled == 2
    tv.throttle_next(path="/position/list")  # lists are throttled the same way
    assert "p-ticket" in (await client.http.get("/position/list", headers=client.headers)).json()


async def test_token_expiry_mid_session(tv: TradovateStandin, client: Client) -> None:
    tv.expire_tokens()
    assert (await client.http.get("/position/list", headers=client.headers)).status_code == 401
    assert (await client.http.get("/auth/renewaccesstoken", headers=client.headers)).status_code == 401
    await client.login()
    assert await client.get("/position/list") == []


async def test_faults_5xx_and_drop_after_accept(tv: TradovateStandin, client: Client) -> None:
    tv.faults.fail_next(1, status=502, path="/order/placeorder")
    response = await client.http.post("/order/placeorder", headers=client.headers, json={
        "accountId": ACCOUNT, "action": "Buy", "symbol": "ESZ6", "orderQty": 1, "orderType": "Market",
        "isAutomated": True})
    assert response.status_code == 502 and await client.get("/order/list") == []
    tv.faults.drop_next(path="/order/placeorder")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.place(clOrdId="sig-lost")
    [command] = [c for c in await client.get("/command/list") if c.get("clOrdId") == "sig-lost"]
    assert (await client.status())[command["orderId"]] == "Filled" and await client.net() == 1
    tv.faults.delay_next(1.0, path="/order/list")
    with pytest.raises(httpx.ReadTimeout):
        await client.http.get("/order/list", headers=client.headers, timeout=0.2)


async def test_malformed_requests_are_flagged(tv: TradovateStandin, client: Client) -> None:
    await client.http.post("/order/placeorder", headers=client.headers,
                           json={"accountId": ACCOUNT, "symbol": "ESZ6", "orderQty": "1", "orderType": "Mkt"})
    assert any("'action' is a required property" in v for v in tv.violations)
    assert any("'1' is not of type 'integer'" in v for v in tv.violations)
    assert any("'Mkt' is not one of" in v for v in tv.violations)
    tv.violations.clear()
    await client.http.post("/auth/renewaccesstoken", headers=client.headers)  # the spec has GET only
    assert any("method not in the contract" in v for v in tv.violations)
    tv.violations.clear()
    await client.http.get("/contract/item", headers=client.headers)  # id missing
    assert any("required query parameter 'id' missing" in v for v in tv.violations)
    tv.violations.clear()


async def test_oco_mit_locked_account_and_throttled_login(tv: TradovateStandin, client: Client) -> None:
    result = await client.place("/order/placeoco", action="Sell", orderType="Limit", price=6010,
                                other={"action": "Sell", "orderType": "Stop", "stopPrice": 5990})
    mit = (await client.place(orderType="MIT", price=5995))["orderId"]
    tv.set_price("ESZ6", 6010)
    status = await client.status()
    assert (status[result["orderId"]], status[result["ocoId"]], status[mit]) == ("Filled", "Canceled", "Working")
    tv.set_price(3001, 5995)
    assert (await client.status())[mit] == "Filled" and await client.net() == 0
    tv.trading_locked.add(ACCOUNT)
    assert (await client.place())["failureReason"] == "TradingLocked"
    tv.throttle_next(p_time=0, path="/auth/accesstokenrequest")
    ticket = (await client.http.post("/auth/accesstokenrequest", json=CREDENTIALS)).json()
    retry = await client.http.post("/auth/accesstokenrequest", json={**CREDENTIALS, "p-ticket": ticket["p-ticket"]})
    assert "accessToken" in retry.json()
