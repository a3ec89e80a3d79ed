"""One alert, many accounts, end to end through the webhook: 10 accounts on the paper broker and the Alpaca
stand-in; multipliers and rounding, skips, one refusal among fills, symbol maps with a ratio, one engine symbol
per contract, resend dedup, the answers of the webhook and /api/signals/<id>, and the one chat message."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.symbols import normalize
from daemon.app import Daemon
from daemon.domain import OrderStatus, SignalStatus
from tests.conftest import SECRET, DaemonFactory, alert, client_for, settings_for, wait_until
from tests.standins.alpaca_api import AlpacaStandIn
from tests.standins.contract import assert_no_violations
from tests.standins.telegram_api import TelegramStandin
from tests.test_alpaca_e2e import alpaca_account
from tests.test_chat_e2e import GROUP, OPERATOR, alerts_text, ask, flat, start_with_telegram

URL = f"/webhook/tradingview/{SECRET}"
PAPER = {"paper": {"starting_cash": "1000000"}}


@pytest.fixture
async def alpaca() -> AsyncIterator[list[AlpacaStandIn]]:
    """Two Alpaca accounts, each its own stand-in."""
    stands = [AlpacaStandIn(cash=Decimal("10000000")) for _ in range(2)]
    for stand in stands:
        await stand.start()
    try:
        yield stands
    finally:
        for stand in stands:
            await stand.stop()
    for stand in stands:
        assert_no_violations(stand.violations)


def ten_accounts(alpaca: list[AlpacaStandIn]) -> dict[str, Any]:
    """Eight paper accounts (one with a quantity limit) and two on Alpaca stand-ins, in one group."""
    accounts: dict[str, Any] = {f"p{i}": dict(PAPER) for i in range(1, 9)}
    accounts["p6"] = {**PAPER, "risk": {"max_order_quantity": "5"}}
    accounts["s1"] = alpaca_account(alpaca[0])
    accounts["s2"] = alpaca_account(alpaca[1])
    accounts["solo"] = dict(PAPER)  # not in the group
    group = {"p1": 1, "p2": 1, "p3": "0.5", "p4": "0.3", "p5": 0, "p6": 1, "p7": 2, "p8": "0.05", "s1": 1,
             "s2": "0.5"}
    return {"accounts": accounts, "groups": {"ten": {"accounts": group}}}


async def children_final(daemon: Daemon, parent_id: str, within: float = 10.0) -> Any:
    def done() -> Any:
        record = daemon.store.get_signal(parent_id)
        return record if record and record.children and all(c.status.is_final for c in record.children) else None

    return await wait_until(done, within)


def held(daemon: Daemon, account: str) -> dict[str, Decimal]:
    return {p.symbol: p.quantity for p in daemon.store.positions(account)}


async def test_group_fanout_sizes_skips_refusal_answers_and_resend(
        start_daemon: DaemonFactory, alpaca: list[AlpacaStandIn], tmp_path: Path) -> None:
    daemon = await start_daemon(settings_for(tmp_path / "state", **ten_accounts(alpaca)))
    body = alert(id="fan-1", account="ten", quantity="10", price="100")
    async with client_for(daemon) as client:
        response = await client.post(URL, json=body)
        assert response.status_code == 202, response.text
        answer = response.json()
        parent_id = answer["signal_id"]
        assert answer["accounts"] == ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "s1", "s2"]
        statuses = {c["account"]: c["status"] for c in answer["children"]}
        assert statuses["p5"] == statuses["p8"] == "skipped" and statuses["p1"] == "pending"
        await children_final(daemon, parent_id)
        await wait_until(lambda: len(daemon.store.fills("s1")) == 1 and len(daemon.store.fills("s2")) == 1)

        # multiplied, rounded down; each account's own position
        expected = {"p1": 10, "p2": 10, "p3": 5, "p4": 3, "p7": 20, "s1": 10, "s2": 5}
        for account, quantity in expected.items():
            assert held(daemon, account) == {"AAPL": Decimal(quantity)}, account
        for account in ("p5", "p6", "p8", "solo"):
            assert held(daemon, account) == {}, account

        shown = (await client.get(f"/api/signals/{parent_id}")).json()
        assert shown["status"] == "fanned_out" and shown["account"] == "@ten"
        kids = {c["account"]: c for c in shown["children"]}
        assert set(kids) == set(answer["accounts"])
        assert kids["p6"]["status"] == "rejected"
        assert kids["p6"]["reason"] == "order quantity 10 exceeds the limit 5"
        assert kids["p5"]["status"] == "skipped" and kids["p5"]["reason"] == "multiplier 0"
        assert kids["p8"]["status"] == "skipped" and "rounds down to 0" in kids["p8"]["reason"]
        assert kids["p3"]["route"]["multiplier"] == "0.5" and kids["p3"]["route"]["quantity"] == "5"
        assert [o["status"] for o in kids["p7"]["orders"]] == ["filled"]
        assert [Decimal(f["quantity"]) for f in kids["p7"]["fills"]] == [20]
        assert kids["s1"]["orders"][0]["status"] == "filled" and kids["s1"]["parent_id"] == parent_id
        # each child its own client order id, derived from the alert and the account
        coids = {kids[a]["orders"][0]["client_order_id"] for a in expected}
        assert len(coids) == len(expected)
        assert [alpaca[i].order_by_client(kids[a]["orders"][0]["client_order_id"])["qty"]  # type: ignore[index]
                for i, a in enumerate(("s1", "s2"))] == ["10", "5"]

        # the resend is a duplicate for every child: nothing new at any broker
        again = await client.post(URL, json=body)
        assert again.status_code == 200 and again.json() == {"status": "duplicate", "signal_id": parent_id}
        direct = await client.post(URL, json=alert(id="fan-1", account="p1", quantity="10", price="100"))
        assert direct.status_code == 200  # the same alert sent to one member alone: that child already ran
    assert [len(stand.orders) for stand in alpaca] == [1, 1]
    assert sum(len(daemon.store.fills(a)) for a in expected) == len(expected)


async def test_accounts_list_and_unknown_names(start_daemon: DaemonFactory, make_settings: Any) -> None:
    daemon = await start_daemon(accounts={"a": PAPER, "b": PAPER, "c": PAPER})
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(id="l1", accounts=["a", "c"], quantity="3"))
        assert response.status_code == 202 and response.json()["accounts"] == ["a", "c"]
        await children_final(daemon, response.json()["signal_id"])
        assert held(daemon, "a") == held(daemon, "c") == {"AAPL": 3} and held(daemon, "b") == {}
        bad = await client.post(URL, json=alert(id="l2", accounts=["a", "nope"], quantity="3"))
        assert bad.status_code == 422 and bad.json()["error"] == "unknown_account"
        both = await client.post(URL, json=alert(id="l3", account="a", accounts=["b"], quantity="3"))
        assert both.status_code == 422 and "not both" in both.json()["detail"]
    assert len(daemon.store.fills()) == 2


def futures_group() -> dict[str, Any]:
    return {
        "accounts": {"nq1": PAPER, "nq2": PAPER, "micro": PAPER, "other": PAPER},
        "groups": {"nq": {"accounts": {"nq1": 1, "nq2": "0.5", "micro": 1}, "symbols": ["NQ1!"]}},
        "symbol_maps": {"micro": {"NQ": {"to": "MNQ", "ratio": 10}}},
        "default_account": "other",
    }


async def test_symbol_map_with_ratio_and_one_engine_symbol(start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon(**futures_group())
    today = date.today()
    front = normalize("NQ1!", on=today)
    async with client_for(daemon) as client:
        # no account named: the ticker routes to the group
        first = await client.post(URL, json=alert(id="nq-1", ticker="CME_MINI:NQ1!", quantity="2", price="18000"))
        assert first.status_code == 202, first.text
        record = await children_final(daemon, first.json()["signal_id"])
        assert all(c.status is SignalStatus.EXECUTED for c in record.children), [c.reason for c in record.children]
        micro = next(c for c in record.children if c.account == "micro")
        assert micro.route == {"ticker": "NQ1!", "symbol": "MNQ1!", "contract": normalize("MNQ1!", on=today),
                               "multiplier": "1", "ratio": "10", "quantity": "20", "target_position": None}
        assert held(daemon, "micro") == {"MNQ1!": 20} and held(daemon, "nq2") == {"NQ1!": 1}
        # the dated front contract is the same position as the continuous ticker
        second = await client.post(URL, json=alert(id="nq-2", ticker=front, account="nq", quantity="2",
                                                   price="18010"))
        await children_final(daemon, second.json()["signal_id"])
        assert held(daemon, "nq1") == {"NQ1!": 4} and held(daemon, "micro") == {"MNQ1!": 40}
        # an exit scaled by 0.5 rounds up: the whole 2 contracts of nq2 close, never more
        out = await client.post(URL, json=alert(id="nq-3", ticker="NQ1!", action="exit", quantity="3",
                                                price="18020"))
        await children_final(daemon, out.json()["signal_id"])
        assert held(daemon, "nq2") == {} and held(daemon, "nq1") == {"NQ1!": 1} and held(daemon, "micro") == {
            "MNQ1!": 10}
        # one account alone: its own map still applies
        alone = await client.post(URL, json=alert(id="nq-4", ticker="NQ1!", account="micro", quantity="1",
                                                  price="18000"))
        assert alone.status_code == 202 and alone.json()["account"] == "micro"
        await wait_until(lambda: held(daemon, "micro") == {"MNQ1!": 20})
        assert held(daemon, "other") == {}


async def test_one_message_group_views_and_group_flatten_from_chat(
        tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    setup = futures_group()
    setup["accounts"]["nq2"] = {**PAPER, "risk": {"max_order_quantity": "1"}}
    setup["groups"]["nq"]["accounts"]["other"] = 0
    daemon = await start_with_telegram(start_daemon, tg, **setup)
    async with client_for(daemon) as client:
        outside = await client.post(URL, json=alert(id="o-1", ticker="NQ1!", account="other", quantity="1",
                                                    price="18000"))
        assert outside.status_code == 202
        response = await client.post(URL, json=alert(id="m-1", ticker="NQ1!", quantity="4", price="18000"))
        parent_id = response.json()["signal_id"]
        await children_final(daemon, parent_id)
    await tg.wait_for(lambda: "buy 4 NQ1! [nq] -&gt;" in alerts_text(tg), within=10)
    message = html.unescape(next(m.text for m in tg.sent_to(GROUP) if "buy 4 NQ1! [nq]" in m.text))
    assert ("buy 4 NQ1! [nq] -> 2 filled, 1 refused (nq2: order quantity 2 exceeds the limit 1), "
            "1 skipped (other: multiplier 0)") in message.splitlines(), message
    micro = normalize("MNQ1!", on=date.today())
    assert f"micro: buy 40 MNQ1! ({micro}) (from NQ1! x10) @ 18,000.00" in message.splitlines()
    text = alerts_text(tg)
    assert "Filled [nq1]" not in text and "Filled [micro]" not in text and "REJECTED [nq2]" not in text
    assert "Filled [other]" in text  # an ordinary alert still reports on its own

    positions = flat((await ask(tg, "/positions nq")).text)
    assert "nq1" in positions and "micro" in positions and "other" not in positions
    pnl = flat((await ask(tg, "/pnl nq")).text)
    assert "nq1" in pnl and "micro" in pnl and "other" not in pnl
    question = await ask(tg, "/flatten nq", chat=GROUP)
    assert question.buttons and "close 2 position(s)" in question.text
    assert held(daemon, "nq1") == {"NQ1!": 4}  # nothing done before the confirmation
    await tg.press(OPERATOR, question, question.buttons[0][1])
    await tg.wait_for(lambda: tg.edits, within=10)
    assert question.text.startswith("Flatten nq: done."), question.text
    assert held(daemon, "nq1") == {} and held(daemon, "micro") == {}
    assert held(daemon, "other") == {"NQ1!": 1}  # not a member (multiplier 0): untouched


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandin]:
    standin = await TelegramStandin(max_poll=1.0).start()
    yield standin
    await standin.stop()


def test_group_config_errors(tmp_path: Path) -> None:
    from pydantic import ValidationError

    base = {"accounts": {"a": PAPER, "b": {**PAPER, "symbols": ["ES1!"]}}}
    cases = [
        ({"groups": {"g": {"accounts": {"zz": 1}}}}, "not configured accounts"),
        ({"groups": {"a": {"accounts": {"b": 1}}}}, "name of an account"),
        ({"groups": {"g": {"accounts": {"a": -1}}}}, "from 0 to 100"),
        ({"groups": {"g": {"accounts": {"a": 1}, "symbols": ["ES1!"]}}}, "routed to both"),
        ({"symbol_maps": {"nobody": {"NQ": {"to": "MNQ", "ratio": 10}}}}, "neither an account nor a group"),
    ]
    for extra, message in cases:
        with pytest.raises(ValidationError, match=message):
            settings_for(tmp_path, **base, **extra)


async def test_order_status_of_children_is_the_brokers(start_daemon: DaemonFactory) -> None:
    """A resting limit order: the child is executed with its order open, and the parent shows it."""
    daemon = await start_daemon(accounts={"a": PAPER, "b": PAPER}, groups={"g": {"accounts": {"a": 1, "b": 2}}})
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(id="lim", account="g", quantity="1", order_type="limit",
                                                     limit_price="50", price="100"))
        record = await children_final(daemon, response.json()["signal_id"])
    assert [(c.account, c.orders[0].status, c.orders[0].quantity) for c in record.children] == [
        ("a", OrderStatus.NEW, 1), ("b", OrderStatus.NEW, 2)]


async def test_orders_fills_and_signals_by_group(start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon(accounts={"a": PAPER, "b": PAPER, "solo": PAPER},
                                groups={"g": {"accounts": {"a": 1, "b": 2}}})
    async with client_for(daemon) as client:
        fanned = await client.post(URL, json=alert(id="grp-1", account="g", quantity="2", price="100"))
        assert fanned.status_code == 202, fanned.text
        alone = await client.post(URL, json=alert(id="grp-2", account="solo", quantity="1", price="100"))
        assert alone.status_code == 202, alone.text
        await children_final(daemon, fanned.json()["signal_id"])
        await wait_until(lambda: len(daemon.store.fills()) == 3, within=15)

        orders = (await client.get("/api/orders", params={"account": "g"})).json()["orders"]
        assert sorted((o["account"], Decimal(o["quantity"])) for o in orders) == [("a", 2), ("b", 4)]
        fills = (await client.get("/api/fills", params={"account": "g"})).json()["fills"]
        assert sorted(f["account"] for f in fills) == ["a", "b"]
        page = (await client.get("/api/fills", params={"account": "g", "limit": 1})).json()
        assert len(page["fills"]) == 1 and page["next"]  # paging keeps the group filter
        rest = (await client.get(page["next"])).json()["fills"]
        assert {f["account"] for f in page["fills"] + rest} == {"a", "b"} and len(rest) == 1
        signals = (await client.get("/api/signals", params={"account": "g"})).json()["signals"]
        assert sorted(s["account"] for s in signals) == ["@g", "a", "b"]  # the alert and its children
        csv_rows = (await client.get("/api/fills.csv", params={"account": "g"})).text.strip().splitlines()
        assert len(csv_rows) == 3  # header and the group's two fills
        solo = (await client.get("/api/orders", params={"account": "solo"})).json()["orders"]
        assert [o["account"] for o in solo] == ["solo"]
        everything = (await client.get("/api/orders")).json()["orders"]
        assert len(everything) == 3
        unknown = await client.get("/api/orders", params={"account": "nope"})
        assert unknown.status_code == 404
