"""Which Schwab orders are this daemon's: the journal of intents, and the lookup of an order whose answer was lost.

Schwab's `OrderRequest` has no client order id (its read-only `tag` cannot be set), so before an order is
sent its intent (symbol, instruction, quantity, type, prices, the time it was sent) is journaled and
fsynced (`brokers.journal.OrderJournal`). When the answer is lost, the order is searched among the
account's orders entered from `sent_at - skew` on that match the intent and that no other journal entry
has claimed (nor that were already known before the send, while this process lives); the earliest
match is claimed. Only if none matches is the order sent again.

Residual risk, stated plainly: an identical order (same symbol, instruction, quantity, type and prices)
entered by hand (thinkorswim, the app) within that window while the answer was lost is taken for ours,
and ours is then not sent; and if Schwab's clock is more than `skew` behind ours, our own order is not
found and is sent a second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from brokers.journal import OrderJournal
from brokers.schwab import models as sm

LEG_SUFFIXES = {"LIMIT": "-tp", "STOP": "-sl"}  # bracket exits: the entry's client order id + suffix


def split_cid(cid: str) -> tuple[str, str]:
    """`td...-tp` -> (`td...`, `-tp`); a plain id -> (id, "")."""
    for suffix in LEG_SUFFIXES.values():
        if cid.endswith(suffix):
            return cid[: -len(suffix)], suffix
    return cid, ""


def intent_of(body: dict[str, Any], sent_at: datetime) -> dict[str, Any]:
    leg = sm.leg_of(body)
    return {"symbol": leg["instrument"]["symbol"], "instruction": leg["instruction"], "quantity": str(leg["quantity"]),
            "order_type": body["orderType"], "price": _str(body.get("price")),
            "stopPrice": _str(body.get("stopPrice")), "stopPriceOffset": _str(body.get("stopPriceOffset")),
            "sent_at": sent_at.isoformat()}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


class Claims:
    """The journal of intents and the orders claimed by them (order id -> client order id)."""

    def __init__(self, path: Path, skew: float) -> None:
        self.journal = OrderJournal(path)
        self.skew = timedelta(seconds=skew)
        self.known_before: dict[str, set[str]] = {}  # cid -> order ids already seen when it was sent

    def entry(self, cid: str) -> dict[str, Any] | None:
        return self.journal.get(cid)

    def cid_of(self, order_id: str) -> str:
        for cid, entry in self.journal.entries.items():
            if str(entry.get("order_id")) == order_id or order_id in entry.get("previous", []):
                return cid
        return ""

    def claimed(self) -> set[str]:
        ids: set[str] = set()
        for entry in self.journal.entries.values():
            if entry.get("order_id"):
                ids.add(str(entry["order_id"]))
            ids.update(entry.get("previous", []))
        return ids

    def sending(self, cid: str, body: dict[str, Any], sent_at: datetime, known: Iterable[str]) -> None:
        self.known_before[cid] = set(known)
        self.journal.record(cid, "sending", **intent_of(body, sent_at))

    def placed(self, cid: str, order_id: str, **fields: Any) -> None:
        self.journal.record(cid, "placed", order_id=order_id, **fields)

    def refused(self, cid: str, reason: str) -> None:
        self.journal.record(cid, "refused", reason=reason)

    def replaced(self, cid: str, old_id: str, new_id: str, body: dict[str, Any], at: datetime) -> None:
        entry = self.journal.get(cid) or {}
        previous = [*entry.get("previous", []), old_id]
        self.journal.record(cid, "placed", order_id=new_id, previous=previous, **intent_of(body, at))

    def window(self, cid: str, now: datetime) -> tuple[datetime, datetime] | None:
        """The entered-time range to search for the order of `cid`, None if it was never journaled."""
        entry = self.journal.get(cid)
        sent_at = sm.parse_time(entry.get("sent_at")) if entry else None
        if sent_at is None:
            return None
        return sent_at - self.skew, max(now, sent_at) + self.skew

    def match(self, cid: str, orders: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
        """The earliest listed order that is `cid`'s intent and nobody's yet (module docstring)."""
        entry = self.journal.get(cid)
        bounds = self.window(cid, sm.parse_time(entry.get("sent_at")) or datetime.now(sm.UTC)) if entry else None
        if entry is None or bounds is None:
            return None
        start = bounds[0]
        taken = self.claimed() | self.known_before.get(cid, set())
        candidates = [o for o in orders if str(o.get("orderId")) not in taken and sm.matches(o, entry)
                      and (sm.parse_time(o.get("enteredTime")) or start) >= start]
        if not candidates:
            return None
        return min(candidates, key=lambda o: (sm.parse_time(o.get("enteredTime")) or start, int(o["orderId"])))
