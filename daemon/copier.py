"""Copy trading: a leader account's position mirrored onto a group, each follower sized and risk-checked on its own.

A group with `copy_from = "leader"` follows that account. Every fill recorded for the leader (an order this
daemon placed, or one reconciliation found: a manually traded account) becomes one fan-out alert to the
group, the same shape a webhook alert to the group takes: its intent is the leader's position in that symbol
after the fill, as a target (`target_position`; EXIT when the leader is flat), with the leader and fill id in
the dedup key. Each follower's child is sized by `daemon.intake.for_account` (multiplier, symbol map and
ratio, rounded toward zero) and is an ordinary signal: its own risk check, worker, client order id, outcome
and alert, and the chat gets one message per copied fill.

A target rather than the fill's size, so that a duplicate fill event copies nothing twice, an exit never
opens or flips a follower, and a copy refused by one follower's risk (or lost in a crash between the fill
and its copy) is healed by the leader's next fill in that symbol. The leader's position is the one the store
holds, updated in the same transaction as the fill. Followers are what they are told: a position a follower
opens on its own in a copied symbol is brought back to the leader's at the next copy.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from config.groups import GroupSettings, Targets
from daemon.domain import ZERO, Action, Event, Fill, Intent, utcnow
from daemon.fanout import FanoutAcceptance, plan
from daemon.store.repository import FanoutChild

log = logging.getLogger(__name__)

Accept = Callable[[Intent, Sequence[FanoutChild], dict[str, Any]], FanoutAcceptance]
Targeting = Callable[[str, str], Targets | None]  # (ticker, group name) -> the group's legs (`Settings.targets`)


class Copier:
    """Turns the leaders' fill events into fan-out alerts to the groups that follow them."""

    def __init__(self, *, groups: Mapping[str, GroupSettings], targets: Targeting,
                 position: Callable[[str, str], Decimal], accept: Accept,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.followers: dict[str, list[str]] = {}  # leader -> the groups that copy it
        for name, group in groups.items():
            if group.copy_from is not None:
                self.followers.setdefault(group.copy_from, []).append(name)
        self.targets, self.position, self.accept, self.clock = targets, position, accept, clock

    def on_event(self, event: Event) -> None:
        """An event bus subscriber: copies each fill of a leader to every group that follows it."""
        if event.kind != "fill" or event.account not in self.followers:
            return
        fill = Fill.model_validate(event.data["fill"])
        for group in self.followers[fill.account]:
            self.copy(group, fill)

    def copy(self, group: str, fill: Fill) -> FanoutAcceptance | None:
        """The fan-out alert mirroring the leader's position after `fill` onto `group` (None: nothing to copy)."""
        targets = self.targets(fill.symbol, group)
        if targets is None or not targets.legs:
            log.warning("copy of %s fill %s: group %s has no accounts to copy to", fill.account, fill.fill_id, group)
            return None
        held = self.position(fill.account, fill.symbol)
        dedup_key = f"copy:{fill.account}:{fill.fill_id}"
        digest = hashlib.sha256(f"{group}\x00{dedup_key}".encode()).hexdigest()
        action = Action.EXIT if held == ZERO else Action.BUY if held > 0 else Action.SELL
        now = self.clock()
        parent = Intent(
            signal_id=f"cp_{digest[:24]}", dedup_key=dedup_key, account=targets.label or f"@{group}",
            source="copy", action=action, symbol=fill.symbol, target_position=None if held == ZERO else held,
            price=fill.price, received_at=now, signal_time=fill.filled_at,
            comment=f"copy of {fill.account}: {fill.side.value} {fill.quantity.normalize():f} {fill.symbol}",
        )
        raw = {"copy_of": {"account": fill.account, "fill_id": fill.fill_id, "side": fill.side.value,
                           "quantity": str(fill.quantity), "price": str(fill.price), "position": str(held)}}
        answer = self.accept(parent, plan(parent, targets, now.date()), raw)
        if answer.is_new:
            log.info("copied %s fill %s to group %s as %s (leader holds %s)", fill.account, fill.fill_id, group,
                     answer.parent_id, held.normalize())
        return answer
