"""Builds the broker adapter an account's configuration names; the only place that knows every kind.

Adapters are imported lazily so that an installation using only the paper broker never imports (or needs
the credentials of) the others.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from brokers.base import Broker
from config.settings import AccountSettings
from daemon.domain import utcnow


def build_broker(account: str, config: AccountSettings, state_dir: Path,
                 clock: Callable[[], datetime] = utcnow) -> Broker:
    """`clock` is the daemon's: the simulated paper broker timestamps its fills with it (real brokers use
    their own time), so rules that read fill times (PDT, sessions) see one timeline."""
    if config.broker == "paper":
        from brokers.paper.broker import PaperBroker

        return PaperBroker(account, config.paper, state_dir / "paper" / f"{account}.json", clock)
    if config.broker == "alpaca" and config.alpaca is not None:
        from brokers.alpaca.broker import AlpacaBroker

        return AlpacaBroker(account, config.alpaca)
    if config.broker == "projectx" and config.projectx is not None:
        from brokers.projectx.broker import ProjectXBroker

        return ProjectXBroker(account, config.projectx)
    if config.broker == "tradovate" and config.tradovate is not None:
        from brokers.tradovate.broker import TradovateBroker

        return TradovateBroker(account, config.tradovate, state_dir)
    raise ValueError(f"account {account!r}: broker {config.broker!r} is not supported yet")
