"""Every intake names a contract the same way: strategy signals pass the webhook's normaliser (exchange prefix,
symbol map with ratio, one engine symbol per contract), through a running daemon on the paper broker."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from brokers.symbols import normalize
from config.groups import Leg, SymbolMapping
from daemon.calendar import CHICAGO
from daemon.domain import Action, Intent, SignalStatus
from daemon.intake import for_account, symbol_for
from daemon.store.state import StateStore
from tests.conftest import SECRET, alert, client_for, wait_until
from tests.test_chat_e2e import ShiftedClock, running

BAR_CLOSE = datetime(2026, 11, 10, 9, 30, tzinfo=CHICAGO)  # ESZ6 is the front ES contract that day
TARGET_ONE = '''
from strategies.base import Strategy, target

class TargetOne(Strategy):
    def on_bar(self, bar, history, position):
        self.state["seen"] = f"{position.quantity:f}"
        return [target(1)]
'''
MICRO = {"NQ": SymbolMapping(to="MNQ", ratio=Decimal(10))}


def write_minutes(path: Path, start: datetime, minutes: int, price: Decimal) -> None:
    rows = ["time,open,high,low,close,volume"]
    for i in range(minutes):
        p = price + Decimal(i) / 4
        rows.append(f"{(start + timedelta(minutes=i)).isoformat()},{p},{p + 1},{p - 1},{p},10")
    path.write_text("\n".join(rows) + "\n")


def test_one_normaliser_for_every_spelling() -> None:
    on = BAR_CLOSE.date()
    assert normalize("ES1!", on=on) == "ESZ6"
    assert symbol_for("CME_MINI:esz6", {}, on) == ("ES1!", Decimal(1))  # the front contract is its alias
    assert symbol_for("NASDAQ:aapl", {}, on) == ("AAPL", Decimal(1))
    assert symbol_for("CME_MINI:NQ1!", MICRO, on) == ("MNQ1!", Decimal(10))
    intent = Intent(signal_id="st_1", dedup_key="strategy:x:1:0", account="micro", source="strategy",
                    action=Action.BUY, symbol="CME_MINI:NQ1!", quantity=Decimal("0.05"),
                    received_at=BAR_CLOSE)
    skipped = for_account(intent, Leg("micro", symbol_map=MICRO), on, signal_id=intent.signal_id)
    assert skipped.status is SignalStatus.SKIPPED and skipped.reason == "quantity 0.05 x 10 rounds down to 0"
    sized = for_account(intent.model_copy(update={"quantity": Decimal(2)}), Leg("micro", symbol_map=MICRO), on,
                        signal_id=intent.signal_id)
    assert (sized.intent.symbol, sized.intent.quantity, sized.intent.signal_id) == ("MNQ1!", Decimal(20), "st_1")


async def test_strategy_signals_are_named_and_sized_like_alerts(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "target_one.py").write_text(TARGET_ONE)
    start = BAR_CLOSE - timedelta(hours=1)
    write_minutes(tmp_path / "nq.csv", start, 70, Decimal(21000))
    write_minutes(tmp_path / "es.csv", start, 70, Decimal(6000))
    common = {"strategy": str(tmp_path / "target_one.py"), "timeframe": "5m", "calendar": "cme",
              "max_lag_seconds": 600}
    settings = make_settings(
        accounts={"paper": {"paper": {"starting_cash": "10000000"}}, "micro": {"paper": {"starting_cash": "1000000"}}},
        symbol_maps={"micro": {"NQ": {"to": "MNQ", "ratio": 10}}},
        strategies={
            "nq_micro": {**common, "account": "micro", "symbol": "CME_MINI:NQ1!", "data": str(tmp_path / "nq.csv")},
            "es_dated": {**common, "account": "paper", "symbol": "ESZ6", "data": str(tmp_path / "es.csv")}})
    clock = ShiftedClock(BAR_CLOSE + timedelta(seconds=3))
    async with running(settings, clock) as daemon:  # each strategy acts once on the bar that just closed
        async def held(account: str) -> dict[str, Decimal]:
            await wait_until(lambda: not daemon.store.unfinished_signals(), within=15)
            return {p.symbol: p.quantity for p in await daemon.brokers[account].positions()}

        # target 1 NQ on the micro account is 10 MNQ, held under the continuous name like an alert's
        assert await wait_until(lambda: daemon.store.signals_page("micro").items, within=15)
        assert await held("micro") == {"MNQ1!": Decimal(10)}
        # the dated front contract is the one position an `ES1!` alert also builds
        async with client_for(daemon) as client:
            answer = await client.post(f"/webhook/tradingview/{SECRET}",
                                       json=alert(id="es-1", account="paper", ticker="CME_MINI:ES1!", quantity="1",
                                                  price="6010"))
            assert answer.status_code == 202, answer.text
        assert await held("paper") == {"ES1!": Decimal(2)}

        clock.move_to(BAR_CLOSE + timedelta(minutes=5, seconds=3))
        assert await daemon.strategies.run_once("nq_micro")  # target 1 again: already there, nothing to trade
        assert await held("micro") == {"MNQ1!": Decimal(10)}
        record = StateStore(daemon.store).get("strategy", "nq_micro")
        assert record is not None and record["state"]["seen"] == "1"  # the strategy sees its own units
