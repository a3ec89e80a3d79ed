"""`traderd risk simulate|pdt` on the sample CSVs in tests/data/risk, in-process and as a subprocess."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.cli import risk as tools

DATA = Path(__file__).parent / "data" / "risk"
ROOT = Path(__file__).resolve().parents[1]
EVENTS = str(DATA / "topstep_50k_daily_loss.csv")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="traderd")
    tools.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_daily_loss_burst(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["risk", "simulate", "--rules", "topstep_50k_combine", "--events", str(DATA / "topstep_50k_daily_loss.csv"),
         "--json"],
        capsys,
    )
    assert code == 0 and err == ""
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 9
    breach = events[2]
    assert breach["breaches"][0]["rule"] == "daily_loss_limit"
    assert breach["breaches"][0]["action"] == "flatten_block_session"
    assert (breach["balance"], breach["live_equity"]) == ("49800.00", "49000.00")
    assert breach["left"] == {"max_loss": "1000.00", "daily_loss_limit": "0.00"}
    assert breach["blocked_until"] == "2026-03-03T17:00:00-06:00"
    # The rest of the burst reports no second breach; a new buy while blocked is refused, not applied.
    assert events[3]["breaches"] == [] and events[4]["breaches"] == []
    assert events[5]["applied"] is False and events[5]["breaches"][0]["rule"] == "session_blocked"
    # After the 17:00 CT open the account trades again from the new session start balance.
    assert events[7]["applied"] is True and events[7]["blocked_until"] is None
    assert events[7]["floors"]["daily_loss_limit"] == "48000.00"


def test_simulate_topstep_help_center_example(capsys: pytest.CaptureFixture[str]) -> None:
    # https://help.topstep.com/en/articles/8284204-what-is-the-maximum-loss-limit
    code, out, _ = run(
        ["risk", "simulate", "--rules", "topstep_50k_combine", "--events", str(DATA / "topstep_50k_mll_example.csv"),
         "--json"],
        capsys,
    )
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [e["floors"]["max_loss"] for e in events] == ["48500.00", "48500.00", "50000.00", "50000.00", "50000.00"]
    assert events[2]["floor_locked"] is True
    assert events[3]["breaches"] == []
    assert events[4]["breaches"][0]["action"] == "flatten_lock"


def test_simulate_with_a_toml_rules_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["risk", "simulate", "--rules", str(DATA / "account.toml"), "--events", EVENTS, "--json"],
        capsys,
    )
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    # daily_loss_limit 600 with a 150 buffer: the -750 mark is already past the personal limit.
    assert events[1]["floors"]["daily_loss_limit"] == "49400.00"
    assert events[1]["breaches"][0]["rule"] == "daily_loss_limit"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rules", "topstep_50k_combine", "--events", str(DATA / "bad_events.csv")], "line 2: bad qty 'five'"),
        (["--rules", "topstep_50k_combine", "--events", str(DATA / "missing.csv")], "missing.csv"),
        (["--rules", "no_such_firm", "--events", str(DATA / "bad_events.csv")], "neither a preset"),
        (["--rules", str(DATA / "pdt_fills.csv"), "--events", str(DATA / "bad_events.csv")], "not a readable TOML"),
        (["--rules", "topstep_50k_combine", "--events", str(DATA / "pdt_fills.csv")], "missing column(s) type"),
    ],
)
def test_simulate_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["risk", "simulate", *argv], capsys)
    assert code == 2 and out == ""
    assert err.startswith("traderd risk: ") and message in err and err.count("\n") == 1


def test_pdt_report_traditional(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["risk", "pdt", "--fills", str(DATA / "pdt_fills.csv"), "--equity", "20000"], capsys)
    report = json.loads(out)
    assert code == 0 and report["asof"] == "2026-04-06"
    # Good Friday (2026-04-03) is not a business day, so 2026-03-30 is still in the window.
    assert [d["day"] for d in report["days"]] == ["2026-03-30", "2026-03-31", "2026-04-01", "2026-04-02", "2026-04-06"]
    # AAPL: buy 100, buy 100, sell 200 = 2; TSLA short then cover = 1; MSFT held overnight = 0.
    assert [d["day_trades"] for d in report["days"]] == [2, 0, 1, 0, 0]
    assert (report["rolling_day_trades"], report["rolling_trades"]) == (3, 8)
    assert report["six_percent_test"] == {"ratio_pct": "37.50", "day_trades_at_most_6pct": False}
    assert report["day_trades_left"] == 0 and report["next_day_trade_blocked"] is True


def test_pdt_report_direction_method_and_equity(capsys: pytest.CaptureFixture[str]) -> None:
    fills = str(DATA / "pdt_fills.csv")
    _, out, _ = run(["risk", "pdt", "--fills", fills, "--method", "direction", "--equity", "20000"], capsys)
    report = json.loads(out)
    assert report["rolling_day_trades"] == 2 and report["next_day_trade_blocked"] is False
    _, out, _ = run(["risk", "pdt", "--fills", fills, "--equity", "30000"], capsys)
    assert json.loads(out)["next_day_trade_blocked"] is False
    # A week later the window has moved past every day trade.
    _, out, _ = run(["risk", "pdt", "--fills", fills, "--asof", "2026-04-13"], capsys)
    assert json.loads(out)["rolling_day_trades"] == 0
    code, _, err = run(["risk", "pdt", "--fills", fills, "--asof", "April"], capsys)
    assert code == 2 and "--asof" in err


@pytest.mark.slow
def test_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "risk", "simulate", "--rules", "apex_50k", "--events",
         str(DATA / "topstep_50k_daily_loss.csv"), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout.splitlines()[0])
    assert first["floors"] == {"max_loss": "47500.00"}  # Apex: no daily loss limit
    bad = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "risk", "pdt", "--fills", str(DATA / "nope.csv")],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
