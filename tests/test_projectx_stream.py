"""ProjectXBroker's real-time user hub (SignalR) against the stand-in hub, with polling as the safety net."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from brokers.base import BrokerReport
from brokers.projectx.broker import ProjectXBroker
from brokers.projectx.stream import decode, encode, hub_payload
from daemon.domain import Fill, utcnow
from tests.conftest import wait_until
from tests.standins.projectx_api import ProjectXStandin
from tests.test_projectx_adapter import collector, contract_id, make_broker, projectx_running

FAST = (0.05, 0.2)  # reconnect backoff in tests


@pytest.fixture
async def standin() -> AsyncIterator[ProjectXStandin]:
    async with projectx_running() as stand:
        yield stand


def by_hand(standin: ProjectXStandin, ticker: str = "MES1!", side: int = 0) -> None:
    """A market order placed on the platform (not by traderd): it fills at once."""
    standin.broker.place({"accountId": 1001, "contractId": contract_id(standin, ticker), "type": 2,
                          "side": side, "size": 1})


def fills(reports: list[BrokerReport]) -> list[Fill]:
    return [r.fill for r in reports if r.fill is not None]


async def streaming(standin: ProjectXStandin, **kw: Any) -> ProjectXBroker:
    broker = make_broker(standin, stream=True, stream_backoff=FAST, **kw)
    return broker


async def connected(broker: ProjectXBroker, standin: ProjectXStandin, connects: int = 1) -> None:
    assert broker._hub is not None
    hub = broker._hub
    await wait_until(lambda: hub.connected and hub.connects >= connects and standin.hub.subscribed(1001),
                     within=15)


def test_signalr_framing_round_trips() -> None:
    text = encode({"type": 1, "target": "GatewayUserTrade", "arguments": [{"id": 1}]}) + encode({"type": 6})
    assert decode(text) == [{"type": 1, "target": "GatewayUserTrade", "arguments": [{"id": 1}]}, {"type": 6}]
    assert decode("{}\x1enot json\x1e") == [{}]
    assert hub_payload(["CON.F.US.MES.Z26", {"action": 1, "data": {"id": 7}}]) == {"id": 7}
    assert hub_payload([{"id": 7}]) == {"id": 7}


async def test_trade_arrives_by_hub_long_before_the_next_poll(standin: ProjectXStandin) -> None:
    broker = await streaming(standin, poll_interval=60.0, reconcile=120.0)
    reports = collector(broker)
    await broker.connect()
    try:
        await connected(broker, standin)
        polls = standin.count("/api/Trade/search")
        by_hand(standin)
        [fill] = await wait_until(lambda: fills(reports), within=10)
        trade = standin.broker.trades[-1]
        assert (fill.fill_id, fill.symbol, fill.price) == (str(trade.id), "MES1!", trade.price)
        assert standin.count("/api/Trade/search") == polls  # it came by the hub, not by a poll
        await wait_until(lambda: any(r.order for r in reports), within=10)  # the order's status too
        assert broker.healthy() and broker.stream_connected
        assert standin.hub.tokens_seen == [broker._token]
    finally:
        await broker.close()


async def test_fill_during_a_hub_outage_is_polled_once_and_the_hub_comes_back(standin: ProjectXStandin) -> None:
    broker = await streaming(standin, poll_interval=0.1, reconcile=60.0, stream_grace=0.3)
    reports = collector(broker)
    await broker.connect()
    try:
        await connected(broker, standin)
        standin.hub.refuse = True  # the hub is down: upgrades answered 503
        await standin.hub.drop()
        await wait_until(lambda: not broker.stream_connected, within=10)
        by_hand(standin)
        await wait_until(lambda: fills(reports), within=10)  # the poller, woken by the drop, found it
        await wait_until(lambda: not broker.healthy(), within=10)  # down longer than the grace
        standin.hub.refuse = False
        await connected(broker, standin, connects=2)
        assert broker.healthy()
        by_hand(standin, side=1)
        await wait_until(lambda: len(fills(reports)) == 2, within=10)
        for _ in range(3):
            await broker.poll_once()  # reconciliation sees both again: nothing new
        assert sorted(f.fill_id for f in fills(reports)) == sorted(str(t.id) for t in standin.broker.trades)
    finally:
        await broker.close()


@pytest.mark.parametrize("hub_first", [True, False])
async def test_a_fill_seen_by_hub_and_poller_reaches_the_engine_once(
    standin: ProjectXStandin, hub_first: bool
) -> None:
    broker = await streaming(standin, poll_interval=0)  # polling by hand below
    reports = collector(broker)
    standin.hub.wrap = True  # {"action", "data"} envelopes are read too
    await broker.connect()
    try:
        await connected(broker, standin)
        if not hub_first:
            standin.hub.hold()
        by_hand(standin)
        if hub_first:
            await wait_until(lambda: fills(reports), within=10)
            await broker.poll_once()
        else:
            await broker.poll_once()
            assert len(fills(reports)) == 1
            standin.hub.release()
            await wait_until(lambda: standin.hub.connections and all(
                c.outbox.empty() for c in standin.hub.connections), within=10)
            await broker.poll_once()
        [fill] = fills(reports)
        assert fill.fill_id == str(standin.broker.trades[-1].id)
        statuses = [r.order.status for r in reports if r.order is not None]
        assert len(statuses) == len(set(statuses))  # each order state reported once too
    finally:
        await broker.close()


async def test_token_renewal_reconnects_the_hub_with_the_new_token(standin: ProjectXStandin) -> None:
    shift = [timedelta(0)]
    broker = await streaming(standin, poll_interval=0, clock=lambda: utcnow() + shift[0])
    reports = collector(broker)
    await broker.connect()
    try:
        await connected(broker, standin)
        first = broker._token
        shift[0] = timedelta(hours=21)  # past token_renew_seconds (20 h): the next call renews
        await broker.open_orders()
        assert broker._token != first and standin.count("/api/Auth/validate") == 1
        await connected(broker, standin, connects=2)
        assert standin.hub.tokens_seen == [first, broker._token]
        standin.expire_tokens()  # the old token stops working; the hub carries on with the new one
        standin.tokens[broker._token or ""] = utcnow() + timedelta(hours=1)
        by_hand(standin)
        await wait_until(lambda: fills(reports), within=10)
    finally:
        await broker.close()


async def test_stream_off_polls_only(standin: ProjectXStandin) -> None:
    broker = make_broker(standin, stream=False, poll_interval=0.1)
    reports = collector(broker)
    await broker.connect()
    try:
        by_hand(standin)
        await wait_until(lambda: fills(reports), within=10)
        assert standin.hub.tokens_seen == [] and broker.healthy()
    finally:
        await broker.close()
