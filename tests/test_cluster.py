"""Several `traderd run` processes on one PostgreSQL store: exclusive ownership, failover, fencing, sharding, chat.

Each test starts 2-3 real daemon subprocesses on a fresh database. Orders go to an Alpaca stand-in that every
daemon reaches over loopback (one broker state for all of them), so a doubled order would show as a second
POST with the same client order id; a lost signal as an accepted one without an order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import create_engine, text

from daemon.domain import SignalStatus, client_order_id
from daemon.ownership.fence import NotOwner
from daemon.ownership.keeper import LeaseKeeper
from daemon.store.database import Database, normalize_url
from daemon.store.leases import Leases
from tests.cluster_broker import AlpacaProcess, Post
from tests.cluster_nodes import PG_URL, Load, Node, alpaca_account, body, fresh_database, held, until
from tests.standins.contract import assert_no_violations
from tests.standins.telegram_api import TelegramStandin

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(not PG_URL, reason="cluster tests need TRADERD_TEST_POSTGRES_URL (see .ci/run)"),
]

LEASE = 4.0  # seconds: short, so the failover tests finish quickly
CLUSTER = {"lease_seconds": LEASE}
# Webhooks per second during the kill -9 test; a slower machine can be measured with a lower rate.
LOAD_RATE = float(os.environ.get("TRADERD_TEST_LOAD_RATE", "200"))


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture
async def alpaca() -> AsyncIterator[AlpacaProcess]:
    stand = await AlpacaProcess().start()
    try:
        yield stand
        assert_no_violations(await stand.violations())
    finally:
        await stand.stop()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


async def start_all(nodes: list[Node], tmp: Path, names: list[str], config: dict[str, Any]) -> list[Node]:
    started = [Node(name, tmp, config) for name in names]
    nodes.extend(started)
    for node in started:  # all at once: they race for the leases
        node.start()
    await asyncio.gather(*(node.wait_ready() for node in started))
    return started


async def owner_of(nodes: list[Node], account: str) -> Node:
    async def find() -> Node | None:
        for node in nodes:
            health = await node.health() if node.alive() else None
            if health and account in health["accounts"]:
                return node
        return None

    found: Node = await until(find, 3 * LEASE + 20)
    return found


def signals(url: str) -> dict[str, tuple[SignalStatus, str]]:
    """signal_id -> (status, dedup key) as the shared store has them."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT signal_id, status, dedup_key FROM signals")).all()
        return {signal_id: (SignalStatus(status), key) for signal_id, status, key in rows}
    finally:
        engine.dispose()


def traderd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parent.parent, stdin=subprocess.DEVNULL)


def assert_each_accepted_signal_placed_once(url: str, load: Load, posts: list[Post], at_broker: set[str]) -> None:
    stored = signals(url)
    by_key = {key: (sid, status) for sid, (status, key) in stored.items()}
    lost = [key for key in load.accepted if key not in by_key]
    assert lost == [], f"accepted but not stored: {lost[:5]}"
    unfinished = [key for key in load.accepted if not by_key[key][1].is_final]
    assert unfinished == []
    failed = {key: by_key[key][1] for key in load.accepted if by_key[key][1] is not SignalStatus.EXECUTED}
    assert failed == {}
    posted = [coid for _, coid, _ in posts]
    assert len(posted) == len(set(posted)), "an order was sent twice"
    expected = {client_order_id("stocks", key) for key in load.accepted}
    assert expected <= at_broker, "an accepted signal has no order at the broker"
    assert set(posted) <= {client_order_id("stocks", key) for _, key in stored.values()}


# ---- leases on the real server ---------------------------------------------------------------------------


def test_one_of_many_racing_takers_gets_a_free_lease(database: str) -> None:
    db = Database(database)
    db.open()
    try:
        leases = Leases(db)
        barrier = threading.Barrier(8)
        grants: list[Any] = [None] * 8

        def take(i: int) -> None:
            barrier.wait()
            grants[i] = leases.acquire("account:x", f"owner-{i}", f"node-{i}", 30)

        threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        winners = [i for i, grant in enumerate(grants) if grant is not None]
        assert len(winners) == 1
        winner = winners[0]
        assert grants[winner].token == 1 and grants[winner].previous_holder is None
        assert leases.holds("account:x", f"owner-{winner}", 1)
        assert not leases.holds("account:x", "owner-other", 1)
        assert leases.acquire("account:x", "late", "node-late", 30) is None  # still renewed: never stolen
        assert leases.renew(f"owner-{winner}", 0.2) == {"account:x": (1, False)}
        time.sleep(0.4)  # expired on the database's clock
        assert not leases.holds("account:x", f"owner-{winner}", 1)
        assert leases.renew(f"owner-{winner}", 30) == {}  # an expired lease cannot be renewed, only retaken
        grant = leases.acquire("account:x", "next", "node-next", 30)
        assert grant is not None and grant.token == 2 and grant.previous_holder == f"node-{winner}"
        assert not grant.previous_released
        assert not leases.holds("account:x", f"owner-{winner}", 1)  # the old token is fenced off for good
        assert leases.request_release("account:x") == "node-next"
        assert leases.renew("next", 30) == {"account:x": (2, True)}
        assert leases.release("account:x", "next", 2)
        again = leases.acquire("account:x", "third", "node-third", 30)
        assert again is not None and again.token == 3 and again.previous_released
    finally:
        db.close()


async def test_the_fence_refuses_once_the_term_is_over(database: str) -> None:
    """The monotonic deadline ends a term before the database would let the lease go; a new token fences
    the old owner off even if its own clock says it still may send."""
    db = Database(database)
    db.open()
    now = [1000.0]
    gained: list[str] = []
    lost: list[str] = []

    async def gain(lease: str, grant: Any) -> None:
        gained.append(lease)

    async def lose(lease: str, why: str, graceful: bool) -> None:
        lost.append(lease)

    keeper = LeaseKeeper(Leases(db), name="k", accounts=["x"], capacity=None, singleton=False,
                         lease_seconds=30, renew_seconds=10, margin_seconds=6, on_gain=gain, on_loss=lose,
                         monotonic=lambda: now[0])
    try:
        await keeper.start()
        assert gained == ["account:x"]
        keeper.fence("x")  # held, current token, term running
        now[0] += 24.5  # past sent + 30 - 6 on our clock; the database still has 5 s left
        assert Leases(db).holds("account:x", keeper.owner, 1)
        with pytest.raises(NotOwner, match="does not hold"):
            keeper.fence("x")
        keeper.tick()  # renewed while nobody else could have it: a new term under the same token
        keeper.fence("x")
        # The database lets the lease go (our clock did not see the time pass) and another daemon takes it:
        # the token it shows is no longer current, so nothing goes out.
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE leases SET expires_at = clock_timestamp() - interval '1 second'"))
        grant = Leases(db).acquire("account:x", "other", "node-other", 30)
        assert grant is not None and grant.token == 2
        with pytest.raises(NotOwner, match="moved on"):
            keeper.fence("x")
        now[0] += 10
        keeper.tick()  # the next renewal finds the lease gone: what the term covered is stopped
        await asyncio.sleep(0.1)
        assert lost == ["account:x"] and keeper.held() == []
        with pytest.raises(NotOwner):
            keeper.fence("y")  # never ours
    finally:
        await keeper.stop()
        db.close()


# ---- daemons ---------------------------------------------------------------------------------------------


async def test_exclusive_ownership_under_simultaneous_starts(database: str, nodes: list[Node],
                                                             tmp_path: Path) -> None:
    accounts = {f"acct{i}": {} for i in range(4)}
    started = await start_all(nodes, tmp_path, ["n1", "n2", "n3"], {
        "store": {"url": database}, "cluster": CLUSTER, "accounts": accounts})
    owned = await held(started)
    flat = [account for names in owned.values() for account in names]
    assert sorted(flat) == sorted(accounts)  # every account owned, none twice
    healths = [await node.health() for node in started]
    assert sum(1 for h in healths if h and h["singleton"]) == 1
    assert {h["role"] for h in healths if h} <= {"active", "standby", "partial"}
    async with httpx.AsyncClient(timeout=5) as client:
        status = (await client.get(f"{started[0].base}/api/status")).json()["cluster"]
    assert status["store"] == "postgresql"
    assert status["owners"] == {account: name for name, names in owned.items() for account in names}


@pytest.mark.timeout(600)  # the drain after the load: every accepted signal is executed, however long it takes
async def test_kill_9_of_the_owner_under_load(database: str, nodes: list[Node], alpaca: AlpacaProcess,
                                              tmp_path: Path) -> None:
    # Each daemon reaches the stand-in on a port of its own, so the new owner's first order is told apart
    # from a request the killed one had on the wire. Execution may drain after the load (every order goes
    # through the contract-checked stand-in and one account's worker): the signals must not go stale meanwhile.
    urls = {"a": alpaca.base_url, "b": await alpaca.listen_again()}
    a, b = [Node(name, tmp_path, {"store": {"url": database}, "cluster": CLUSTER,
                                  "accounts": {"stocks": alpaca_account(alpaca, urls[name])},
                                  "webhook": {"default_max_lag_seconds": 600}}) for name in ("a", "b")]
    nodes.extend([a, b])
    a.start(), b.start()
    await asyncio.gather(a.wait_ready(), b.wait_ready())
    owner = await owner_of([a, b], "stocks")
    standby = b if owner is a else a
    assert (await standby.health() or {})["role"] == "standby"
    load = Load([a, b], rate=LOAD_RATE)
    running = asyncio.create_task(load.run())
    await asyncio.sleep(3)
    owner.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    await asyncio.sleep(LEASE + 6)
    load.stop()
    await running
    print(f"load: {load.summary()}")
    await until(lambda: all(status.is_final for status, _ in signals(database).values()), 400, every=1)
    assert load.unanswered == 0 and load.refused == []
    assert len(load.accepted) > 500
    # Steady for the whole run, the failover included: every signal due was sent on time and accepted.
    assert load.behind < 1.0
    assert len(load.accepted) == load.sent
    assert load.achieved() >= 0.95 * LOAD_RATE
    assert_each_accepted_signal_placed_once(database, load, await alpaca.posts(), await alpaca.client_order_ids())
    first_after = await alpaca.first_post_after(killed_at, urls[standby.name])
    assert first_after is not None
    takeover = first_after - killed_at
    print(f"takeover: {takeover:.2f} s from kill -9 to the first order by the new owner "
          f"({len(load.accepted)} signals accepted)")
    assert takeover < LEASE + 5
    assert (await standby.health() or {})["role"] == "active"
    assert "stocks taken over by" in standby.log.read_text()


async def test_frozen_owner_places_nothing_after_it_resumes(database: str, nodes: list[Node],
                                                            alpaca: AlpacaProcess, tmp_path: Path) -> None:
    a, b = await start_all(nodes, tmp_path, ["a", "b"], {
        "store": {"url": database}, "cluster": CLUSTER, "accounts": {"stocks": alpaca_account(alpaca)}})
    owner = await owner_of([a, b], "stocks")
    other = b if owner is a else a
    await alpaca.inject("delay", count=1000, method="POST", path="/v2/orders", delay=0.4)  # a backlog at the owner
    async with httpx.AsyncClient(timeout=5) as client:
        for n in range(12):
            assert (await client.post(owner.url, json=body(n))).status_code == 202
    await until(lambda: _posted_at_least(alpaca, 2), 10)
    owner.kill(signal.SIGSTOP)  # frozen with signals queued and one in hand
    frozen_posts = len(await alpaca.posts())
    await owner_of([other], "stocks")
    await until(lambda: all(status.is_final for status, _ in signals(database).values()), 30)
    owner.kill(signal.SIGCONT)
    resumed_at = time.monotonic()
    await asyncio.sleep(LEASE)
    after = [coid for t, coid, _ in await alpaca.posts() if t > resumed_at]
    assert after == [], f"the old owner sent {after} after it resumed"
    posted = [coid for _, coid, _ in await alpaca.posts()]
    assert len(posted) == len(set(posted)) == 12 and frozen_posts < 12
    assert {status for status, _ in signals(database).values()} == {SignalStatus.EXECUTED}
    health = await owner.health()
    assert health is not None and health["role"] == "standby"
    assert f"{owner.name} no longer executes stocks" in owner.log.read_text()


BUY_EVERY_BAR = '''"""Buys one share at every bar close."""
from strategies.base import Strategy, buy


class BuyEveryBar(Strategy):
    def on_bar(self, bar, history, position):
        return [buy(1)]
'''


def minute_bars(path: Path, start: datetime, minutes: int) -> None:
    rows = ["time,open,high,low,close,volume"] + [
        f"{(start + timedelta(minutes=i)).isoformat()},100,101,99,100,10" for i in range(minutes)]
    path.write_text("\n".join(rows) + "\n")


def stored_status(url: str, dedup_key: str) -> SignalStatus | None:
    return next((status for status, key in signals(url).values() if key == dedup_key), None)


async def test_a_bar_closing_during_the_failover_is_caught_up_by_the_new_owner(
        database: str, nodes: list[Node], alpaca: AlpacaProcess, tmp_path: Path) -> None:
    (tmp_path / "buy_every_bar.py").write_text(BUY_EVERY_BAR)
    minute_bars(tmp_path / "aapl.csv", datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1), 180)
    strategy = {"strategy": str(tmp_path / "buy_every_bar.py"), "account": "stocks", "symbol": "AAPL",
                "timeframe": "1m", "calendar": "24x7", "data": str(tmp_path / "aapl.csv"), "delay_seconds": 0,
                "max_lag_seconds": 120}
    urls = {"a": alpaca.base_url, "b": await alpaca.listen_again()}
    a, b = [Node(name, tmp_path, {"store": {"url": database}, "cluster": CLUSTER,
                                  "accounts": {"stocks": alpaca_account(alpaca, urls[name])},
                                  "strategies": {"buyer": strategy}}) for name in ("a", "b")]
    nodes.extend([a, b])
    a.start(), b.start()
    await asyncio.gather(a.wait_ready(), b.wait_ready())
    owner = await owner_of([a, b], "stocks")
    standby = b if owner is a else a
    # The owner dies just before a bar closes: at the close nobody executes the account, and the standby's
    # own bar-close run finds it not yet its own. The lease passes on seconds later.
    now = time.time()
    close = (now // 60 + 1) * 60
    if close - now < 3:
        close += 60
    await asyncio.sleep(close - now - 1)
    owner.kill(signal.SIGKILL)
    key = f"strategy:buyer:{datetime.fromtimestamp(close, UTC).isoformat()}:0"
    await until(lambda: stored_status(database, key) is SignalStatus.EXECUTED, LEASE + 30)
    posts = await alpaca.posts()
    placed = [port for _, coid, port in posts if coid == client_order_id("stocks", key)]
    assert placed == [int(urls[standby.name].rsplit(":", 1)[1])]  # once, by the new owner
    posted = [coid for _, coid, _ in posts]
    assert len(posted) == len(set(posted))
    assert "stocks taken over by" in standby.log.read_text()


async def test_ten_accounts_sharded_over_three_daemons(database: str, nodes: list[Node], tmp_path: Path) -> None:
    accounts = {f"acct{i:02}": {} for i in range(10)}
    started = await start_all(nodes, tmp_path, ["s1", "s2", "s3"], {
        "store": {"url": database}, "cluster": {**CLUSTER, "capacity": 5}, "accounts": accounts})

    async def spread() -> dict[str, list[str]] | None:
        owned = await held([n for n in started if n.alive()])
        flat = sorted(a for names in owned.values() for a in names)
        return owned if flat == sorted(accounts) else None

    owned = await until(spread, 3 * LEASE)
    assert all(len(names) <= 5 for names in owned.values())

    # Explicit rebalancing: one account handed from a full-ish daemon to one with room.
    giver = max(started, key=lambda n: len(owned[n.name]))
    moved = owned[giver.name][0]
    done = await asyncio.to_thread(traderd, "release", moved, "--config", str(giver.config), "--wait", "20")
    assert done.returncode == 0, done.stderr
    assert f"released by {giver.name}, now executed by s" in done.stdout
    new_owner = await owner_of(started, moved)
    assert new_owner is not giver

    # The daemon with the most accounts dies; the others take its accounts over (they have the room).
    owned = await until(spread, 10)
    victim = max(started, key=lambda n: len(owned[n.name]))
    orphans = owned[victim.name]
    victim.kill(signal.SIGKILL)
    survivors = [n for n in started if n is not victim]
    taken = await until(spread, LEASE + 10)
    assert victim.name not in taken
    assert all(len(names) <= 5 for names in taken.values())
    for name in orphans:
        assert any(name in taken[n.name] for n in survivors)
    logs = "".join(n.log.read_text() for n in survivors)
    assert all(f"{name} taken over by" in logs for name in orphans)
    status = await asyncio.to_thread(traderd, "status", "--config", str(survivors[0].config))
    assert status.returncode == 0, status.stderr
    for account in accounts:
        owner = next(n.name for n in survivors if account in taken[n.name])
        assert any(line.split()[0] == account and f"owner {owner}" in line for line in status.stdout.splitlines())


class CountingTelegram(TelegramStandin):
    """The Telegram stand-in, tracking how many getUpdates long polls are open at once."""

    def __init__(self) -> None:
        super().__init__(max_poll=1.0)
        self.open_polls = 0
        self.most_open = 0

    async def _m_getupdates(self, params: dict[str, Any]) -> web.Response:
        self.open_polls += 1
        self.most_open = max(self.most_open, self.open_polls)
        try:
            return await super()._m_getupdates(params)
        finally:
            self.open_polls -= 1


async def test_chat_is_polled_by_exactly_one(database: str, nodes: list[Node], tmp_path: Path) -> None:
    tg = await CountingTelegram().start()
    try:
        operator, group = 100, -300
        chat = {"telegram": {"token": tg.token, "base_url": tg.base_url, "users": {str(operator): "operator"},
                             "chats": [str(operator), str(group)], "alert_chats": [str(group)], "poll_timeout": 1},
                "alerts": {"drain_seconds": 1, "max_backoff_seconds": 1}}
        a, b = await start_all(nodes, tmp_path, ["a", "b"], {
            "store": {"url": database}, "cluster": CLUSTER, "accounts": {"paper": {}}, **chat})
        await until(lambda: tg.commands, 15)
        await asyncio.sleep(4)  # both running: only one may poll
        assert tg.most_open == 1
        sent = len(tg.sent_to(operator))
        await tg.send_command(operator, operator, "/status")
        await until(lambda: len(tg.sent_to(operator)) > sent, 10)
        await asyncio.sleep(2)
        assert len(tg.sent_to(operator)) == sent + 1  # answered once

        holder = a if await _singleton(a) else b
        other = b if holder is a else a
        assert await _singleton(holder) and not await _singleton(other)
        paper_owner = await owner_of([a, b], "paper")
        holder.kill(signal.SIGKILL)
        await until(lambda: _singleton(other), LEASE + 10)
        await asyncio.sleep(2)  # the dead poller's last long poll has ended
        tg.most_open = tg.open_polls
        sent = len(tg.sent_to(operator))
        await tg.send_command(operator, operator, "/status")
        await until(lambda: len(tg.sent_to(operator)) > sent, 15)
        await asyncio.sleep(3)
        assert len(tg.sent_to(operator)) == sent + 1 and tg.most_open == 1
        alerts = "\n".join(m.text for m in tg.sent_to(group))
        assert f"chat and alerts taken over by {other.name} after {holder.name} stopped renewing" in alerts
        assert (f"paper taken over by {other.name} after {holder.name}" in alerts) == (paper_owner is holder)
    finally:
        await tg.stop()


async def _singleton(node: Node) -> bool:
    health = await node.health()
    return bool(health and health["singleton"])



async def _posted_at_least(alpaca: AlpacaProcess, count: int) -> bool:
    return len(await alpaca.posts()) >= count
