"""Per-account funded-rule state for the running daemon: rules from config, state cached and kept durable.

`FundedBook` is shared by the pre-trade check (`RiskEngine`, reads) and the `RiskMonitor` (writes on every
fill, mark and session roll). The state of each account is a `FundedState` kept in memory and persisted as
JSON in the `funded` namespace of a `DocumentStore` (the daemon's `StateStore`), so a soft block, a hard
lock and the trailing floor survive a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from config.risk import FundedSettings
from daemon.domain import utcnow
from daemon.risk.funded import AccountRules, FundedState, new_state

NAMESPACE = "funded"


class DocumentStore(Protocol):
    """Durable JSON documents by (namespace, key); `daemon.store.state.StateStore` is one."""

    def get(self, namespace: str, key: str) -> dict[str, Any] | None: ...

    def put(self, namespace: str, key: str, value: dict[str, Any]) -> None: ...


class FundedConfigError(ValueError):
    """An account's `[funded]` table names an unknown preset or a bad override."""


def rules_from_settings(account: str, settings: FundedSettings) -> AccountRules:
    """The account's `AccountRules`: the preset with every override applied; a clear error otherwise."""
    try:
        return AccountRules.model_validate({**settings.overrides, "preset": settings.preset})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'preset'}: {e['msg']}" for e in exc.errors())
        raise FundedConfigError(f"accounts.{account}.funded: {problems}") from exc


class FundedBook:
    """Funded rules and state by account. `states=None` keeps state in memory only (tests, what-if)."""

    def __init__(self, rules: Mapping[str, AccountRules], states: DocumentStore | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.rules = dict(rules)
        self._states = states
        self._clock = clock
        self._cache: dict[str, FundedState] = {}

    def __contains__(self, account: object) -> bool:
        return account in self.rules

    def accounts(self) -> list[str]:
        return list(self.rules)

    def state(self, account: str) -> FundedState:
        """The account's current state; a fresh account starts at the rules' starting balance."""
        cached = self._cache.get(account)
        if cached is not None:
            return cached
        stored = self._states.get(NAMESPACE, account) if self._states is not None else None
        state = FundedState.model_validate(stored) if stored else new_state(self.rules[account], self._clock())
        self._cache[account] = state
        if stored is None:
            self.save(account, state)
        return state

    def forget(self, account: str) -> None:
        """Drop the cached state: the next read takes the stored one (another daemon may have moved it on)."""
        self._cache.pop(account, None)

    def save(self, account: str, state: FundedState) -> None:
        self._cache[account] = state
        if self._states is not None:
            self._states.put(NAMESPACE, account, state.model_dump(mode="json"))
