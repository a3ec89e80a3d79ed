"""Fires due time exits: each closes the position its entry opened, at market, once, also after a restart.

Every `poll` seconds (a scheduler job; so an exit that fell due while the daemon was down runs right after
the start) the armed time exits due by the clock are fired. Firing accepts an exit intent through the engine
like any signal, with a dedup key derived from the entry, so a crash between accepting it and marking the
row fired fires nothing twice. The exit runs on the account's worker, behind signals before it, and closes
only a position still on the entry's side, up to the entry's quantity (`Intent.closes`); when that is the
whole position its resting exits are cancelled first. An entry that did not execute is skipped; a time
exit armed from chat (`/exit-after`) has no entry signal and closes the position it was armed for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from daemon.domain import Action, Event, Intent, SignalStatus
from daemon.store.repository import Store
from daemon.store.time_exits import TimeExitView

log = logging.getLogger("traderd.time_exits")


class Accepted(Protocol):
    @property
    def signal_id(self) -> str: ...


class TimeExitRunner:
    """`accept` is `Engine.accept`; `owns(account)` (shared store) limits firing to this daemon's accounts."""

    def __init__(self, *, store: Store, accept: Callable[[Intent], Accepted], publish: Callable[[Event], None],
                 clock: Callable[[], datetime], owns: Callable[[str], bool] | None = None,
                 poll: float = 1.0) -> None:
        self.store = store
        self.accept = accept
        self.publish = publish
        self.clock = clock
        self.owns = owns
        self.poll = poll

    async def tick(self) -> None:
        """The scheduler's job (every `poll` seconds)."""
        self.run_due()

    def run_due(self) -> list[str]:
        """Fire every armed time exit due now; the closing signals' ids."""
        now = self.clock()
        fired = []
        for due in self.store.time_exits(armed_only=True):
            if due.due_at > now:
                break  # soonest first
            if self.owns is not None and not self.owns(due.account):
                continue
            closing = self.fire(due, now)
            if closing is not None:
                fired.append(closing)
        return fired

    def fire(self, due: TimeExitView, now: datetime) -> str | None:
        entry = self.store.get_signal(due.entry_signal_id) if due.origin == "signal" else None
        if entry is not None and not entry.status.is_final:
            return None  # its entry is still being executed: fire once it is done
        if due.origin == "signal" and (entry is None or entry.status is not SignalStatus.EXECUTED):
            why = "its entry signal is unknown" if entry is None else f"its entry was {entry.status.value}"
            self.store.settle_time_exit(due.entry_signal_id, "skipped", note=why)
            log.info("%s %s: time exit %s skipped: %s", due.account, due.symbol, due.spec, why)
            return None
        intent = Intent(signal_id=f"tx_{due.entry_signal_id}", dedup_key=f"time-exit:{due.entry_signal_id}",
                        account=due.account, source="timer", action=Action.EXIT, symbol=due.symbol,
                        quantity=due.quantity, closes=due.side, received_at=now,
                        comment=f"time exit {due.spec} of {due.entry_signal_id}")
        closing = self.accept(intent).signal_id
        if self.store.settle_time_exit(due.entry_signal_id, "fired", note=f"closing signal {closing}",
                                       close_signal_id=closing):
            late = (now - due.due_at).total_seconds()
            summary = (f"time exit {due.spec}: closing {due.symbol} {due.quantity.normalize():f} at market"
                       + (f" ({late:.0f} s late: the daemon was down)" if late > 60 else ""))
            self.publish(Event(kind="order", account=due.account, summary=summary,
                               data={"signal_id": closing, "entry_signal_id": due.entry_signal_id}))
        return closing
