"""Two-step confirmation of destructive chat commands: the question with its buttons, and the one-time answer.

A question gets a random key carried by its "Yes" and "No" buttons; `take(key)` hands the pending action
over once (a second press finds nothing) and only before it expires. Questions live in memory: after a
restart every button of an earlier question answers "expired", so nothing is done without a fresh question.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from daemon.domain import ChatIdentity, ChatReply

Action = Literal["pause", "cancel", "flatten", "close"]


@dataclass
class Pending:
    key: str
    action: Action
    target: str  # an account, a group or "all"; for close, the account
    who: ChatIdentity
    expires_at: datetime
    symbol: str = ""  # close: the position's symbol


class Confirmations:
    def __init__(self, clock: Callable[[], datetime], ttl: timedelta) -> None:
        self.clock, self.ttl = clock, ttl
        self._pending: dict[str, Pending] = {}

    def ask(self, who: ChatIdentity, action: Action, target: str, question: str, *, label: str,
            symbol: str = "") -> ChatReply:
        """The question, with "Yes, <label>" and "No" buttons, valid for `ttl`."""
        key = secrets.token_urlsafe(9)
        self._drop_expired()
        self._pending[key] = Pending(key, action, target, who, self.clock() + self.ttl, symbol)
        seconds = int(self.ttl.total_seconds())
        return ChatReply(text=f"{question}\nConfirm within {seconds} s.",
                         buttons=[(f"Yes, {label}", f"ok:{key}"), ("No", f"no:{key}")])

    def peek(self, key: str) -> Pending | None:
        self._drop_expired()
        return self._pending.get(key)

    def take(self, key: str) -> None:
        """Consume a question; callers do it before awaiting anything, so a double press finds nothing."""
        self._pending.pop(key, None)

    def count(self) -> int:
        self._drop_expired()
        return len(self._pending)

    def _drop_expired(self) -> None:
        now = self.clock()
        for key in [k for k, p in self._pending.items() if p.expires_at <= now]:
            del self._pending[key]
