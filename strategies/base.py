"""The strategy API: Bar, Position, Context, typed parameters, the signals a strategy returns, and the loader.

A strategy is a class deriving from `Strategy` with a pydantic `Params` model and an `on_bar` method:

    class MyStrategy(Strategy):
        class Params(BaseModel):
            quantity: Decimal = Decimal(1)

        def on_bar(self, bar: Bar, history: Sequence[Bar], position: Position) -> list[Signal]:
            return [target(self.params.quantity)] if bar.close > bar.open else [exit_position()]

`history` holds the closed bars of the strategy's timeframe, oldest first, the new `bar` being the last one.
`position` is the account's real position in the strategy's symbol. The returned signals become `Intent`s
(source "strategy") with a dedup key derived from the strategy name and the bar's close time, so a restart
never acts twice on one bar. `self.state` is a JSON-serialisable dict the daemon persists after every bar.

This module is a plugin: it imports only the ground floor (`daemon.domain`) and the standard library.
Strategies are loaded by name from the `strategies` package (`load_strategy("sma_cross")`) or from a file
path (`load_strategy("/etc/traderd/my_strategy.py")`); any failure is a `StrategyLoadError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from daemon.domain import ZERO, Bar, OrderType, TimeInForce

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class StrategyLoadError(Exception):
    """The strategy could not be imported, found, or configured; the message says why."""


@dataclass(frozen=True)
class Position:
    """The account's position in the strategy's symbol: signed quantity and average price."""

    quantity: Decimal = ZERO
    average_price: Decimal | None = None

    @property
    def is_flat(self) -> bool:
        return self.quantity == ZERO

    @property
    def is_long(self) -> bool:
        return self.quantity > ZERO

    @property
    def is_short(self) -> bool:
        return self.quantity < ZERO


@dataclass(frozen=True)
class Signal:
    """What a strategy asks for on a bar; the daemon turns it into an `Intent` for the strategy's account.

    `action` "target" trades the difference to `target_position`; "exit" closes the position (or `quantity`
    of it); "buy"/"sell" trade `quantity`. `take_profit`/`stop_loss` attach a bracket to an entry.
    """

    action: Literal["buy", "sell", "exit", "target"]
    quantity: Decimal | None = None
    target_position: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    comment: str | None = None

    def __post_init__(self) -> None:
        if self.action in ("buy", "sell") and (self.quantity is None or self.quantity <= 0):
            raise ValueError(f"a {self.action} signal needs a positive quantity")
        if self.action == "target" and self.target_position is None:
            raise ValueError("a target signal needs target_position")
        if self.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and self.limit_price is None:
            raise ValueError(f"a {self.order_type} signal needs limit_price")
        if self.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and self.stop_price is None:
            raise ValueError(f"a {self.order_type} signal needs stop_price")


def buy(quantity: Decimal | int | str, **kwargs: Any) -> Signal:
    return Signal(action="buy", quantity=Decimal(quantity), **kwargs)


def sell(quantity: Decimal | int | str, **kwargs: Any) -> Signal:
    return Signal(action="sell", quantity=Decimal(quantity), **kwargs)


def exit_position(quantity: Decimal | int | str | None = None, **kwargs: Any) -> Signal:
    return Signal(action="exit", quantity=None if quantity is None else Decimal(quantity), **kwargs)


def target(position: Decimal | int | str, **kwargs: Any) -> Signal:
    return Signal(action="target", target_position=Decimal(position), **kwargs)


def _no_session(_ts: datetime) -> datetime | None:
    return None


@dataclass
class Context:
    """Where a strategy runs: its configured name, symbol, timeframe and calendar, injected by the daemon.

    `session_close(ts)` answers when the trading session containing `ts` closes (early closes included),
    or None when the calendar has no sessions (24x7).
    """

    name: str
    symbol: str
    timeframe: str = "1d"
    calendar: str = "nyse"
    account: str = ""
    session_close: Callable[[datetime], datetime | None] = field(default=_no_session)


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Strategy:
    """Base class of every strategy. Subclasses set `Params` and implement `on_bar`."""

    Params: ClassVar[type[BaseModel]] = NoParams
    description: ClassVar[str] = ""

    def __init__(self, params: BaseModel, context: Context, state: dict[str, Any] | None = None) -> None:
        self.params = params
        self.context = context
        self.state: dict[str, Any] = dict(state or {})

    @property
    def warmup(self) -> int:
        """How many bars of history `on_bar` needs before it can decide anything (the runner loads them)."""
        return 1

    def on_bar(self, bar: Bar, history: Sequence[Bar], position: Position) -> list[Signal]:
        raise NotImplementedError


def parse_params(cls: type[Strategy], values: Mapping[str, Any]) -> BaseModel:
    """Validate parameters (strings from the CLI or TOML values) against the strategy's `Params` model."""
    try:
        return cls.Params.model_validate(dict(values))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors())
        raise StrategyLoadError(f"bad parameters for {cls.__name__}: {problems}") from exc


def _strategy_in(module: Any, origin: str) -> type[Strategy]:
    explicit = getattr(module, "STRATEGY", None)
    if inspect.isclass(explicit) and issubclass(explicit, Strategy):
        return explicit
    found = [obj for obj in vars(module).values()
             if inspect.isclass(obj) and issubclass(obj, Strategy) and obj is not Strategy
             and obj.__module__ == module.__name__]
    if len(found) != 1:
        raise StrategyLoadError(f"{origin} must define exactly one Strategy subclass (or STRATEGY = ...); "
                                f"found {len(found)}")
    return found[0]


def load_strategy(spec: str) -> type[Strategy]:
    """The Strategy class named by `spec`: a module of the `strategies` package, or a path to a .py file."""
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise StrategyLoadError(f"strategy file {path} does not exist")
        module_name = f"traderd_user_strategy_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}"
        try:
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise StrategyLoadError(f"cannot import {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            loader_spec.loader.exec_module(module)
        except StrategyLoadError:
            raise
        except Exception as exc:  # a user's file may raise anything while importing
            sys.modules.pop(module_name, None)
            raise StrategyLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
        return _strategy_in(module, str(path))
    if not _NAME.match(spec) or spec == "base":
        raise StrategyLoadError(f"{spec!r} is not a strategy name (a module of strategies/, or a .py path)")
    try:
        module = importlib.import_module(f"strategies.{spec}")
    except ModuleNotFoundError as exc:
        if exc.name == f"strategies.{spec}":
            raise StrategyLoadError(f"no strategy named {spec!r}; shipped: {', '.join(shipped())}") from exc
        raise StrategyLoadError(f"importing strategy {spec!r} failed: {exc}") from exc
    except Exception as exc:
        raise StrategyLoadError(f"importing strategy {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    return _strategy_in(module, f"strategies.{spec}")


def shipped() -> list[str]:
    """Names of the strategies shipped in the `strategies` package."""
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if p.stem not in ("__init__", "base"))


def sma(values: Sequence[Decimal], length: int) -> Decimal | None:
    """Simple moving average of the last `length` values, or None while there are fewer."""
    if length <= 0 or len(values) < length:
        return None
    return sum(values[-length:], ZERO) / length
