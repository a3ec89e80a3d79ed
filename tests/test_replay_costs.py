"""Costs of a replay: slippage in ticks on top of bps, per-contract fee tables (shipped, TOML, JSON)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from daemon.strategy.costs import (
    FEE_SOURCES,
    FEE_TABLES,
    CostError,
    Costs,
    fee_table_for,
    load_fee_table,
    unverified_note,
)
from daemon.strategy.replay import load_bars, replay
from strategies.base import load_strategy, parse_params

DAILY = Path(__file__).resolve().parent.parent / "strategies" / "data" / "sample_daily.csv"


async def test_tick_slippage_and_a_fee_table_apply_to_every_fill() -> None:
    cls = load_strategy("sma_cross")
    bars = load_bars(DAILY, "MESZ4", "1d", "nyse")
    params = parse_params(cls, {"fast": 5, "slow": 20, "quantity": 3})
    free = await replay(cls, params, bars)
    costs = Costs(slippage_ticks=Decimal(2), fees=load_fee_table("topstep"), commission_per_unit=Decimal("0.10"))
    costly = await replay(cls, params, bars, costs=costs)
    assert len(costly.trades) == len(free.trades) >= 5
    for a, b in zip(free.trades, costly.trades, strict=True):
        assert b.entry_price == a.entry_price + Decimal("0.50")  # 2 ticks of 0.25 against a buy
        assert b.exit_price == a.exit_price - Decimal("0.50")
        assert b.commission == (Decimal("0.37") + Decimal("0.10")) * 3 * 2  # per contract, entry and exit
        assert b.gross_pnl == a.gross_pnl - Decimal("1.00") * 3 * 5  # a point lost a round trip, $5 a point
    assert costly.net_pnl < free.net_pnl


async def test_bps_and_ticks_add_up_for_stocks() -> None:
    cls = load_strategy("sma_cross")
    bars = load_bars(DAILY, "SAMPLE", "1d", "nyse")
    params = parse_params(cls, {"fast": 5, "slow": 20, "quantity": 10})
    free = await replay(cls, params, bars)
    costly = await replay(cls, params, bars, costs=Costs(slippage_bps=Decimal(10), slippage_ticks=Decimal(1)))
    for a, b in zip(free.trades, costly.trades, strict=True):
        assert b.entry_price == a.entry_price * Decimal("1.001") + Decimal("0.01")
        assert b.exit_price == a.exit_price * Decimal("0.999") - Decimal("0.01")


def test_fee_tables_by_name_file_and_preset(tmp_path: Path) -> None:
    assert fee_table_for("topstep_50k_combine") == "topstep" and fee_table_for("apex_50k_eval") is None
    assert load_fee_table("topstep") == FEE_TABLES["topstep"]
    toml = tmp_path / "fees.toml"
    toml.write_text('es = 1.29\nMES = "0.35"\n')
    assert load_fee_table(str(toml)) == {"ES": Decimal("1.29"), "MES": Decimal("0.35")}
    js = tmp_path / "fees.json"
    js.write_text('{"NQ": 1.5}')
    assert load_fee_table(str(js)) == {"NQ": Decimal("1.5")}
    assert Costs(fees={"ES": Decimal(1)}).fee("CME_MINI:ES1!") == Decimal(1)
    for text in ('ES = -1\n', 'ES = "x"\n', 'ES = true\n', "not toml ["):
        toml.write_text(text)
        with pytest.raises(CostError):
            load_fee_table(str(toml))
    with pytest.raises(CostError, match="not a shipped table"):
        load_fee_table("nobody")


def test_every_shipped_table_says_where_it_comes_from(tmp_path: Path) -> None:
    assert set(FEE_SOURCES) == set(FEE_TABLES)
    for name, source in FEE_SOURCES.items():
        assert source.basis and source.checked
        note = unverified_note(name)
        assert (note is None) == source.verified
        if note is not None:
            assert name in note and "--fees FILE" in note
    own = tmp_path / "fees.toml"
    own.write_text("ES = 1.29\n")
    assert unverified_note(str(own)) is None and unverified_note(None) is None and unverified_note("none") is None
