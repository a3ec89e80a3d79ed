"""Whether an equity order opens a holding or closes one, for brokers whose order names that effect.

Stock brokers that take "buy to open" / "buy to cover" style instructions need the effect of each order
on the signed holding: a buy against a short position closes it, against none or a long one opens (adds
to) a long; a sell mirrors that. An order that would go through zero (cover a short and buy more, or
sell a long and short more) is refused before anything is sent: these brokers take it as two orders.
"""

from __future__ import annotations

from decimal import Decimal

from brokers.base import OrderRejected
from daemon.domain import Side


def closes(venue: str, side: Side, quantity: Decimal, held: Decimal) -> bool:
    """True when `quantity` on `side` closes (part of) the signed holding `held`, False when it opens one;
    `OrderRejected` (naming `venue`) when it would flip the holding through zero."""
    if side is Side.BUY:
        if held >= 0:
            return False
        if quantity > -held:
            raise OrderRejected(f"{venue} cannot cover {-held:f} short and buy {quantity + held:f} more in one "
                                "order; close the short first")
        return True
    if held <= 0:
        return False
    if quantity > held:
        raise OrderRejected(f"{venue} cannot sell {held:f} long and short {quantity - held:f} more in one order; "
                            "close the long first")
    return True
