"""`/stop SYMBOL atr K [PERIOD] [TIMEFRAME] [account]` and `/exit-after SYMBOL 30m|3 bars of 5m|at 15:55 [account]`.

Parsing and the choice of account only; the exit is set through `ChatBackend.set_stop` / `exit_after`. The
account may be left out when exactly one account holds the symbol.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import get_args

from daemon.chat.replies import ChatBackend
from daemon.domain import ChatReply, ChatRequest
from daemon.shapes import AtrOffset, Timeframe, parse_time_exit

STOP_USAGE = "Usage: /stop SYMBOL atr K [PERIOD] [TIMEFRAME] [account], e.g. /stop ES1! atr 2"
EXIT_USAGE = "Usage: /exit-after SYMBOL 30m|2h|3 bars of 5m|at 15:55 [account], e.g. /exit-after ES1! 30m"


class ExitInput(ValueError):
    """Chat text these commands cannot act on; the message is shown to the user."""


async def _account(backend: ChatBackend, symbol: str, words: list[str]) -> tuple[str, list[str]]:
    """The account named last in `words` (and the words before it), else the one account holding `symbol`."""
    names = {a.name for a in await backend.accounts()}
    if words and words[-1] in names:
        return words[-1], words[:-1]
    holding = sorted({p.account for p in await backend.positions(None) if p.symbol == symbol and p.quantity})
    if not holding:
        raise ExitInput(f"No {symbol} position on any account.")
    if len(holding) > 1:
        raise ExitInput(f"{symbol} is held on {', '.join(holding)}: name the account last.")
    return holding[0], words


def _symbol(request: ChatRequest, usage: str) -> str:
    if len(request.args) < 2:
        raise ExitInput(usage)
    return request.args[0].split(":")[-1].upper()


async def stop(backend: ChatBackend, request: ChatRequest) -> ChatReply:
    symbol = _symbol(request, STOP_USAGE)
    account, words = await _account(backend, symbol, request.args[1:])
    if len(words) < 2 or words[0].lower() != "atr" or len(words) > 4:
        raise ExitInput(STOP_USAGE)
    try:
        k = Decimal(words[1])
    except InvalidOperation:
        raise ExitInput(f"K must be a number of ATRs; got {words[1]!r}. {STOP_USAGE}") from None
    period = next((int(w) for w in words[2:] if w.isdigit()), 14)
    timeframe = next((w.lower() for w in words[2:] if not w.isdigit()), "5m")
    if not k.is_finite() or k <= 0 or not 1 <= period <= 500 or timeframe not in get_args(Timeframe):
        raise ExitInput(f"K above 0, PERIOD 1-500, TIMEFRAME one of {', '.join(get_args(Timeframe))}. {STOP_USAGE}")
    try:
        done = await backend.set_stop(account, symbol, AtrOffset(atr=k, period=period, timeframe=timeframe),
                                      request.actor)
    except ValueError as exc:
        raise ExitInput(f"Stop not moved: {exc}") from None
    return ChatReply(text=f"{account}: {done}")


async def exit_after(backend: ChatBackend, request: ChatRequest) -> ChatReply:
    symbol = _symbol(request, EXIT_USAGE)
    account, words = await _account(backend, symbol, request.args[1:])
    text = " ".join(words)
    try:
        at = text[3:] if text.lower().startswith("at ") else None
        spec = parse_time_exit(None if at is not None else text, at)
    except ValueError as exc:
        raise ExitInput(f"{exc}. {EXIT_USAGE}") from None
    if spec is None:
        raise ExitInput(EXIT_USAGE)
    try:
        done = await backend.exit_after(account, symbol, spec, request.actor)
    except ValueError as exc:
        raise ExitInput(f"No time exit armed: {exc}") from None
    return ChatReply(text=done)
