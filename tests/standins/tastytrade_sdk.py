"""The tastytrade SDK's pydantic models as a second contract for the stand-in's exchanges.

The harvested Swagger files are loose (no required response fields, some types wrong), so every request
body the adapter sends and every answer the stand-in gives is also parsed with the models of the
unofficial `tastytrade` SDK (tastyware/tastytrade), which are written against the live API: order bodies
as `NewOrder` / `NewComplexOrder`, orders as `PlacedOrder`, placements as `PlacedOrderResponse`, and
positions, balances and accounts as `CurrentPosition`, `AccountBalance` and `Account`. `sdk_errors`
returns each failure as a readable line.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from pydantic import BaseModel, ValidationError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from tastytrade.account import Account, AccountBalance, CurrentPosition
    from tastytrade.order import (
        NewComplexOrder,
        NewOrder,
        PlacedComplexOrder,
        PlacedComplexOrderResponse,
        PlacedOrder,
        PlacedOrderResponse,
        UnplacedComplexOrder,
        UnplacedOrder,
    )

ACCOUNT = r"/accounts/[^/]+"
# (method, path regex, model of the request body or None, model of the answer's data, answer is a list)
RULES: list[tuple[str, str, type[BaseModel] | None, type[BaseModel] | None, bool]] = [
    ("GET", r"/customers/me/accounts", None, None, True),  # items are {account, authority-level}: see below
    ("GET", ACCOUNT + r"/positions", None, CurrentPosition, True),
    ("GET", ACCOUNT + r"/balances/[A-Z]+", None, AccountBalance, False),
    ("GET", ACCOUNT + r"/orders(/live)?", None, PlacedOrder, True),
    ("GET", ACCOUNT + r"/orders/\d+", None, PlacedOrder, False),
    ("DELETE", ACCOUNT + r"/orders/\d+", None, PlacedOrder, False),
    ("PUT", ACCOUNT + r"/orders/\d+", None, PlacedOrder, False),
    ("POST", ACCOUNT + r"/orders", NewOrder, PlacedOrderResponse[PlacedOrder], False),
    ("POST", ACCOUNT + r"/orders/dry-run", NewOrder, PlacedOrderResponse[UnplacedOrder], False),
    ("POST", ACCOUNT + r"/complex-orders", NewComplexOrder, PlacedComplexOrderResponse[PlacedComplexOrder], False),
    ("POST", ACCOUNT + r"/complex-orders/dry-run", NewComplexOrder,
     PlacedComplexOrderResponse[UnplacedComplexOrder], False),
    ("GET", ACCOUNT + r"/complex-orders/\d+", None, PlacedComplexOrder, False),
    ("DELETE", ACCOUNT + r"/complex-orders/\d+", None, PlacedComplexOrder, False),
]


def _check(model: type[BaseModel], value: Any, where: str) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model.model_validate(value)
    except ValidationError as exc:
        return [f"sdk {where}: {model.__name__}: {'; '.join(_lines(exc))}"]
    return []


def _lines(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]


def sdk_errors(method: str, path: str, status: int, request: Any, response: Any) -> list[str]:
    """What the SDK's models find wrong with one exchange (2xx answers only; errors have their own shape)."""
    rule = next((r for r in RULES if r[0] == method and re.fullmatch(r[1], path)), None)
    if rule is None:
        return []
    _, _, body_model, answer_model, is_list = rule
    where = f"{method} {path}"
    errors = _check(body_model, request, f"request {where}") if body_model is not None and request else []
    if not 200 <= status < 300 or not isinstance(response, dict):
        return errors
    data = response.get("data")
    if path.endswith("/customers/me/accounts"):
        return errors + [e for item in (data or {}).get("items", [])
                         for e in _check(Account, item.get("account"), f"response {where}")]
    if answer_model is None:
        return errors
    values = (data or {}).get("items", []) if is_list else [data]
    return errors + [e for value in values for e in _check(answer_model, value, f"response {where}")]
