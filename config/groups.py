"""Account groups and symbol maps: which accounts one alert fans out to, with what size and what symbol.

    [groups.nq-evals]
    accounts = { apex1 = 1, apex2 = 1, topstep = 0.5, personal = 0 }   # multiplier; 0 = recorded as skipped
    symbols = ["NQ1!"]                 # tickers routed to this group when the alert names no account

    [symbol_maps.micro]                # an account's (or a whole group's) map: root -> what it trades instead
    NQ = { to = "MNQ", ratio = 10 }    # 1 NQ = 10 MNQ; NQ1! -> MNQ1!, NQZ6 -> MNQZ6

An alert names a group (`"account": "nq-evals"`) or a list of accounts (`"accounts": ["apex1", "apex2"]`);
`targets()` resolves it to the legs (account, multiplier, symbol map) that become one child signal each.
An account's own map wins over its group's. `copy_from = "leader"` makes the group follow that account's
position (`daemon.copier`). This module is ground floor: it imports nothing of the project.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

GROUP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_LEGS = 50


class SymbolMapping(BaseModel):
    """What an account trades instead of a root (or a plain symbol), and how many of it per unit alerted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str = Field(min_length=1, max_length=16, description="Root (futures) or symbol traded instead")
    ratio: Decimal = Field(Decimal(1), gt=0, le=1000, description="Units traded per unit alerted (NQ -> MNQ: 10)")

    @field_validator("to")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()


class GroupSettings(BaseModel):
    """One group of accounts an alert can fan out to."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    accounts: dict[str, Decimal] = Field(description="Account name -> quantity multiplier (0 = skip)")
    symbols: list[str] = Field(
        default_factory=list, description="TradingView tickers routed to this group when the alert names none"
    )
    copy_from: str | None = Field(
        None, description="A leader account whose position this group mirrors after each of its fills"
    )

    @field_validator("accounts")
    @classmethod
    def _multipliers(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        if not value:
            raise ValueError("a group needs at least one account")
        if len(value) > MAX_LEGS:
            raise ValueError(f"a group holds at most {MAX_LEGS} accounts")
        for name, multiplier in value.items():
            if not multiplier.is_finite() or multiplier < 0 or multiplier > 100:
                raise ValueError(f"multiplier of {name!r} must be from 0 to 100, got {multiplier}")
        return value

    @field_validator("symbols")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [s.strip().upper() for s in value]

    def members(self) -> list[str]:
        """The accounts a group control (flatten, pause) or view (positions, P&L) covers: multiplier > 0."""
        return [name for name, multiplier in self.accounts.items() if multiplier > 0]


@dataclass(frozen=True)
class Leg:
    """One account an alert goes to: its quantity multiplier and the symbol map that applies to it."""

    account: str
    multiplier: Decimal = Decimal(1)
    symbol_map: Mapping[str, SymbolMapping] = field(default_factory=dict)
    enabled: bool = True  # a disabled member of a group is recorded as skipped, not refused


@dataclass(frozen=True)
class Targets:
    """Where an alert goes. `label` is None for one account named or routed as before (no fan-out)."""

    legs: tuple[Leg, ...]
    label: str | None = None  # "@nq-evals" or "@apex1+apex2": the parent signal's account column

    @property
    def is_fanout(self) -> bool:
        return self.label is not None


def check_groups(groups: Mapping[str, GroupSettings], symbol_maps: Mapping[str, object],
                 accounts: Sequence[str], account_symbols: Mapping[str, Sequence[str]]) -> None:
    """Names, members and routed tickers consistent with the accounts; ValueError naming the problem."""
    for name, group in groups.items():
        if not GROUP_NAME.match(name):
            raise ValueError(f"group name {name!r} may only hold letters, digits, '-' and '_'")
        if name in accounts or name == "all":
            raise ValueError(f"group {name!r} has the name of an account; give it another name")
        unknown = [a for a in group.accounts if a not in accounts]
        if unknown:
            raise ValueError(f"group {name!r} lists {', '.join(map(repr, unknown))}, not configured accounts")
    followers = {a for group in groups.values() if group.copy_from for a in group.accounts}
    for name, group in groups.items():
        if group.copy_from is not None and group.copy_from not in accounts:
            raise ValueError(f"group {name!r} copies {group.copy_from!r}, which is not a configured account")
        if group.copy_from in followers:
            raise ValueError(f"group {name!r} copies {group.copy_from!r}, which itself follows a leader; "
                             "copy from an account that no group copies into")
    owner = {symbol: f"account {name!r}" for name, symbols in account_symbols.items() for symbol in symbols}
    for name, group in groups.items():
        for symbol in group.symbols:
            if symbol in owner:
                raise ValueError(f"ticker {symbol} is routed to both {owner[symbol]} and group {name!r}; "
                                 "list it in one")
            owner[symbol] = f"group {name!r}"
    for name in symbol_maps:
        if name not in accounts and name not in groups:
            raise ValueError(f"symbol_maps.{name} names neither an account nor a group")


def targets(groups: Mapping[str, GroupSettings], symbol_maps: Mapping[str, Mapping[str, SymbolMapping]],
            enabled: Sequence[str], *, ticker: str, account: str | None, accounts: Sequence[str] | None,
            single: str | None) -> Targets | None:
    """The legs of an alert: a named group, a list of accounts, a group listing the ticker, else `single`
    (the account `Settings.route` chose). None when nothing matches or a named account is not enabled."""
    def leg(name: str, multiplier: Decimal = Decimal(1), group: str | None = None) -> Leg:
        merged = {**(symbol_maps.get(group, {}) if group else {}), **symbol_maps.get(name, {})}
        return Leg(name, multiplier, merged, name in enabled)

    def group_targets(name: str) -> Targets:
        members = groups[name].accounts
        return Targets(tuple(leg(a, m, name) for a, m in members.items()), label=f"@{name}")

    if accounts:
        names = list(dict.fromkeys(accounts))
        if any(a not in enabled for a in names) or len(names) > MAX_LEGS:
            return None
        return Targets(tuple(leg(a) for a in names), label="@" + "+".join(sorted(names)))
    if account and account in groups:
        return group_targets(account)
    if not account:
        for name, group in groups.items():
            if ticker.upper() in group.symbols:
                return group_targets(name)
    return Targets((leg(single),)) if single else None
