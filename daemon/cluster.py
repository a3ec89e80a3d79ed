"""This daemon among others: how it owns accounts (lock file or leases), its role, and the store's news.

`build_ownership` picks the owner: on SQLite a `SoleOwner` (the state directory's lock file keeps every
other daemon out), on PostgreSQL a `LeaseKeeper`. `role` says whether this daemon is active (executes every
account it may), standby (none) or partial; `view` adds who executes each account. `StoreNews` turns the
store's notifications into work: new signals for the accounts executed here, changed controls, released leases.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Mapping
from typing import Any

from config.settings import Settings
from daemon.engine import Engine
from daemon.ownership.fence import SINGLETON, Ownership, account_lease, account_of
from daemon.ownership.keeper import Gain, LeaseKeeper, Loss
from daemon.ownership.sole import SoleOwner
from daemon.store.leases import Leases
from daemon.store.repository import Store


def node_name(settings: Settings) -> str:
    return settings.cluster.name or socket.gethostname()


def eligible(settings: Settings, accounts: Collection[str]) -> list[str]:
    """The accounts this daemon may execute: `cluster.accounts`, or every enabled one."""
    wanted = settings.cluster.accounts or list(accounts)
    return [name for name in wanted if name in accounts]


def build_ownership(settings: Settings, store: Store, accounts: Collection[str], name: str, *, on_gain: Gain,
                    on_loss: Loss) -> tuple[Ownership, LeaseKeeper | None]:
    """(the ownership, the lease keeper when there is one)."""
    if not settings.shared_store:
        return SoleOwner(name=name, accounts=list(accounts), on_gain=on_gain, on_loss=on_loss), None
    cluster = settings.cluster
    keeper = LeaseKeeper(
        Leases(store), name=name, accounts=eligible(settings, accounts), capacity=cluster.capacity,
        singleton=cluster.singleton, lease_seconds=cluster.lease_seconds, renew_seconds=cluster.renew_every,
        margin_seconds=cluster.margin, on_gain=on_gain, on_loss=on_loss)
    return keeper, keeper


def role(ownership: Ownership, mine: list[str]) -> dict[str, Any]:
    """active / standby / partial over `mine` (the accounts this daemon may execute), with those it holds."""
    held = [name for name in mine if ownership.holds(account_lease(name))]
    named = "standby" if not held else "active" if len(held) == len(mine) else "partial"
    return {"role": named, "node": ownership.name, "accounts": held, "singleton": ownership.holds(SINGLETON)}


def view(ownership: Ownership, accounts: Collection[str], mine: list[str], shared: bool) -> dict[str, Any]:
    """The role plus who executes each account (None: nobody holds its lease right now) and every lease."""
    described = ownership.describe()
    owners: dict[str, str | None] = {name: ownership.name if ownership.holds(account_lease(name)) else None
                                     for name in accounts}
    for row in described.get("leases", []):
        account = account_of(row.get("name", ""))
        if account is not None and account in owners and row.get("held"):
            owners[account] = row["holder"]
    return role(ownership, mine) | {"store": "postgresql" if shared else "sqlite", "owners": owners,
                                    "leases": described.get("leases", [])}


class StoreNews:
    """What the shared store announces, applied to this daemon's engine."""

    def __init__(self, engine: Engine, brokers: Mapping[str, Any], keeper: LeaseKeeper | None) -> None:
        self.engine = engine
        self.accounts = list(brokers)
        self.keeper = keeper

    def on_batch(self, batch: set[str]) -> None:
        signals: set[str] = set()
        for message in batch:
            kind, _, name = message.partition(":")
            if kind == "signal":
                signals.add(name)
            elif kind == "control" and name in self.accounts:
                self.engine.reload_controls(name)
            elif kind == "lease" and self.keeper is not None:
                self.keeper.poke()
        if signals:
            self.engine.feed(signals)

    async def sweep(self) -> None:
        """The periodic look at the store behind the notifications (one may have been missed)."""
        self.engine.feed(self.accounts)

    def resync(self) -> None:
        """After the notification link was down: everything it may have missed."""
        self.engine.reload_controls()
        self.engine.feed(self.accounts)
