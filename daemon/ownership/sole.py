"""Ownership on SQLite: the state directory's lock file makes this daemon the only one, so it owns everything.

Its `start()` gains every lease at once (the singleton and each account) and `stop()` hands them back in
reverse; `fence` never refuses, because no other process can hold the store while the lock file is held.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.ownership.fence import SINGLETON, account_lease
from daemon.ownership.keeper import Gain, Loss
from daemon.store.leases import Grant


class SoleOwner:
    def __init__(self, *, name: str, accounts: Sequence[str], on_gain: Gain, on_loss: Loss) -> None:
        self.name = name
        self._leases = [SINGLETON, *(account_lease(account) for account in accounts)]
        self._on_gain, self._on_loss = on_gain, on_loss
        self._held: list[str] = []

    def holds(self, lease: str) -> bool:
        return lease in self._held

    def held(self) -> list[str]:
        return sorted(self._held)

    def fence(self, account: str) -> None:
        """The lock file already proves it: nothing to check per send."""

    def drop(self, lease: str, why: str) -> None:
        """Never needed: `fence` never refuses."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "owner": self.name, "held": self.held(), "leases": [],
                "store": "sqlite: one daemon per store, held by the state directory's lock file"}

    async def start(self) -> None:
        for lease in self._leases:
            self._held.append(lease)
            await self._on_gain(lease, Grant(lease, 1, None, None, False))

    async def stop(self) -> None:
        for lease in reversed(list(self._held)):
            await self._on_loss(lease, "stopping", True)
            self._held.remove(lease)
