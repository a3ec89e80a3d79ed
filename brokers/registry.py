"""The table of broker adapters by name, and the one function that builds an account's broker from it.

`ADAPTERS` maps each broker name of `config.brokers.BROKER_SECTIONS` to the `module:function` that builds
its adapter, `build(account, settings, context) -> Broker` (see `brokers.base.BrokerFactory`). Modules are
imported on first use, so an installation using only the paper broker never imports (or needs the
libraries and credentials of) the others. A new broker is one folder under `brokers/`, one line here and
its settings section in `config/brokers.py`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from brokers.base import Broker, BrokerContext, BrokerFactory
from config.settings import AccountSettings
from daemon.domain import utcnow

ADAPTERS: dict[str, str] = {
    "paper": "brokers.paper.broker:build",
    "alpaca": "brokers.alpaca.broker:build",
    "projectx": "brokers.projectx.broker:build",
    "tradovate": "brokers.tradovate.broker:build",
    "schwab": "brokers.schwab.broker:build",
    "ccxt": "brokers.ccxt.broker:build",
    "tastytrade": "brokers.tastytrade.broker:build",
}


def adapter_factory(broker: str) -> BrokerFactory:
    """The factory `ADAPTERS` names for `broker`, imported now; `ValueError` for a name it does not know."""
    target = ADAPTERS.get(broker)
    if target is None:
        raise ValueError(f"broker {broker!r} is not supported yet")
    module, _, attribute = target.partition(":")
    factory: BrokerFactory = getattr(importlib.import_module(module), attribute)
    return factory


def build_broker(account: str, config: AccountSettings, state_dir: Path,
                 clock: Callable[[], datetime] = utcnow, announce: Callable[[str], None] | None = None) -> Broker:
    """`clock` is the daemon's: the simulated paper broker timestamps its fills with it (real brokers use
    their own time), so rules that read fill times (PDT, sessions) see one timeline. `announce` turns an
    adapter's notice about its link (a login about to expire) into a broker event for the chat alerts."""
    try:
        factory = adapter_factory(config.broker)
    except ValueError as exc:
        raise ValueError(f"account {account!r}: {exc}") from None
    context = BrokerContext(state_dir=state_dir, clock=clock, **({"announce": announce} if announce else {}))
    broker = factory(account, config.section(config.broker), context)
    if not isinstance(broker, Broker):  # a plugin's mistake found at start-up, not at its first order
        raise TypeError(f"account {account!r}: {ADAPTERS[config.broker]} did not build a brokers.base.Broker")
    return broker
