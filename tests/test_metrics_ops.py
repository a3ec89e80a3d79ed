"""/metrics carries what an operator alerts on, and the shipped alert rules and dashboard name only those series."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.app import Daemon
from tests.conftest import settings_for

DOCS = Path(__file__).resolve().parent.parent / "docs"
RULES = DOCS / "prometheus-alerts.yml"
DASHBOARD = DOCS / "grafana-dashboard.json"
# PromQL words that are not metric names.
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "time", "rate", "irate", "increase", "sum", "avg", "max", "min", "count", "absent",
                "absent_over_time", "histogram_quantile", "le", "job", "account", "outcome", "status", "inf"}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """family or sample name -> {labels: value}; families without samples are present and empty."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        found.setdefault(family.name, {})
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def by_account(series: dict[tuple[tuple[str, str], ...], float]) -> dict[str, float]:
    return {dict(labels)["account"]: value for labels, value in series.items()}


@pytest.fixture
async def daemon(tmp_path: Path) -> Any:
    clock = Clock(datetime.now(UTC))
    settings = settings_for(
        tmp_path / "state",
        accounts={
            "paper": {"paper": {"starting_cash": "100000"}},
            "topstep": {"symbols": ["ES"], "paper": {"starting_cash": "50000", "multipliers": {"ES": "50"}},
                        "funded": {"preset": "topstep_50k_combine"}},
        },
        # A Telegram that cannot be reached: alerts wait in the outbox.
        telegram={"token": "123:abc", "base_url": f"http://127.0.0.1:{closed_port()}/bot", "users": {"111": "operator"},
                  "polling": False},
    )
    running = Daemon(settings, clock=clock)
    await running.start()
    try:
        yield running, clock
    finally:
        await running.stop()


async def test_metrics_export_process_and_operator_gauges(daemon: Any) -> None:
    running, clock = daemon
    clock.now += timedelta(seconds=150)  # the start-up alert has now waited 2.5 minutes
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}", timeout=10) as client:
        text = (await client.get("/metrics")).text
    metrics = scrape(text)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds",
                 "process_open_fds"):
        assert name in metrics, name
    assert by_account(metrics["traderd_broker_connected"]) == {"paper": 1.0, "topstep": 1.0}
    assert by_account(metrics["traderd_equity"]) == {"paper": 100000.0, "topstep": 50000.0}
    assert by_account(metrics["traderd_day_pnl"]) == {"paper": 0.0, "topstep": 0.0}
    assert by_account(metrics["traderd_queue_depth"]) == {"paper": 0.0, "topstep": 0.0}
    # Topstep 50K combine: $1,000 daily loss limit, $2,000 trailing max loss, nothing lost yet.
    assert by_account(metrics["traderd_daily_loss_limit"]) == {"topstep": 1000.0}
    assert by_account(metrics["traderd_daily_loss_left"]) == {"topstep": 1000.0}
    assert by_account(metrics["traderd_max_loss_left"]) == {"topstep": 2000.0}
    assert "paper" not in by_account(metrics["traderd_daily_loss_left"])  # only funded accounts
    backlog = metrics["traderd_outbox_backlog"][()]
    assert backlog >= 1
    assert metrics["traderd_outbox_oldest_age_seconds"][()] >= 140  # the alert was queued just after start
    reconciled = by_account(metrics["traderd_last_reconcile_timestamp_seconds"])
    assert set(reconciled) == {"paper", "topstep"}
    assert all(abs(value - (clock.now - timedelta(seconds=150)).timestamp()) < 60 for value in reconciled.values())
    assert "traderd_stream_connected" in metrics  # described; paper brokers have no stream to report


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers outside label matchers, ranges, strings and numbers."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}", " ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    words = set(re.findall(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)", bare))
    return {w for w in words if w not in PROMQL_WORDS}


SERIES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
          "summary": ("_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",), "unknown": ("",)}


def exported_names(text: str) -> set[str]:
    """Every series name /metrics describes, including those of labelled families with no sample yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SERIES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


async def test_alert_rules_and_dashboard_name_only_exported_metrics(daemon: Any) -> None:
    running, _ = daemon
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}", timeout=10) as client:
        exported = exported_names((await client.get("/metrics")).text)
    rules = [line.split("expr:", 1)[1].strip() for line in RULES.read_text().splitlines() if "expr:" in line]
    assert len(rules) >= 3
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for expr in rules + panels:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, f"{expr}: not exported: {sorted(names - exported)}"
    wanted = {"traderd_broker_connected", "traderd_outbox_oldest_age_seconds", "traderd_daily_loss_left"}
    assert wanted <= set().union(*(metric_names(expr) for expr in rules))


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus; .ci/run installs it)")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout
    text = RULES.read_text()
    assert "traderd_broker_connected == 0" in text and "for: 1m" in text  # broker down > 1 min
    assert "traderd_outbox_oldest_age_seconds > 120" in text  # an alert older than 2 min
    assert "traderd_daily_loss_left < 0.2 * traderd_daily_loss_limit" in text  # within 20 % of the daily limit
