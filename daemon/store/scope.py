"""Which accounts a store read covers: one account, several (a group's members), or all of them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from sqlmodel import col

Accounts = str | Collection[str] | None  # None: every account
S = TypeVar("S")


def only(stmt: S, column: Any, accounts: Accounts) -> S:
    """`stmt` narrowed to the rows whose `column` names one of `accounts`; None keeps every row."""
    if accounts is None:
        return stmt
    if isinstance(accounts, str):
        return stmt.where(column == accounts)  # type: ignore[attr-defined]
    return stmt.where(col(column).in_(list(accounts)))  # type: ignore[attr-defined]
