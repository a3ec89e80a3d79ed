"""Drives the ProjectX Gateway stand-in with plain httpx, as an adapter would, and checks state and contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.standin_fixtures import logged_in, running
from tests.standins.projectx_api import ProjectXStandin

ES, MNQ = "CON.F.US.EP.Z26", "CON.F.US.MNQ.Z26"
ACCOUNT = 1001
SINCE = "2020-01-01T00:00:00Z"


class Client:
    """A minimal ProjectX client: JSON POSTs with the bearer token."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.token = ""

    async def login(self) -> None:
        body = await self.call("/api/Auth/loginKey", userName="trader", apiKey="px-api-key")
        assert body["success"] is True and body["errorCode"] == 0
        self.token = body["token"]

    async def raw(self, path: str, **body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if not body:  # /api/Auth/validate takes no body: even `{}` is a contract violation
            return await self.http.post(path, headers=headers)
        return await self.http.post(path, json=body, headers=headers)

    async def call(self, path: str, **body: Any) -> dict[str, Any]:
        response = await self.raw(path, **body)
        assert response.status_code == 200, response.text
        return response.json()

    async def place(self, **order: Any) -> dict[str, Any]:
        return await self.call("/api/Order/place", **{"accountId": ACCOUNT, "contractId": ES, **order})

    async def orders(self) -> dict[int, dict[str, Any]]:
        body = await self.call("/api/Order/search", accountId=ACCOUNT, startTimestamp=SINCE)
        return {o["id"]: o for o in body["orders"]}

    async def positions(self) -> list[dict[str, Any]]:
        return (await self.call("/api/Position/searchOpen", accountId=ACCOUNT))["positions"]


@pytest.fixture
async def px() -> AsyncIterator[ProjectXStandin]:
    async with running(ProjectXStandin()) as standin:
        yield standin


@pytest.fixture
async def client(px: ProjectXStandin) -> AsyncIterator[Client]:
    async with logged_in(Client, px.url) as c:
        yield c


async def test_login_validate_and_bearer_auth(px: ProjectXStandin) -> None:
    async with httpx.AsyncClient(base_url=px.url, timeout=5.0) as http:
        c = Client(http)
        bad = await c.call("/api/Auth/loginKey", userName="trader", apiKey="wrong")
        assert bad["success"] is False and bad["errorCode"] == 3 and bad["errorMessage"]
        assert (await c.raw("/api/Account/search", onlyActiveAccounts=True)).status_code == 401
        await c.login()
        accounts = (await c.call("/api/Account/search", onlyActiveAccounts=True))["accounts"]
        assert [a["id"] for a in accounts] == [1001, 1002] and accounts[0]["canTrade"] is True
        renewed = await c.call("/api/Auth/validate")
        assert renewed["success"] is True and renewed["newToken"] != c.token
        c.token = renewed["newToken"]
        assert (await c.raw("/api/Account/search", onlyActiveAccounts=True)).status_code == 200
        assert (await http.get("/api/Status/ping")).json() == "pong"


async def test_contract_search(client: Client) -> None:
    found = (await client.call("/api/Contract/search", searchText="MNQ", live=False))["contracts"]
    assert [c["id"] for c in found] == [MNQ] and found[0]["tickSize"] == 0.25 and found[0]["tickValue"] == 0.5
    every = (await client.call("/api/Contract/search", live=False))["contracts"]
    assert {c["name"] for c in every} == {"ESZ6", "NQZ6", "MESZ6", "MNQZ6"}
    by_id = await client.call("/api/Contract/searchById", contractId=ES)
    assert by_id["contract"]["symbolId"] == "F.US.EP"
    missing = await client.call("/api/Contract/searchById", contractId="CON.F.US.XX.Z26")
    assert missing == {"success": False, "errorCode": 1, "errorMessage": "Contract not found."}


async def test_market_order_fills_and_opens_a_position(px: ProjectXStandin, client: Client) -> None:
    placed = await client.place(type=2, side=0, size=2, customTag="sig-1")
    assert placed["success"] is True
    order = (await client.orders())[placed["orderId"]]
    assert order["status"] == 2 and order["fillVolume"] == 2 and order["filledPrice"] == 6000
    assert order["customTag"] == "sig-1"
    assert (await client.call("/api/Order/searchOpen", accountId=ACCOUNT))["orders"] == []
    [position] = await client.positions()
    assert position["type"] == 1 and position["size"] == 2 and position["averagePrice"] == 6000
    [trade] = (await client.call("/api/Trade/search", accountId=ACCOUNT, startTimestamp=SINCE))["trades"]
    assert trade["orderId"] == placed["orderId"] and trade["price"] == 6000 and "profitAndLoss" not in trade

    px.set_price(ES, "6010")
    await client.place(type=2, side=1, size=2)
    assert await client.positions() == []
    trades = (await client.call("/api/Trade/search", accountId=ACCOUNT))["trades"]
    assert trades[-1]["profitAndLoss"] == 1000  # 10 points * 2 contracts * $50
    accounts = (await client.call("/api/Account/search", onlyActiveAccounts=True))["accounts"]
    assert accounts[0]["balance"] == 50000 + 1000 - 4 * 1.40


async def test_resting_orders_fill_on_price_moves_modify_and_cancel(px: ProjectXStandin, client: Client) -> None:
    limit = (await client.place(type=1, side=0, size=1, limitPrice=5990))["orderId"]
    stop = (await client.place(type=4, side=0, size=1, stopPrice=6020))["orderId"]
    other = (await client.place(type=1, side=0, size=1, limitPrice=5900))["orderId"]
    open_ids = {o["id"] for o in (await client.call("/api/Order/searchOpen", accountId=ACCOUNT))["orders"]}
    assert open_ids == {limit, stop, other}

    px.set_price(ES, "5992.50")
    assert (await client.orders())[limit]["status"] == 1
    px.set_price(ES, "5989")
    assert (await client.orders())[limit]["filledPrice"] == 5989  # gapped through: the better price
    assert (await client.call("/api/Order/modify", accountId=ACCOUNT, orderId=stop, stopPrice=6005))["success"]
    px.set_price(ES, "6005")
    assert (await client.orders())[stop]["status"] == 2
    [position] = await client.positions()
    assert position["size"] == 2 and position["averagePrice"] == (5989 + 6005) / 2

    assert (await client.call("/api/Order/cancel", accountId=ACCOUNT, orderId=other))["success"] is True
    assert (await client.orders())[other]["status"] == 3
    again = await client.call("/api/Order/cancel", accountId=ACCOUNT, orderId=other)
    assert again["success"] is False and again["errorCode"] == 3
    unknown = await client.call("/api/Order/cancel", accountId=ACCOUNT, orderId=1)
    assert unknown["success"] is False and unknown["errorCode"] == 2
    off_tick = await client.place(type=1, side=0, size=1, limitPrice=5990.1)
    assert off_tick["success"] is False and off_tick["errorCode"] == 2


async def test_custom_tag_is_unique_per_account(client: Client) -> None:
    assert (await client.place(type=1, side=0, size=1, limitPrice=5900, customTag="sig-7"))["success"]
    duplicate = await client.place(type=1, side=0, size=1, limitPrice=5900, customTag="sig-7")
    assert duplicate["success"] is False and duplicate["errorCode"] == 2 and "sig-7" in duplicate["errorMessage"]
    other_account = await client.place(accountId=1002, type=1, side=0, size=1, limitPrice=5900, customTag="sig-7")
    assert other_account["success"] is True
    tagged = [o for o in (await client.orders()).values() if o.get("customTag") == "sig-7"]
    assert len(tagged) == 1


async def test_bracket_take_profit_cancels_stop_loss(px: ProjectXStandin, client: Client) -> None:
    entry = await client.place(type=2, side=0, size=1, stopLossBracket={"ticks": 8, "type": 4},
                               takeProfitBracket={"ticks": 16, "type": 1})
    legs = (await client.call("/api/Order/searchOpen", accountId=ACCOUNT))["orders"]
    assert {(o["type"], o["side"], o.get("stopPrice"), o.get("limitPrice")) for o in legs} == {
        (4, 1, 5998, None), (1, 1, None, 6004)}
    px.set_price(ES, "6004")
    orders = await client.orders()
    assert orders[entry["orderId"]]["status"] == 2
    assert sorted(o["status"] for o in orders.values()) == [2, 2, 3]
    assert await client.positions() == []


async def test_close_and_partial_close(px: ProjectXStandin, client: Client) -> None:
    await client.place(type=2, side=1, size=3)  # short 3
    invalid = await client.call("/api/Position/partialCloseContract", accountId=ACCOUNT, contractId=ES, size=4)
    assert invalid["success"] is False and invalid["errorCode"] == 5
    assert (await client.call("/api/Position/partialCloseContract", accountId=ACCOUNT, contractId=ES,
                              size=1))["success"]
    [position] = await client.positions()
    assert position["type"] == 2 and position["size"] == 2
    assert (await client.call("/api/Position/closeContract", accountId=ACCOUNT, contractId=ES))["success"]
    assert await client.positions() == []
    none = await client.call("/api/Position/closeContract", accountId=ACCOUNT, contractId=ES)
    assert none["success"] is False and none["errorCode"] == 2


async def test_rate_limit_answers_429() -> None:
    async with ProjectXStandin(rate_limit=3) as px, httpx.AsyncClient(base_url=px.url, timeout=5.0) as http:
        c = Client(http)
        await c.login()
        statuses = [(await c.raw("/api/Account/search", onlyActiveAccounts=True)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
    px.assert_no_violations()


async def test_server_errors_change_nothing(px: ProjectXStandin, client: Client) -> None:
    px.faults.fail_next(2, status=503, path="/api/Order/place")
    for _ in range(2):
        assert (await client.raw("/api/Order/place", accountId=ACCOUNT, contractId=ES, type=2, side=0,
                                 size=1)).status_code == 503
    assert await client.orders() == {}
    assert (await client.place(type=2, side=0, size=1))["success"] is True


async def test_delay_after_accept_times_the_client_out(px: ProjectXStandin, client: Client) -> None:
    px.faults.delay_next(1.0, path="/api/Order/place", after_handling=True)
    with pytest.raises(httpx.ReadTimeout):
        await client.http.post("/api/Order/place", json={"accountId": ACCOUNT, "contractId": ES, "type": 2,
                                                         "side": 0, "size": 1, "customTag": "slow-1"},
                               headers={"Authorization": f"Bearer {client.token}"}, timeout=0.2)
    await asyncio.sleep(0)
    assert [o["customTag"] for o in (await client.orders()).values()] == ["slow-1"]


async def test_drop_after_accept_leaves_the_order_and_blocks_a_duplicate(px: ProjectXStandin, client: Client) -> None:
    px.faults.drop_next(path="/api/Order/place")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.place(type=2, side=0, size=1, customTag="sig-lost")
    [order] = (await client.orders()).values()  # the adapter finds it by customTag
    assert order["customTag"] == "sig-lost" and order["status"] == 2
    retry = await client.place(type=2, side=0, size=1, customTag="sig-lost")
    assert retry["success"] is False
    assert len(await client.positions()) == 1 and px.count("/api/Order/place") == 2


async def test_token_expiry_mid_session(px: ProjectXStandin, client: Client) -> None:
    px.expire_tokens()
    assert (await client.raw("/api/Position/searchOpen", accountId=ACCOUNT)).status_code == 401
    assert (await client.raw("/api/Auth/validate")).status_code == 401
    await client.login()
    assert (await client.raw("/api/Position/searchOpen", accountId=ACCOUNT)).status_code == 200


async def test_malformed_requests_are_flagged(px: ProjectXStandin, client: Client) -> None:
    response = await client.raw("/api/Order/place", accountId=ACCOUNT, contractId=ES, type="Market", side=0)
    assert response.status_code == 400
    assert any("'size' is a required property" in v for v in px.violations)
    assert any("'Market' is not of type 'integer'" in v for v in px.violations)
    assert any("status 400 not documented" in v for v in px.violations)
    px.violations.clear()
    await client.raw("/api/Order/placeBulk", accountId=ACCOUNT)
    assert any("path not in the contract" in v for v in px.violations)
    px.violations.clear()


async def test_stop_limit_trailing_stop_and_locked_account(px: ProjectXStandin, client: Client) -> None:
    stop_limit = (await client.place(type=3, side=1, size=1, stopPrice=5990, limitPrice=5988))["orderId"]
    trailing = (await client.place(type=5, side=1, size=1, trailPrice=10))["orderId"]
    px.set_price(ES, "6020")  # the trailing stop follows up to 6010
    px.set_price(ES, "5990")  # triggers the stop-limit (limit 5988 is marketable) and the trailing stop
    orders = await client.orders()
    assert orders[stop_limit]["status"] == 2 and orders[stop_limit]["filledPrice"] == 5990
    assert orders[trailing]["status"] == 2 and orders[trailing]["filledPrice"] == 5990
    px.broker.accounts[ACCOUNT].can_trade = False
    locked = await client.place(type=2, side=0, size=1)
    assert locked["success"] is False and locked["errorCode"] == 10
    assert px.calls[-1][2]["type"] == 2  # every request body is recorded for assertions
