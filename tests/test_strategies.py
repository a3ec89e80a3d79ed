"""Strategy API and bars: loading by name and path, typed parameters, CSV parsing, aggregation to sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.calendar import NEW_YORK
from daemon.strategy.bars import BarDataError, aggregate, load_csv
from strategies.base import Bar, Context, Position, StrategyLoadError, load_strategy, parse_params, shipped
from strategies.rsi_reversion import wilder_rsi

DATA = Path(__file__).resolve().parent.parent / "strategies" / "data"


def test_shipped_strategies_load_by_name_with_typed_params() -> None:
    assert {"sma_cross", "rsi_reversion", "opening_range"} <= set(shipped())
    cls = load_strategy("sma_cross")
    params = parse_params(cls, {"fast": "3", "slow": "7", "quantity": "2.5", "allow_short": "true"})
    assert params.fast == 3 and params.quantity == Decimal("2.5") and params.allow_short is True  # type: ignore[attr-defined]
    for bad, needle in (({"fast": "x"}, "fast"), ({"fast": 9, "slow": 5}, "shorter"), ({"typo": 1}, "typo")):
        with pytest.raises(StrategyLoadError, match=needle):
            parse_params(cls, bad)
    for name in ("rsi_reversion", "opening_range"):
        assert parse_params(load_strategy(name), {})


def test_loader_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(StrategyLoadError, match="no strategy named 'nope'"):
        load_strategy("nope")
    with pytest.raises(StrategyLoadError, match="not a strategy name"):
        load_strategy("Bad-Name")
    with pytest.raises(StrategyLoadError, match="does not exist"):
        load_strategy(str(tmp_path / "missing.py"))
    (tmp_path / "syntax.py").write_text("def broken(:\n")
    with pytest.raises(StrategyLoadError, match="SyntaxError"):
        load_strategy(str(tmp_path / "syntax.py"))
    (tmp_path / "empty.py").write_text("X = 1\n")
    with pytest.raises(StrategyLoadError, match="exactly one Strategy"):
        load_strategy(str(tmp_path / "empty.py"))
    (tmp_path / "mine.py").write_text(
        "from strategies.base import Strategy, target\n"
        "class Mine(Strategy):\n"
        "    def on_bar(self, bar, history, position):\n"
        "        return [target(1)]\n")
    cls = load_strategy(str(tmp_path / "mine.py"))
    assert cls.__name__ == "Mine"


def _bar(start: datetime, price: str, minutes: int = 5) -> Bar:
    p = Decimal(price)
    return Bar("XYZ", start.astimezone(UTC), (start + timedelta(minutes=minutes)).astimezone(UTC), p, p + 1,
               p - 1, p, Decimal(10))


def test_aggregation_follows_sessions_early_close_and_holidays() -> None:
    bars = load_csv(DATA / "sample_5m.csv", "XYZ", "nyse")
    assert bars[0].end - bars[0].start == timedelta(minutes=5)
    hourly = aggregate(bars, "1h", "nyse")
    by_day: dict[object, list[Bar]] = {}
    for bar in hourly:
        by_day.setdefault(bar.start.astimezone(NEW_YORK).date(), []).append(bar)
    days = sorted(by_day)
    assert datetime(2024, 11, 28).date() not in days  # Thanksgiving
    friday = by_day[datetime(2024, 11, 29).date()]
    assert friday[-1].end.astimezone(NEW_YORK).time().isoformat() == "13:00:00"  # early close
    regular = by_day[datetime(2024, 11, 27).date()]
    assert [b.start.astimezone(NEW_YORK).strftime("%H:%M") for b in regular][:2] == ["09:30", "10:30"]
    assert regular[-1].end - regular[-1].start == timedelta(minutes=30)  # 15:30-16:00
    first = [b for b in bars if b.start >= regular[0].start and b.end <= regular[0].end]
    assert len(first) == 12
    assert regular[0].open == first[0].open and regular[0].close == first[-1].close
    assert regular[0].high == max(b.high for b in first) and regular[0].low == min(b.low for b in first)
    assert regular[0].volume == sum(b.volume for b in first)
    daily = aggregate(bars, "1d", "nyse")
    assert len(daily) == len(days) == 10
    # bars outside the regular session are dropped
    pre = _bar(datetime(2024, 12, 3, 8, 0, tzinfo=NEW_YORK), "10")
    assert aggregate([pre], "5m", "nyse") == []


def test_csv_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("time,open,high,low,close\n2024-12-03T09:30:00,1,2,0.5,1.5\n2024-12-03T09:35:00,1,x,0,1\n")
    with pytest.raises(BarDataError, match="line 3: bad high"):
        load_csv(path)
    path.write_text("when,open,high,low,close\n")
    with pytest.raises(BarDataError, match="time column"):
        load_csv(path)
    path.write_text("time,open,high,low,close\n2024-12-03T09:30:00,1,1.2,1.1,1.15\n")
    with pytest.raises(BarDataError, match="low/high"):
        load_csv(path)


def test_rsi_and_strategies_decide_on_bars() -> None:
    rising = [Decimal(i) for i in range(1, 30)]
    assert wilder_rsi(rising, 14) == 100
    assert wilder_rsi(rising[:10], 14) is None
    cls = load_strategy("rsi_reversion")
    strat = cls(parse_params(cls, {"period": 3, "lookback": 20, "quantity": 5, "stop_pct": 2}),
                Context(name="r", symbol="XYZ"))
    start = datetime(2024, 12, 3, 9, 30, tzinfo=NEW_YORK)
    falling = [_bar(start + timedelta(minutes=5 * i), str(100 - i)) for i in range(10)]
    signals = strat.on_bar(falling[-1], falling, Position())
    assert signals and signals[0].target_position == 5 and signals[0].stop_loss == Decimal(91) * Decimal("0.98")
    assert strat.on_bar(falling[-1], falling, Position(Decimal(5))) == []
