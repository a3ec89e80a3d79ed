"""Builds the broker adapter an account's configuration names; the only place that knows every kind.

Adapters are imported lazily so that an installation using only the paper broker never imports (or needs
the credentials of) the others.
"""

from __future__ import annotations

from pathlib import Path

from brokers.base import Broker
from config.settings import AccountSettings


def build_broker(account: str, config: AccountSettings, state_dir: Path) -> Broker:
    if config.broker == "paper":
        from brokers.paper import PaperBroker

        return PaperBroker(account, config.paper, state_dir / "paper" / f"{account}.json")
    if config.broker == "alpaca" and config.alpaca is not None:
        from brokers.alpaca import AlpacaBroker

        return AlpacaBroker(account, config.alpaca)
    if config.broker == "projectx" and config.projectx is not None:
        from brokers.projectx import ProjectXBroker

        return ProjectXBroker(account, config.projectx)
    if config.broker == "tradovate" and config.tradovate is not None:
        from brokers.tradovate import TradovateBroker

        return TradovateBroker(account, config.tradovate, state_dir)
    raise ValueError(f"account {account!r}: broker {config.broker!r} is not supported yet")
