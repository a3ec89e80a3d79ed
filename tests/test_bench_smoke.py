"""The benches' smallest fan-out runs: their own plumbing still measures truly.

The floor bench's burst: seeds a few hundred signals of history with bench/history_seed.py, starts a real
`traderd run` on a copy of that store with a group of two paper accounts, sends a small burst of group alerts
and reads the store the way the bench does: every child filled exactly once, none lost or doubled.
`bench/fanout.py` end to end: a few alerts to a group of three and to its one-account reference.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from floor_cases import Stores, fanout_burst_case, run_case  # noqa: E402
from history_seed import seed  # noqa: E402

from daemon.store.tables import FillRow, PositionRow  # noqa: E402

pytestmark = pytest.mark.slow


def test_fanout_burst_on_seeded_store(tmp_path: Path) -> None:
    template = tmp_path / "seeded.db"
    stats = seed(f"sqlite:///{template}", 300, ["paper", "fan1", "fan2"], days=5)
    assert stats["signals"] >= 300 and stats["fills"] > 0

    engine = create_engine(f"sqlite:///{template}")
    with engine.connect() as conn:  # the seeded ledger ends flat, and its fills are the ones it reported
        assert conn.execute(select(func.count()).select_from(FillRow)).scalar() == stats["fills"]
        assert {q for (q,) in conn.execute(select(PositionRow.quantity))} == {Decimal(0)}
    engine.dispose()

    result = run_case("traderd", fanout_burst_case(10, 2), Stores(sqlite_template=template), tag="smoke",
                      group_size=2)
    assert result["codes"] == {"202": 10}
    assert result["children_expected"] == 20
    assert result["children_filled_once"] == 20
    assert result["lost"] == 0 and result["doubled"] == 0
    assert result["last_fill_after_last_alert_ms"] > 0


def test_fanout_bench_measures_every_child_and_its_reference(tmp_path: Path) -> None:
    import json
    import subprocess

    out = tmp_path / "fanout.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "fanout.py"), "--alerts", "4", "--accounts", "3",
                           "--gap", "0.05", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert (result["children_filled"], result["children_expected"], result["doubled"]) == (12, 12, 0)
    reference = result["reference_one_account"]
    assert (reference["children_filled"], reference["children_expected"], reference["doubled"]) == (4, 4, 0)
    assert result["receipt_to_last_fill_ms"]["p50"] > 0 and reference["receipt_to_last_fill_ms"]["p50"] > 0
    assert len(result["slowest_five_ms"]) == 4
