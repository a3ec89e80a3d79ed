"""Makes the README's research examples: seeded 5-minute MES bars, then `traderd replay` with --optimize
(+ heatmap), --walk-forward and --monte-carlo; pictures in docs/images/, text in docs/research_examples.txt.

    python docs/research_examples.py

The bars are a synthetic random walk (seed 2024), not market data; the commands are printed with their output.
"""

from __future__ import annotations

import random
import shlex
import subprocess
import sys
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon import calendar as cal  # noqa: E402

IMAGES = ROOT / "docs" / "images"
NEW_YORK = ZoneInfo("America/New_York")


def write_bars(path: Path, sessions: int, seed: int) -> None:
    """5-minute bars of the NYSE regular session, MES-like: quarter points, about 10 points a bar."""
    rng, price, day, rows, done = random.Random(seed), 5000.0, date(2024, 1, 2), [], 0
    while done < sessions:
        if cal.is_business_day(day):
            at = datetime.combine(day, time(9, 30), tzinfo=NEW_YORK)
            close = cal.session_close(day)
            trend = rng.gauss(0, 1.2)
            while at < close:
                o = price
                c = o + rng.gauss(trend, 10)
                h, lo = max(o, c) + abs(rng.gauss(0, 3)), min(o, c) - abs(rng.gauss(0, 3))
                q = [round(x * 4) / 4 for x in (o, h, lo, c)]
                rows.append(f"{at.isoformat()},{q[0]},{q[1]},{q[2]},{q[3]},{rng.randint(100, 900)}")
                price, at = q[3], at + timedelta(minutes=5)
            done += 1
        day += timedelta(days=1)
    path.write_text("time,open,high,low,close,volume\n" + "\n".join(rows) + "\n")


def run(args: list[str], out: list[str]) -> None:
    shown = ["traderd", *args]
    out.append("$ " + shlex.join(shown).replace(str(ROOT) + "/", ""))
    done = subprocess.run([sys.executable, "-m", "daemon.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    out.append(done.stdout.rstrip())
    out.append("")


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mes_5m.csv"
        write_bars(data, 60, seed=2024)
        common = ["replay", "--strategy", "opening_range", "--data", str(data), "--timeframe", "5m",
                  "--symbol", "MESH4", "--account-rules", "topstep_50k_combine", "--param", "allow_short=true",
                  "--slippage-ticks", "1", "--seed", "7", "--jobs", "2"]
        grid = ["--optimize", "quantity=1:5", "range_minutes=15,30,45,60", "--maximize", "net"]
        run([*common, *grid, "--top", "10", "--heatmap", str(IMAGES / "optimize-heatmap.png")], out)
        run([*common, *grid, "--walk-forward", "train=30d", "test=14d", "--plot",
             str(IMAGES / "walk-forward-equity.png")], out)
        run([*common, "--param", "quantity=2", "--param", "range_minutes=30", "--monte-carlo", "2000",
             "--mc-plot", str(IMAGES / "monte-carlo.png")], out)
    text = "\n".join(out).replace(str(data), "mes_5m.csv").replace(str(IMAGES) + "/", "docs/images/")
    (ROOT / "docs" / "research_examples.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
