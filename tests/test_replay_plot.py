"""`traderd replay --plot`: the chart file a trader opens, written through the CLI from the sample bars."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.cli.main import main as traderd
from daemon.strategy import plot
from daemon.strategy.replay import load_bars
from tests import browser
from tests.docs_images import images_dir

DATA = Path(__file__).resolve().parent.parent / "strategies" / "data"
DOCS = images_dir()
INTRADAY = ["--strategy", "opening_range", "--data", str(DATA / "sample_5m.csv"), "--timeframe", "5m",
            "--symbol", "ES", "--calendar", "cme", "--multiplier", "50", "--param", "quantity=2"]


def test_intraday_plot_png_is_the_promised_size_with_content(capsys: pytest.CaptureFixture[str]) -> None:
    target = DOCS / "replay-intraday.png"
    assert traderd(["replay", *INTRADAY, "--plot", str(target)]) == 0
    data = target.read_bytes()
    assert browser.png_size(data) == (plot.WIDTH, plot.HEIGHT)
    assert browser.distinct_colours(data) > 50
    assert "opening_range on ES 5m" in capsys.readouterr().out


def test_svg_by_extension_and_bad_extension_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svg = tmp_path / "daily.svg"
    daily = ["--strategy", "sma_cross", "--data", str(DATA / "sample_daily.csv"), "--param", "fast=5",
             "--param", "slow=20"]
    assert traderd(["replay", *daily, "--plot", str(svg)]) == 0
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    capsys.readouterr()
    assert traderd(["replay", *daily, "--plot", str(tmp_path / "chart.jpg")]) == 2
    assert "use a .png or .svg" in capsys.readouterr().err


def test_axis_skips_nights_and_weekends_and_prints_dollars() -> None:
    bars = load_bars(DATA / "sample_5m.csv", "ES", "5m", "cme")
    positions, labels = plot.tick_positions(bars, ZoneInfo("America/Chicago"))
    days = {b.start.astimezone(ZoneInfo("America/Chicago")).date() for b in bars}
    assert len(labels) <= 10 and len(set(labels)) == len(labels)
    assert all(label[:3] in ("Mon", "Tue", "Wed", "Thu", "Fri") for label in labels)  # no weekend takes room
    assert positions == sorted(positions) and positions[-1] < len(bars)
    assert len(days) > 5 and positions[0] == 0
    assert plot.dollars(100250.0) == "$100,250" and plot.dollars(-1234.4) == "-$1,234"
    assert plot.drawdown([100.0, 120.0, 90.0, 130.0]) == [0.0, 0.0, -30.0, 0.0]
