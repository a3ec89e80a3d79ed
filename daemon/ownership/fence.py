"""What an owner shows before it sends: lease names, the `NotOwner` refusal and the `Ownership` protocol.

The executor calls `fence(account)` right before every order, cancel or flatten goes to a broker; it returns
only while this process can prove it owns the account, and raises `NotOwner` otherwise (the signal is left
unfinished in the store for the account's owner).
"""

from __future__ import annotations

from typing import Any, Protocol

SINGLETON = "singleton"  # the lease of the jobs one daemon runs for all: chat polling, alert outbox, summary


def account_lease(account: str) -> str:
    return f"account:{account}"


def account_of(lease: str) -> str | None:
    return lease.removeprefix("account:") if lease.startswith("account:") else None


class NotOwner(Exception):
    """This process cannot prove it owns the account: nothing may be sent for it."""


def no_fence(account: str) -> None:
    """The fence of a daemon that owns every account by construction (tests, replay)."""


class Ownership(Protocol):
    """Which leases this daemon holds now; `fence` guards every send."""

    name: str  # this daemon as people read it

    def holds(self, lease: str) -> bool: ...
    def fence(self, account: str) -> None: ...
    def held(self) -> list[str]: ...
    def drop(self, lease: str, why: str) -> None: ...
    def describe(self) -> dict[str, Any]: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
