"""`traderd replay` research options through the real command: --optimize (table, JSON, heatmap, progress
bar on a terminal), --walk-forward, --monte-carlo with a seed, costs, and bad input."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ptyrun import stderr_on_a_terminal
from tests.research.series import daily_walk

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TRADERD = [sys.executable, "-m", "daemon.cli"]
PNG = b"\x89PNG\r\n\x1a\n"


def traderd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRADERD, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=ROOT)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return daily_walk(tmp_path_factory.mktemp("cli") / "SEEDED.csv", seed=11, sessions=300)


def test_optimize_json_table_and_heatmap(data: Path, tmp_path: Path) -> None:
    heat = tmp_path / "heat.png"
    base = ["replay", "--strategy", "sma_cross", "--data", str(data), "--param", "quantity=10",
            "--optimize", "fast=5:20:5", "slow=20:50:10", "--constraint", "fast < slow", "--maximize", "net",
            "--jobs", "2", "--seed", "1"]
    done = traderd(*base, "--json", "--heatmap", str(heat))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    opt = json.loads(done.stdout)["optimization"]
    assert opt["runs"] == 15 and opt["grid_size"] == 16 and not opt["sampled"]
    nets = [float(r["net_pnl"]) for r in opt["results"]]
    assert nets == sorted(nets, reverse=True)
    assert all(r["params"]["fast"] < r["params"]["slow"] for r in opt["results"])
    assert opt["bars_per_second"] > 0
    assert heat.read_bytes()[:8] == PNG
    text = traderd(*base, "--top", "5")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert "ranked by net" in lines[0]
    best = opt["results"][0]["params"]
    assert f"best: fast={best['fast']} slow={best['slow']}" in text.stdout
    assert sum(1 for line in lines if line[:3].strip().isdigit()) == 5


def test_sampled_grid_walk_forward_and_monte_carlo_are_reproducible(data: Path) -> None:
    args = ["replay", "--strategy", "sma_cross", "--data", str(data), "--param", "quantity=10",
            "--optimize", "fast=2:20", "slow=10:60:5", "--max-runs", "12", "--seed", "9", "--jobs", "1",
            "--walk-forward", "train=120d", "test=60d", "--monte-carlo", "300", "--json"]
    first, second = traderd(*args), traderd(*args)
    assert first.returncode == 0, first.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a == b
    wf = a["walk_forward"]
    assert len(wf["folds"]) >= 2
    assert all(f["runs"] == 12 for f in wf["folds"])
    spans = [(f["test_start"], f["test_end"]) for f in wf["folds"]]
    assert all(x[1] < y[0] for x, y in itertools.pairwise(spans))
    mc = a["monte_carlo"]
    assert mc["runs"] == 300 and mc["seed"] == 9 and mc["trades"] == len(wf["out_of_sample_trades"])
    text = traderd(*args[:-1])
    assert "in-sample:" in text.stdout and "out-of-sample:" in text.stdout and "Monte Carlo: 300" in text.stdout


def test_single_replay_with_monte_carlo_preset_odds_and_histogram(tmp_path: Path) -> None:
    png = tmp_path / "mc.png"
    done = traderd("replay", "--strategy", "opening_range", "--data", "strategies/data/sample_5m.csv",
                   "--timeframe", "5m", "--symbol", "MESZ4", "--account-rules", "topstep_50k_combine",
                   "--param", "quantity=2", "--param", "allow_short=true", "--slippage-ticks", "1",
                   "--monte-carlo", "200", "--seed", "4", "--mc-plot", str(png), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    odds = out["monte_carlo"]["rules"]
    assert odds["preset"] == "topstep_50k_combine" and odds["max_loss"] == "2000"
    assert 0 <= odds["p_max_loss"] <= 1 and odds["p_target_first"] is not None
    assert png.read_bytes()[:8] == PNG
    assert out["trades"]
    assert all(t["commission"] == "1.48" for t in out["trades"])  # topstep's MES fee 0.37 x 2 contracts x 2 sides
    assert "fee table topstep: example numbers, not confirmed" in done.stderr


def test_progress_bar_on_a_terminal(data: Path) -> None:
    returncode, seen = stderr_on_a_terminal([*TRADERD, "replay", "--strategy", "sma_cross", "--data", str(data),
                                             "--optimize", "fast=5:20:5", "slow=30:40:10", "--jobs", "1"], ROOT)
    assert returncode == 0
    assert b"replays" in seen and b"8/8" in seen


@pytest.mark.parametrize(("extra", "message"), [
    (["--optimize", "fast=5:x"], "is not a number"),
    (["--optimize", "speed=1:3"], "not a parameter"),
    (["--optimize", "fast=5:10", "--constraint", "fats < slow"], "--constraint"),
    (["--walk-forward", "train=120d", "test=30d"], "needs --optimize"),
    (["--optimize", "fast=5:10", "--walk-forward", "train=120d", "test=3x"], "--walk-forward"),
    (["--optimize", "fast=50:60", "--param", "slow=20"], "no parameter set"),
    (["--fees", "nobody"], "fee table"),
    (["--monte-carlo", "0"], "positive"),
    (["--optimize", "fast=5:10", "--jobs", "0"], "--jobs"),
    (["--heatmap", "x.png"], "--heatmap"),
])
def test_bad_research_input_is_one_line_and_exit_2(data: Path, extra: list[str], message: str) -> None:
    done = traderd("replay", "--strategy", "sma_cross", "--data", str(data), *extra)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
