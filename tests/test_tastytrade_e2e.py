"""End-to-end on tastytrade: webhook -> risk -> TastytradeBroker -> stand-in -> fill (polling) -> /api/positions, for
a stock and for a continuous futures ticker; and `traderd check --online` proving an account can trade by a dry run."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.tastytrade.broker import TastytradeBroker
from daemon.domain import OrderStatus, SignalStatus
from tests.conftest import SECRET, alert, client_for, settings_for, settled, wait_until
from tests.standin_fixtures import tastytrade_running
from tests.standins.tastytrade_api import ACCOUNT_NUMBER, TastytradeStandin
from tests.test_cli_subprocess import clean_env
from tests.test_tastytrade_adapter import ES

URL = f"/webhook/tradingview/{SECRET}"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def stand() -> AsyncIterator[TastytradeStandin]:
    async with tastytrade_running() as standin:
        yield standin


def tastytrade_account(stand: TastytradeStandin, **risk: Any) -> dict[str, Any]:
    return {"broker": "tastytrade", "risk": risk, "tastytrade": {
        "client_secret": stand.client_secret, "refresh_token": stand.refresh_token, "base_url": stand.url,
        "account_number": ACCOUNT_NUMBER, "timeout_seconds": 2, "rate_limit_per_minute": 6000,
        "poll_interval_seconds": 0.1, "stream_url": stand.ws_url,
    }}


async def test_webhook_to_tastytrade_stock_and_future(start_daemon, stand: TastytradeStandin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stand.set_price("AAPL", "187.5")
    stand.set_price(ES, 6000)
    accounts = {"tasty1": tastytrade_account(stand, max_position="2")}
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts=accounts))
    assert isinstance(daemon.brokers["tasty1"], TastytradeBroker)
    async with client_for(daemon) as client:
        stock = await client.post(URL, json=alert(id="tt-1", account="tasty1", quantity="2", price="187.5"))
        future = await client.post(URL, json=alert(id="tt-2", account="tasty1", ticker="CME_MINI:ES1!", quantity="1",
                                                   price="6000"))
        for response in (stock, future):
            assert response.status_code == 202, response.text
            record = await settled(daemon, response.json()["signal_id"])
            assert record.status is SignalStatus.EXECUTED, record.reason
            assert [o.status for o in record.orders] == [OrderStatus.FILLED]
        assert len(stand.orders_for("AAPL")) == 1 and len(stand.orders_for(ES)) == 1
        [placed] = [b for m, p, b in stand.calls if m == "POST" and p.endswith("/orders") and
                    b["legs"][0]["symbol"] == ES]
        assert placed["legs"][0]["action"] == "Buy" and placed["external-identifier"].startswith("td")

        fills = await wait_until(lambda: len(daemon.store.fills("tasty1")) == 2 and daemon.store.fills("tasty1"),
                                 within=15)  # heard by polling
        assert sorted((f.symbol, f.quantity, f.price) for f in fills) == [("AAPL", 2, Decimal("187.5")),
                                                                         ("ES1!", 1, Decimal(6000))]
        positions = (await client.get("/api/positions", params={"account": "tasty1"})).json()["positions"]
        assert sorted((p["symbol"], Decimal(p["quantity"]), Decimal(p["average_price"])) for p in positions) == [
            ("AAPL", 2, Decimal("187.5")), ("ES1!", 1, Decimal(6000))]
        await daemon.reconcile_all()  # the same fills under the same ids: nothing doubled
        assert len(daemon.store.fills("tasty1")) == 2
        assert (await client.get("/healthz")).json()["checks"]["broker:tasty1"] is True

        # risk sees the broker's futures position under the signal's ticker: 1 + 2 > max_position 2
        too_big = await client.post(URL, json=alert(id="tt-3", account="tasty1", ticker="ES1!", quantity="2"))
        assert (await settled(daemon, too_big.json()["signal_id"])).status is SignalStatus.REJECTED
        exit_ = await client.post(URL, json=alert(id="tt-4", account="tasty1", ticker="ES1!", action="exit",
                                                  quantity=None))
        assert (await settled(daemon, exit_.json()["signal_id"])).status is SignalStatus.EXECUTED
        positions = (await client.get("/api/positions", params={"account": "tasty1"})).json()["positions"]
        assert [p["symbol"] for p in positions] == ["AAPL"]
    assert len(stand.orders_for(ES)) == 2 and ES not in stand.book.positions


def account_toml(name: str, stand: TastytradeStandin, **extra: str) -> str:
    lines = [f"[accounts.{name}]", 'broker = "tastytrade"', f"[accounts.{name}.tastytrade]",
             f'client_secret = "{stand.client_secret}"', f'refresh_token = "{stand.refresh_token}"',
             f'base_url = "{stand.url}"', "timeout_seconds = 2", *(f'{k} = "{v}"' for k, v in extra.items())]
    return "\n".join(lines) + "\n"


async def test_online_check_dry_runs_an_order(tmp_path: Path, stand: TastytradeStandin) -> None:
    state = tmp_path / "state"
    config = tmp_path / "traderd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{state}"\n' + account_toml("good", stand)
                      + account_toml("cannot", stand, check_symbol="NOSUCH"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.cli", "check", "--online", "--config", str(config),
        env=clean_env(tmp_path), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 90)
    lines = out.decode().splitlines()
    assert process.returncode == 1, out.decode() + err.decode()
    good = next(line for line in lines if "broker good" in line)
    assert good.startswith("ok") and "equity 100000 USD; tastytrade dry run of buy 1 SPY: accepted" in good
    bad = next(line for line in lines if "broker cannot" in line)
    assert bad.startswith("FAIL") and "dry run was refused" in bad and "Unknown symbol NOSUCH" in bad
    assert "fix: check the account's trading permissions and funds, or check_symbol in" in bad
    assert stand.book.orders == {} and stand.client_secret not in out.decode() + err.decode()
