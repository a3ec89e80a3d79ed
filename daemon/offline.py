"""`traderd flatten` with the daemon down: own the accounts, flatten each through its worker, hand all back.

The same engine path as a running daemon's `/flatten` (the account's worker, idempotent per request id), in
this process and without the webhook, chat or scheduler: the lock file on SQLite, or the accounts' free
leases on a shared PostgreSQL store, is taken first, so a running daemon is never raced.
"""

from __future__ import annotations

from daemon.app import Daemon
from daemon.execution import Outcome
from daemon.ownership.fence import NotOwner


async def flatten_offline(daemon: Daemon, target: str, request_id: str, within: float = 30) -> list[Outcome]:
    """KeyError for an unknown account; NotOwner when another daemon executes one of them."""
    daemon.lock.acquire()
    daemon.store.open()
    try:
        await daemon.engine.start(accounts=())
        await daemon.ownership.start()
        accounts = daemon.engine.targets(target)
        others = [name for name in accounts if not daemon.engine.serving(name)]
        if others:
            raise NotOwner(f"{', '.join(others)} executed by another daemon: flatten through it "
                           "(traderd status shows who owns what)")
        ids = daemon.engine.request_flatten(target, "cli", request_id, source="cli")
        daemon.engine.feed(accounts)
        return [await daemon.engine.wait_for(signal_id, within) for signal_id in ids]
    finally:
        daemon.stopped.set()
        await daemon.ownership.stop()
        await daemon.engine.stop(5)
        for broker in daemon.brokers.values():
            await broker.close()
        daemon.store.close()
        daemon.lock.release()
