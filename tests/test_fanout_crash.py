"""A crash in the middle of a fan-out: the real `traderd run` subprocess is killed (SIGKILL) after 3 of 10
accounts placed their order, with 4 orders received by their broker but not yet answered and 3 never sent.
After a restart every child is executed exactly once: nothing is lost, nothing is doubled."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.domain import client_order_id
from tests.conftest import SECRET
from tests.standins.alpaca_api import AlpacaStandIn
from tests.test_cli_subprocess import clean_env, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
PAPER = [f"p{i}" for i in range(1, 4)]
ANSWERED_LATE = [f"a{i}" for i in range(1, 5)]  # the broker took the order; the daemon died before the answer
NEVER_SENT = [f"a{i}" for i in range(5, 8)]  # the request had not reached the broker when the daemon died


@pytest.fixture
async def brokers() -> AsyncIterator[dict[str, AlpacaStandIn]]:
    stands = {name: AlpacaStandIn(cash=Decimal("10000000")) for name in ANSWERED_LATE + NEVER_SENT}
    for stand in stands.values():
        await stand.start()
    try:
        yield stands
    finally:
        for stand in stands.values():
            await stand.stop()


def config_text(tmp: Path, port: int, stands: dict[str, AlpacaStandIn]) -> str:
    lines = [
        f'[daemon]\nstate_dir = "{tmp / "state"}"\nreconcile_interval_seconds = 3600\nlog_level = "INFO"\n',
        f'[webhook]\nhost = "127.0.0.1"\nport = {port}\nsecret = "{SECRET}"\n',
    ]
    for name in PAPER:
        lines.append(f'[accounts.{name}.paper]\nstarting_cash = "1000000"\n')
    for name, stand in stands.items():
        lines.append(f'[accounts.{name}]\nbroker = "alpaca"\n[accounts.{name}.alpaca]\nkey_id = "{stand.key_id}"\n'
                     f'secret_key = "{stand.secret_key}"\nbase_url = "{stand.base_url}"\ntimeout_seconds = 60\n'
                     'rate_limit_per_minute = 6000\npoll_interval_seconds = 60\n')
    members = ", ".join(f"{name} = 1" for name in PAPER + list(stands))
    lines.append(f"[groups.ten]\naccounts = {{ {members} }}\n")
    return "\n".join(lines)


async def start(config: Path, home: Path, port: int, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon.cli", "run", "--config", str(config), env=clean_env(home),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=sink, cwd=ROOT)
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(300):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            if process.returncode is not None:
                break
            await asyncio.sleep(0.1)
    process.kill()
    tail = await asyncio.to_thread(log.read_text)
    raise AssertionError(f"traderd did not become ready: {tail[-3000:]}")


async def signal_of(port: int, signal_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as client:
        shown: dict[str, Any] = (await client.get(f"http://127.0.0.1:{port}/api/signals/{signal_id}")).json()
        return shown


async def test_kill_between_children_then_restart_runs_each_child_exactly_once(
        tmp_path: Path, brokers: dict[str, AlpacaStandIn]) -> None:
    port = free_port()
    config, log = tmp_path / "traderd.toml", tmp_path / "traderd.log"
    config.write_text(config_text(tmp_path, port, brokers))
    for name in ANSWERED_LATE:
        brokers[name].inject("hang", delay=60, method="POST", path="/v2/orders")
    for name in NEVER_SENT:
        brokers[name].inject("hold", delay=60, method="POST", path="/v2/orders")
    body = {"ticker": "AAPL", "action": "buy", "quantity": "2", "price": "100", "id": "crash-1", "account": "ten"}
    url = f"http://127.0.0.1:{port}/webhook/tradingview/{SECRET}"

    process = await start(config, tmp_path, port, log)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.post(url, json=body)
        assert answer.status_code == 202, answer.text
        parent_id = answer.json()["signal_id"]

        async def three_placed_seven_in_flight() -> bool:
            kids = {c["account"]: c["status"] for c in (await signal_of(port, parent_id))["children"]}
            return all(kids[a] == "executed" for a in PAPER) and all(
                brokers[a].count("POST", "/v2/orders") == 1 for a in ANSWERED_LATE + NEVER_SENT)

        for _ in range(200):
            if await three_placed_seven_in_flight():
                break
            await asyncio.sleep(0.05)
        assert await three_placed_seven_in_flight()
        assert all(len(brokers[a].orders) == 1 for a in ANSWERED_LATE)
        assert all(not brokers[a].orders for a in NEVER_SENT)
    finally:
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
    assert process.returncode == -signal.SIGKILL
    for stand in brokers.values():
        stand.faults.clear()
    await asyncio.sleep(0.2)  # the held requests notice their caller is gone and are dropped unhandled
    assert all(not brokers[a].orders for a in NEVER_SENT)

    process = await start(config, tmp_path, port, log)
    try:
        async def all_final() -> dict[str, Any] | None:
            shown = await signal_of(port, parent_id)
            return shown if all(c["status"] not in ("pending", "submitting") for c in shown["children"]) else None

        shown = None
        for _ in range(200):
            shown = await all_final()
            if shown:
                break
            await asyncio.sleep(0.05)
        assert shown is not None, "children did not finish after the restart"
        kids = {c["account"]: c for c in shown["children"]}
        assert {a: k["status"] for a, k in kids.items()} == {a: "executed" for a in PAPER + list(brokers)}
        for name in ANSWERED_LATE:
            assert kids[name]["reason"] == "order found at the broker after restart"
        for name, stand in brokers.items():  # exactly one order per account, under its own client order id
            assert [o["client_order_id"] for o in stand.orders.values()] == [client_order_id(name, "id:crash-1")]
        async with httpx.AsyncClient(timeout=5) as client:
            fills = (await client.get(f"http://127.0.0.1:{port}/api/fills")).json()["fills"]
            assert sorted(f["account"] for f in fills if f["account"] in PAPER) == PAPER
            again = await client.post(url, json=body)
            assert again.status_code == 200 and again.json()["signal_id"] == parent_id
        assert all(len(stand.orders) == 1 for stand in brokers.values())
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    assert process.returncode == 0, log.read_text()[-3000:]
