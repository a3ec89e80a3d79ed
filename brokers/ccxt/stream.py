"""The ccxt adapter's account stream: ccxt.pro's `watch_my_trades` and `watch_orders` as a reconnecting stream.

ccxt.pro (shipped in the ccxt package) owns the websocket. For Binance spot it connects to the WebSocket
API (`urls['api']['ws']['ws-api']['spot']`; `stream_url` replaces it), subscribes to the user data stream
with a signed `userDataStream.subscribe.signature` request and parses the `executionReport` events it is
sent into ccxt orders and trades. `UserStream` gives that the lifecycle of `brokers.stream`'s streams
(`brokers.updates.Feed` starts it and reads `healthy()`): a session authenticates within
`connect_timeout` (a refused key is `StreamAuthFailed`), then both watchers feed one queue read by one
consumer, so each event's trade is handled before the order update it caused (ccxt resolves the trade
first) and a fill reaches the engine before the status that says it happened. A failed watcher (drop,
error) ends the session; its websocket clients are closed so that the next session dials and subscribes
afresh, after the shared backoff. Polling carries on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import ccxt.async_support as ccxt

from brokers.stream import Backoff, ReconnectingStream, StreamAuthFailed, StreamClosed

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], Awaitable[None]]


def refusal(exchange_id: str, exc: BaseException) -> Exception:
    """What a failed subscription means: the exchange's answer refused it (`StreamAuthFailed`: a wrong or
    banned key, which ccxt raises as AuthenticationError, or as DDoSProtection once REST calls have
    succeeded with the key), or the connection failed (`StreamClosed`). ccxt 4.5 may raise a KeyError from
    its own clean-up after the refusal; the refusal is then its context."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ccxt.ExchangeError | ccxt.DDoSProtection):
            return StreamAuthFailed(f"{exchange_id} refused the user data stream: {seen}"[:200])
        if isinstance(seen, ccxt.NetworkError):
            return StreamClosed(f"{exchange_id}: {seen}"[:200])
        seen = seen.__cause__ or seen.__context__
    return StreamClosed(f"{exchange_id}: subscription failed ({type(exc).__name__}: {exc})"[:200])


class UserStream(ReconnectingStream):
    """ccxt.pro's order and trade streams of one account (module docstring)."""

    def __init__(self, name: str, exchange: Any, *, on_trade: Handler, on_order: Handler,
                 connect_timeout: float = 10.0, backoff: Backoff | None = None,
                 on_up: Callable[[], None] | None = None, on_down: Callable[[], None] | None = None) -> None:
        super().__init__(name, connect_timeout=connect_timeout, backoff=backoff, on_up=on_up, on_down=on_down)
        self.exchange = exchange
        self._handlers = {"trade": on_trade, "order": on_order}
        self._ended: asyncio.Event | None = None

    async def drop(self) -> None:
        if self._ended is not None:
            self._ended.set()

    async def _run(self) -> None:
        await self._loop(self._session)

    async def _session(self) -> None:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._ended = ended = asyncio.Event()
        watchers: list[asyncio.Task[Any]] = []
        try:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await self.exchange.authenticate({"type": "spot"})
            except (ccxt.BaseError, KeyError) as exc:
                raise refusal(self.exchange.id, exc) from None
            self._authenticated(str(self.exchange.urls["api"]["ws"]["ws-api"].get("spot")))
            watchers = [asyncio.create_task(self._watch(self.exchange.watch_my_trades, "trade", queue)),
                        asyncio.create_task(self._watch(self.exchange.watch_orders, "order", queue))]
            ending = asyncio.create_task(ended.wait())
            watchers.append(ending)
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, ending}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    raise StreamClosed("connection dropped on request")
                kind, item = getter.result()
                if kind == "error":
                    raise StreamClosed(f"{type(item).__name__}: {item}"[:300])
                try:
                    await self._handlers[kind](item)
                except Exception:
                    log.exception("%s: stream %s handler failed on %.200s", self.name, kind, item)
        finally:
            for task in watchers:
                task.cancel()
            for task in watchers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):  # a fresh dial and subscription next time
                await asyncio.wait_for(self.exchange.close_ws_clients(), 2.0)

    @staticmethod
    async def _watch(watch: Callable[[], Awaitable[list[dict[str, Any]]]], kind: str,
                     queue: asyncio.Queue[tuple[str, Any]]) -> None:
        try:
            while True:
                for item in await watch():
                    queue.put_nowait((kind, item))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            queue.put_nowait(("error", exc))
