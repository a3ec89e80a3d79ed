"""Copy trading end to end on the paper broker: a leader account traded by webhook alerts, a group copying its
position with multipliers, one follower's own risk limit refusing and the next copy healing it, exits that
never open a position, dedup of a repeated fill, and the configuration checks."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from daemon.app import Daemon
from daemon.domain import SignalStatus
from daemon.events import fill_event
from tests.conftest import SECRET, DaemonFactory, alert, client_for, settings_for, wait_until

URL = f"/webhook/tradingview/{SECRET}"
PAPER = {"paper": {"starting_cash": "1000000"}}


def copy_config() -> dict[str, Any]:
    return {
        "accounts": {"lead": dict(PAPER), "f1": dict(PAPER), "f2": dict(PAPER),
                     "f3": {**PAPER, "risk": {"max_order_quantity": "1"}}},
        "groups": {"copiers": {"accounts": {"f1": 1, "f2": "0.5", "f3": 1}, "copy_from": "lead"}},
    }


def held(daemon: Daemon, account: str) -> Decimal:
    return daemon.store.held(account, "AAPL")


def copies(daemon: Daemon) -> list[Any]:
    return [s for s in daemon.store.signals_page("@copiers", limit=100).items if s.source == "copy"]


async def settled(daemon: Daemon, count: int) -> None:
    """Wait until `count` copies are accepted and every child of them is final."""
    def done() -> bool:
        found = copies(daemon)
        if len(found) != count:
            return False
        records = [daemon.store.get_signal(s.signal_id) for s in found]
        return all(r is not None and r.children and all(c.status.is_final for c in r.children) for r in records)

    await wait_until(done, within=15)


async def test_followers_mirror_the_leaders_position(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    daemon = await start_daemon(settings_for(tmp_path / "state", **copy_config()))
    async with client_for(daemon) as client:
        opened = await client.post(URL, json=alert(id="lead-1", account="lead", quantity="4", price="100"))
        assert opened.status_code == 202, opened.text
        await settled(daemon, 1)
        assert [held(daemon, a) for a in ("lead", "f1", "f2", "f3")] == [4, 4, 2, 0]
        [first] = copies(daemon)
        record = daemon.store.get_signal(first.signal_id)
        assert record is not None and record.status is SignalStatus.FANNED_OUT
        kids = {c.account: c for c in record.children}
        assert kids["f3"].status is SignalStatus.REJECTED and "exceeds the limit 1" in (kids["f3"].reason or "")

        # the leader reduces to 1: every follower goes to its share of 1 (f2: 0.5 rounds to 0, f3 heals to 1)
        reduced = await client.post(URL, json=alert(id="lead-2", account="lead", action="sell", quantity="3",
                                                     price="101"))
        assert reduced.status_code == 202, reduced.text
        await settled(daemon, 2)
        assert [held(daemon, a) for a in ("lead", "f1", "f2", "f3")] == [1, 1, 0, 1]

        closed = await client.post(URL, json=alert(id="lead-3", account="lead", action="exit", price="102"))
        assert closed.status_code == 202, closed.text
        await settled(daemon, 3)
        assert [held(daemon, a) for a in ("lead", "f1", "f2", "f3")] == [0, 0, 0, 0]

        listed = (await client.get("/api/signals", params={"account": "copiers"})).json()["signals"]
        assert sorted(s["account"] for s in listed) == sorted(["@copiers", "f1", "f2", "f3"] * 3)
        assert all(s["source"] == "copy" for s in listed)
        shown = (await client.get(f"/api/signals/{first.signal_id}")).json()
        routes = {c["account"]: c["route"] for c in shown["children"]}
        assert [routes[a]["target_position"] for a in ("f1", "f2", "f3")] == ["4", "2", "4"]
        assert routes["f2"]["multiplier"] == "0.5" and shown["status"] == "fanned_out"

    # the same leader fill reported again (a restart's reconciliation, a stream replay) copies nothing twice
    fills = daemon.store.fills("f1") + daemon.store.fills("f2") + daemon.store.fills("f3")
    for fill in daemon.store.fills("lead"):
        daemon.events.publish(fill_event(fill, Decimal(0)))
    assert len(copies(daemon)) == 3
    assert len(daemon.store.fills("f1") + daemon.store.fills("f2") + daemon.store.fills("f3")) == len(fills)


def test_copy_configuration_is_checked(tmp_path: Path) -> None:
    config = copy_config()
    config["groups"]["copiers"]["copy_from"] = "nobody"
    with pytest.raises(ValidationError, match="copies 'nobody', which is not a configured account"):
        settings_for(tmp_path, **config)
    chained = copy_config()
    chained["groups"]["second"] = {"accounts": {"lead": 1}, "copy_from": "f1"}
    with pytest.raises(ValidationError, match="which itself follows a leader"):
        settings_for(tmp_path, **chained)
