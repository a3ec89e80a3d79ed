"""One alert, many accounts: one child Intent per leg (through the intake normaliser), and what accepting them made.

`plan(parent, targets, on)` turns the parent Intent of an alert and its `config.groups.Targets` into one
`FanoutChild` per account, each sized and named by `daemon.intake.for_account` (multiplier, symbol map,
engine symbol). A child is an ordinary Intent for one account, so the planner, risk check, worker, restart
recovery and client order id work on it unchanged; its signal id is the parent's plus the account, its
dedup key the parent's (the client order id derives from account + dedup key, so it differs per account
and a resend of the alert is a duplicate for every child).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from config.groups import Targets
from daemon.domain import Intent
from daemon.intake import for_account
from daemon.store.repository import FanoutChild


@dataclass(frozen=True)
class FanoutAcceptance:
    """What `Engine.accept_fanout` made of an alert: the parent id, and per child whether it is new."""

    parent_id: str
    is_new: bool
    children: Sequence[tuple[FanoutChild, bool]] = ()


def plan(parent: Intent, targets: Targets, on: date) -> list[FanoutChild]:
    """One child per leg, in the order the group (or the alert's list) names the accounts."""
    return [for_account(parent, leg, on) for leg in targets.legs]
