"""Chat updates already handled (Telegram update ids, Discord interaction ids), recorded durably in the state
store, so an update delivered again after a restart is never run a second time (a /pause, a flatten question).

An update is claimed before it is handled: a crash in between loses that one command (the trader sees no
answer and sends it again) rather than ever running it twice. Records are kept for `KEEP` (Telegram keeps
undelivered updates for 24 hours). When the store cannot record the claim the command still runs, with a
warning: the kill switch must not depend on the bookkeeping of redeliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from daemon.store.state import StateStore

log = logging.getLogger("traderd.chat")
NAMESPACE = "chat_delivery"
KEEP = timedelta(days=3)


class Deliveries:
    def __init__(self, state: StateStore, clock: Callable[[], datetime]) -> None:
        self.state, self.clock = state, clock

    def claimer(self, transport: str) -> Callable[[str], Awaitable[bool]]:
        """The transport's `claim(delivery_id)`: True the first time, False for a delivery seen before."""

        async def claim(delivery_id: str) -> bool:
            return await self.first(transport, delivery_id)

        return claim

    async def first(self, transport: str, delivery_id: str) -> bool:
        key = f"{transport}:{delivery_id}"
        try:
            fresh = await asyncio.to_thread(self.state.claim, NAMESPACE, key, {"at": self.clock().isoformat()})
        except Exception as exc:
            log.warning("could not record chat update %s (%s); handling it anyway", key, exc)
            return True
        if not fresh:
            log.info("chat update %s was handled before (delivered again); skipped", key)
        return fresh

    def prune(self) -> None:
        try:
            self.state.prune(NAMESPACE, self.clock() - KEEP)
        except Exception as exc:
            log.warning("could not forget old chat updates: %s", exc)
