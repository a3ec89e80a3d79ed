"""The floor bench's cases: closed loop, open loop, one-account burst, fan-out burst; each on a fresh receiver.

A case is a coroutine run against one started receiver (`bench/floor_targets.py`); `run_case` gives it a
fresh state directory and store, and adds the receiver's CPU seconds and peak RSS to what it measured. For
traderd a case also reads the store (`bench/floor_store.py`): every accepted signal filled exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floor_load import Alerts, Endpoint, Tally, closed_loop, counted_loop, open_loop, post, request
from floor_store import fanout_of, fills_of, wait_drained
from floor_targets import GROUP, Target, started
from webhook_load import cpu_seconds, peak_rss_mb, percentile

Case = Callable[[Target], Coroutine[Any, Any, dict[str, Any]]]


@dataclass(frozen=True)
class Stores:
    """Where receivers keep their data: PostgreSQL (`admin_url`) or SQLite, and a seeded store to start from."""

    admin_url: str | None = None
    sqlite_template: Path | None = None
    pg_template: str | None = None


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def latency(values: list[float]) -> dict[str, float]:
    return {"p50": ms(percentile(values, 50)), "p99": ms(percentile(values, 99)),
            "max": ms(max(values, default=float("nan")))}


def summary(tally: Tally, elapsed: float) -> dict[str, Any]:
    lat = tally.latencies
    return {"answered": len(lat), "codes": {str(k): v for k, v in sorted(tally.codes.items())},
            "per_s": round(len(lat) / elapsed, 1), "ack_ms": latency(lat),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def endpoint(target: Target) -> Endpoint:
    return Endpoint(target.port, target.path, answers_ids=target.is_traderd)


def run_case(name: str, case: Case, stores: Stores, tag: str, group_size: int = 0) -> dict[str, Any]:
    """`case` against receiver `name` on a fresh store; adds its CPU, CPU per accepted signal and peak RSS."""
    with tempfile.TemporaryDirectory(prefix=f"traderd-floor-{name}-") as tmp, \
            started(name, Path(tmp), admin_url=stores.admin_url, tag=tag, group_size=group_size,
                    sqlite_template=stores.sqlite_template, pg_template=stores.pg_template) as target:
        cpu_before = cpu_seconds(target.process.pid)
        result = asyncio.run(case(target))
        cpu = cpu_seconds(target.process.pid) - cpu_before
        result["receiver_cpu_s"] = round(cpu, 2)
        if target.is_traderd:  # every signal's whole cost: intake, execution, and the fills drained after
            # (a fan-out counts its children: each is executed as a signal of its own)
            signals = int(result.get("accepted_signals") or result["codes"].get("202", 0))
            if signals:
                result["cpu_ms_per_signal"] = round(cpu * 1000 / signals, 3)
            result["receiver_ready_s"] = target.ready_seconds
        result["receiver_peak_rss_mb"] = round(peak_rss_mb(target.process.pid), 1)
    return result


def closed_case(connections: int, seconds: float) -> Case:
    async def case(target: Target) -> dict[str, Any]:
        alerts = Alerts(f"closed{connections}")
        await post(target.port, target.path, alerts.next())  # warm-up, not counted
        tally, elapsed = await closed_loop(endpoint(target), alerts, connections, seconds)
        result = summary(tally, elapsed)
        if target.is_traderd:
            result.update(fill_summary(target, tally, within=60))
            # Accepted is not filled: the rate at which signals reached the broker, start to last fill.
            filled = len(tally.accepted) - result["lost"]
            result["filled_per_s"] = round(filled / max(elapsed, result["last_fill_at"] - tally.started_at), 1)
        return result
    return case


def open_case(rate: float, seconds: float) -> Case:
    async def case(target: Target) -> dict[str, Any]:
        alerts = Alerts("open")
        await post(target.port, target.path, alerts.next())
        tally, elapsed = await open_loop(endpoint(target), alerts, rate, seconds)
        result = {"rate": rate, "seconds": seconds, **summary(tally, elapsed)}
        if target.is_traderd:
            result.update(fill_summary(target, tally, within=240))
        return result
    return case


def burst_case(count: int) -> Case:
    async def case(target: Target) -> dict[str, Any]:
        alerts = Alerts("burst")
        await post(target.port, target.path, alerts.next())
        tally, elapsed = await open_loop(endpoint(target), alerts, count, 1.0)
        result = {"alerts": count, **summary(tally, elapsed)}
        if target.is_traderd:
            result.update(fill_summary(target, tally, within=30))
            result["last_fill_after_last_alert_ms"] = ms(result.pop("last_fill_at") - tally.last_sent_at)
        return result
    return case


def fanout_burst_case(count: int, group_size: int) -> Case:
    """`count` alerts in one second, each to the group of `group_size` paper accounts (traderd only): every
    child must fill exactly once; the time from the last alert sent to the last fill recorded."""
    async def case(target: Target) -> dict[str, Any]:
        alerts = Alerts("fanburst", account=GROUP)
        await post(target.port, target.path, alerts.next())  # warm-up: one fan-out, not counted
        tally, elapsed = await open_loop(endpoint(target), alerts, count, 1.0)
        result: dict[str, Any] = {"alerts": count, "group_size": group_size, **summary(tally, elapsed),
                                  "accepted_signals": len(tally.accepted) * group_size}
        found = fanout_of(target.store_url or "", tally.accepted, group_size, tally.started_at, within=60)
        to_fill = found.pop("to_fill")
        last_fill, last_final = found.pop("last_fill_at"), found.pop("last_child_final_at")
        result.update(found)
        result["signal_to_fill_ms"] = latency(to_fill)
        result["last_fill_after_last_alert_ms"] = ms(last_fill - tally.last_sent_at)
        result["last_child_final_after_last_alert_ms"] = ms(last_final - tally.last_sent_at)
        result["doubled"] = found["children_doubled"]
        return result
    return case


def reads_case(paths: list[str], repeat: int, prime: int = 200) -> Case:
    """The control API's reads, each `repeat` times on fresh connections, after `prime` signals are executed
    (so an empty store too has full pages of today's signals and fills): how they cost as history grows."""
    async def case(target: Target) -> dict[str, Any]:
        await counted_loop(endpoint(target), Alerts("reads"), 4, prime)
        drained = wait_drained(target.store_url or "", 60)
        reads: dict[str, Any] = {}
        for path in paths:
            times, codes = [], set()
            await request(target.port, "GET", path)  # warm-up
            for _ in range(repeat):
                status, elapsed, _ = await request(target.port, "GET", path)
                times.append(elapsed)
                codes.add(status)
            reads[path] = {**latency(times), "codes": sorted(codes)}
        return {"primed_signals": prime, "drained": drained, "answered": len(paths) * repeat, "codes": {},
                "reads_ms": reads}
    return case


def fill_summary(target: Target, tally: Tally, within: float) -> dict[str, Any]:
    found = fills_of(target.store_url or "", tally.accepted, tally.started_at, within)
    return {"signal_to_fill_ms": latency(found["to_fill"]), "lost": found["lost"], "doubled": found["doubled"],
            "statuses": found["statuses"], "last_fill_at": found["last_fill_at"]}


@dataclass(frozen=True)
class Plan:
    """Which cases to run and how long: the knobs of bench/floor.py and bench/history.py."""

    closed_seconds: float = 10.0
    rate: float = 500.0
    open_seconds: float = 60.0
    burst: int = 200
    group_size: int = 5

    @property
    def open_key(self) -> str:
        return f"open_{self.rate:g}per_s"

    @property
    def fanout_key(self) -> str:
        return f"burst_{self.burst}x{self.group_size}"


def planned(names: list[str], plan: Plan) -> list[tuple[str, str, Case, int]]:
    """(result key, receiver, case, group size) in running order: receivers interleaved within each case."""
    out: list[tuple[str, str, Case, int]] = []
    for connections in (1, 16):
        out += [(f"closed_{connections}conn/{name}", name, closed_case(connections, plan.closed_seconds), 0)
                for name in names]
    out += [(f"{plan.open_key}/{name}", name, open_case(plan.rate, plan.open_seconds), 0)
            for name in names if name in ("group", "pg-group", "traderd")]
    if "traderd" in names:
        out.append((f"burst_{plan.burst}/traderd", "traderd", burst_case(plan.burst), 0))
        if plan.group_size:
            out.append((f"{plan.fanout_key}/traderd", "traderd", fanout_burst_case(plan.burst, plan.group_size),
                        plan.group_size))
    return out


def run_all(names: list[str], plan: Plan, stores: Stores, label: str = "") -> dict[str, Any]:
    """Every planned case, each on a fresh receiver, printed as it finishes; keyed as `planned` names them."""
    cases: dict[str, Any] = {}
    for n, (key, name, case, group_size) in enumerate(planned(names, plan)):
        cases[key] = run_case(name, case, stores, tag=f"{label}{n}_{name}", group_size=group_size)
        if key.startswith("burst_") and not group_size:
            cases[key]["note"] = "single-account alerts (one order each)"
        print(f"{label}{key}", json.dumps(cases[key]), flush=True)
    return cases
