"""An adapter's durable memory of the orders it has sent, for brokers that do not deduplicate client order ids.

An append-only JSON-lines file (`state_dir/<broker>/<account>.orders`), fsynced before each placement, so
a restart still knows what it may have sent and looks it up instead of sending it again (`sent_before`,
the step before every placement). Used by the Tradovate, Schwab and Tastytrade adapters.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brokers.base import BrokerUnavailable
from daemon.domain import Order

log = logging.getLogger(__name__)


class OrderJournal:
    """Client order ids sent to a broker, with the broker order id once known; survives restarts.

    One JSON object per line: `{"cid", "state": "sending"|"placed"|"refused", ...adapter fields, "at"}`
    (Tradovate adds `symbol`, `contract`, `order_id`); later lines for the same id update earlier ones.
    Each line is flushed and fsynced before the request it describes is sent.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    self.entries.setdefault(str(entry["cid"]), {}).update(entry)
                except (ValueError, KeyError, TypeError):  # a torn last line after a crash
                    log.warning("order journal %s: unreadable line %d ignored", self.path, number)

    def get(self, cid: str) -> dict[str, Any] | None:
        return self.entries.get(cid)

    def record(self, cid: str, state: str, **fields: Any) -> None:
        entry = {"cid": cid, "state": state, **fields, "at": datetime.now(UTC).isoformat()}
        self.entries.setdefault(cid, {}).update(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def aliases(self) -> dict[str, str]:
        """Contract name -> the ticker the engine last used for it (`ESZ6` -> `ES1!`)."""
        return {e["contract"]: e["symbol"] for e in self.entries.values() if e.get("contract") and e.get("symbol")}


async def sent_before(
    journal: OrderJournal, broker: str, cid: str, find: Callable[[str], Awaitable[Order | None]]
) -> Order | None:
    """The broker's order for `cid` when the journal says it may have been sent (this run or an earlier one),
    found by the adapter's `find`; None when it was never journaled or the broker does not have it. A lookup
    that fails leaves its state unknown: `BrokerUnavailable`, and nothing may be sent."""
    if journal.get(cid) is None:
        return None
    try:
        return await find(cid)
    except BrokerUnavailable as exc:
        raise BrokerUnavailable(f"{broker}: order {cid} state unknown ({exc.reason}); it is looked up again "
                                "before anything is resent") from None
