"""Risk monitor: applies fills, live-equity marks and session rolls to the funded rules, and acts on breaches.

Subscribed to the event bus, it feeds every `fill` event of a funded account to `funded.on_fill`; a
scheduler job reads live equity from each funded account's broker every few seconds (`mark_all`), a
webhook's price marks the position at once (`observe_price`, called by the engine before the order is
checked) and a job at 17:00 America/Chicago closes the futures session (`session_roll`). Breaches are acted on at once:

- soft (`flatten_block_session`: daily loss limit, safety buffer, flat-by): flatten through the account's
  own worker (cancels orders, closes positions) and block new exposure until the next session opens. The
  block lives in the persisted `FundedState`; `RiskEngine` refuses entries while it holds, exits pass.
- hard (`flatten_lock`: maximum loss): flatten and lock the account (`AccountControls.lock`, persisted)
  until an operator calls `reset_lock`.

The monitor acts on an account only through `AccountControls`, which the engine implements.

Every breach is recorded (`store.record_violation`) and published as a `violation` event whose data hold
the rule's numbers and `action`; the end of a block is published as a `resumed` event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from brokers.base import Broker, BrokerError
from daemon.calendar import SessionCalendar, session_date
from daemon.domain import Event, Fill, utcnow
from daemon.events import EventBus
from daemon.risk import funded
from daemon.risk.funded_book import FundedBook
from daemon.store.repository import Store

log = logging.getLogger("traderd.risk")

ACTOR = "risk"


class AccountControls(Protocol):
    """What the monitor may do to an account: lock it against new exposure, unlock it, flatten it."""

    def is_locked(self, account: str) -> bool: ...

    def lock(self, account: str, actor: str, reason: str | None = None) -> None:
        """Refuse new exposure (exits still pass) until `unlock`; persisted across restarts."""

    def unlock(self, account: str, actor: str) -> None: ...

    def request_flatten(self, target: str, actor: str, request_id: str, source: str = ...) -> list[str]:
        """Queue a flatten (cancel orders, close positions) on the account's own worker; idempotent per id."""
        ...


class RiskMonitor:
    def __init__(self, *, book: FundedBook, controls: AccountControls, store: Store, events: EventBus,
                 brokers: Mapping[str, Broker], clock: Callable[[], datetime] = utcnow,
                 owns: Callable[[str], bool] = lambda account: True) -> None:
        self.owns = owns  # several daemons on one store: each watches only the accounts it executes
        self.book = book
        self.controls = controls
        self.store = store
        self.events = events
        self.brokers = dict(brokers)
        self.clock = clock

    def configured(self) -> list[str]:
        """Accounts with funded rules, whichever daemon executes them."""
        return [a for a in self.book.accounts() if a in self.brokers]

    def accounts(self) -> list[str]:
        """The funded accounts this daemon watches now."""
        return [a for a in self.configured() if self.owns(a)]

    def calendars(self) -> set[tuple[SessionCalendar, str]]:
        """The (calendar, zone) of every configured account's trading day, for scheduling its roll."""
        return {(r.calendar, "America/Chicago" if r.calendar == "cme" else r.day_roll_tz)
                for r in (self.book.rules[a] for a in self.configured())}

    def start(self) -> None:
        """Re-apply persisted hard locks to the controls (the store control normally already holds them)."""
        for account in self.accounts():
            state = self.book.state(account)
            if state.locked and not self.controls.is_locked(account):
                self.controls.lock(account, ACTOR, state.lock_reason)

    # ---- inputs ----------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Event-bus subscriber: apply each fill of a funded account (synchronously, before the account's
        worker takes its next signal, so a breach blocks the very next entry)."""
        if event.kind != "fill" or event.account is None or event.account not in self.book or "fill" not in event.data:
            return
        fill = Fill.model_validate(event.data["fill"])
        realized = event.data.get("realized_pnl")
        self.apply_fill(event.account, fill, Decimal(realized) if realized not in (None, "None") else None)

    def apply_fill(self, account: str, fill: Fill, realized_pnl: Decimal | None = None) -> list[funded.Breach]:
        state, rules = self.book.state(account), self.book.rules[account]
        if state.updated_at is not None and fill.filled_at < state.updated_at:
            # The rule state never runs backwards: a late-reported fill counts where the state now is.
            fill = fill.model_copy(update={"filled_at": state.updated_at})
        state, breaches = funded.on_fill(state, rules, fill, realized_pnl)
        self.book.save(account, state)
        self._act(account, breaches)
        return breaches

    async def mark_all(self) -> None:
        """Scheduler job: live equity of every funded account from its broker, checked against the rules."""
        for account in self.accounts():
            try:
                live = await self.brokers[account].account_state()
            except BrokerError as exc:
                log.warning("risk mark of %s skipped: %s", account, exc.reason)
                continue
            self.mark(account, live.equity)

    def mark(self, account: str, live_equity: Decimal, at: datetime | None = None) -> list[funded.Breach]:
        at = at or self.clock()
        before = self.book.state(account)
        state, breaches = funded.on_mark(before, self.book.rules[account], at, live_equity=live_equity)
        self.book.save(account, state)
        self._unblocked(account, before, state, at)
        self._act(account, breaches)
        return breaches

    def observe_price(self, account: str, symbol: str, price: Decimal, at: datetime | None = None,
                      ) -> list[funded.Breach]:
        """A price seen outside the mark job (a webhook's `price`): mark the open position with it now, so a
        price through a floor flattens and blocks before the order that carried it is checked."""
        if account not in self.book or symbol not in self.book.state(account).positions:
            return []
        at = at or self.clock()
        before = self.book.state(account)
        state, breaches = funded.on_mark(before, self.book.rules[account], at, prices={symbol: price})
        self.book.save(account, state)
        self._act(account, breaches)
        return breaches

    async def session_roll(self, calendar: SessionCalendar = "cme", zone: str = "UTC") -> None:
        """Scheduler job at the end of a trading day (17:00 CT for futures, midnight in `zone` for 24x7):
        close the day of every funded account on that calendar with the broker's settled balance (the EOD
        floor moves) and lift soft blocks that end with it."""
        at = self.clock()
        for account in self.accounts():
            rules = self.book.rules[account]
            if rules.calendar != calendar or (calendar == "24x7" and rules.day_roll_tz != zone):
                continue
            closing = session_date(at - timedelta(minutes=1), rules.calendar, rules.day_roll_tz)
            before = self.book.state(account)
            state = before
            breaches: list[funded.Breach] = []
            if before.session is None or before.session <= closing:
                try:
                    balance = (await self.brokers[account].account_state()).cash
                except BrokerError as exc:
                    log.warning("session close of %s uses the rule balance: %s", account, exc.reason)
                    balance = before.balance
                state, breaches = funded.on_session_close(before, rules, balance, at)
            if state.blocked_until is not None and at >= state.blocked_until:
                state = state.model_copy(update={"blocked_until": None, "block_reason": None})
            self.book.save(account, state)
            self._unblocked(account, before, state, at)
            self._act(account, breaches)

    # ---- operator --------------------------------------------------------------------------------

    def reset_lock(self, account: str, actor: str, *, clear_block: bool = False) -> dict[str, Any]:
        """Operator reset after a hard breach: unlock the rule state and the account's controls;
        with `clear_block` also lift a soft block early. Returns the account's rule snapshot."""
        if account not in self.book:
            raise KeyError(f"account {account!r} has no funded rules")
        at = self.clock()
        state = funded.reset_lock(self.book.state(account), at)
        if clear_block:
            state = state.model_copy(update={"blocked_until": None, "block_reason": None})
        self.book.save(account, state)
        self.controls.unlock(account, actor)
        self.store.audit(actor, "reset_lock", account, "with block cleared" if clear_block else "")
        self.events.publish(Event(kind="resumed", account=account, summary=f"risk lock reset by {actor}",
                                  data={"source": ACTOR, "actor": actor}, at=at))
        return funded.snapshot(state, self.book.rules[account], at)

    def snapshot(self, account: str) -> dict[str, Any]:
        return funded.snapshot(self.book.state(account), self.book.rules[account], self.clock())

    # ---- actions ---------------------------------------------------------------------------------

    def _unblocked(self, account: str, before: funded.FundedState, after: funded.FundedState,
                   at: datetime) -> None:
        if before.blocked_until is not None and after.blocked_until is None and not after.locked:
            self.events.publish(Event(kind="resumed", account=account, at=at, data={"source": ACTOR},
                                      summary=f"risk block ({before.block_reason}) lifted: new session"))

    def _act(self, account: str, breaches: list[funded.Breach]) -> None:
        for breach in breaches:
            violation = breach.to_violation(account)
            self.store.record_violation(violation)
            self.events.publish(Event(
                kind="violation", account=account, summary=breach.detail, at=breach.at,
                data={**violation.model_dump(mode="json"), "action": breach.action, "warning": False},
            ))
            if breach.action == "reject":
                continue
            if breach.action == "flatten_lock":
                reason = self.book.state(account).lock_reason or breach.detail
                self.controls.lock(account, ACTOR, reason)
            request_id = f"{breach.rule}_{int(breach.at.timestamp() * 1_000_000)}"
            try:
                self.controls.request_flatten(account, ACTOR, request_id=request_id, source=ACTOR)
            except Exception:  # the lock/block above still holds; the operator is told by the event
                log.exception("risk flatten of %s after %s could not be queued", account, breach.rule)
