"""tastytrade's account streamer (websocket): connect with the session's token, heartbeats, Order notifications.

No published contract describes it (`contracts/tastytrade` covers REST only), so the reference is the
tastytrade SDK (tastyware/tastytrade, `tastytrade/streamer.py`, `AlertStreamer`, v13): every request is
`{"auth-token", "action", "value"?, "request-id", "source"}` and is answered `{"status": "ok" | "error",
"action", "request-id", "message"?}`. A session sends `connect` with the account number as `value` and
waits (bounded) for its answer; an `error` answer is a refusal (`StreamAuthFailed`). Then `heartbeat` goes
out every `HEARTBEAT` seconds (tastytrade drops a silent connection; older SDK versions sent one every
10 s), and notifications arrive as `{"type", "data", "timestamp"}`: `type` `Order` carries a whole order in
the REST shape (legs with their fills), which `on_order` gets. Other types (balances, positions) are not
needed: positions and balances are read when asked.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from brokers.base import AuthenticationFailed, BrokerUnavailable
from brokers.stream import Backoff, Socket, StreamAuthFailed, StreamClient, StreamClosed, receive_text
from brokers.tastytrade.session import TastytradeSession

HEARTBEAT = 20.0  # seconds between heartbeats


def account_stream(
    name: str,
    url: str,
    session: TastytradeSession,
    account_number: Callable[[], str | None],
    on_order: Callable[[dict[str, Any]], Awaitable[None]],
    on_change: Callable[[], None],
    backoff: Backoff | None,
) -> StreamClient:
    """The account streamer of one account (module docstring)."""
    ids = itertools.count(1)

    async def request(ws: Socket, action: str, value: Any = None) -> int:
        request_id = next(ids)
        try:
            token = await session.auth_token()
        except AuthenticationFailed as exc:
            raise StreamAuthFailed(exc.reason) from None
        except BrokerUnavailable as exc:
            raise StreamClosed(exc.reason) from None
        message: dict[str, Any] = {"auth-token": token, "action": action,
                                   "request-id": request_id, "source": session.agent}
        if value is not None:
            message["value"] = value
        await ws.send_str(json.dumps(message))
        return request_id

    async def authenticate(ws: Socket) -> None:
        number = account_number()
        if not number:
            raise StreamClosed("the account is not picked yet")  # connect() picks it before the stream starts
        request_id = await request(ws, "connect", [number])
        while True:
            answer = json.loads(await receive_text(ws, session.settings.timeout_seconds))
            if isinstance(answer, dict) and answer.get("request-id") == request_id:
                break
        if answer.get("status") != "ok":
            raise StreamAuthFailed(f"tastytrade refused the account streamer: {answer.get('message') or answer}"
                                   [:200])

    async def heartbeat(ws: Socket) -> None:
        await request(ws, "heartbeat")

    async def on_message(text: str) -> None:
        message = json.loads(text)
        if isinstance(message, dict) and message.get("type") == "Order" and isinstance(message.get("data"), dict):
            await on_order(message["data"])

    return StreamClient(
        name, lambda: url, authenticate=authenticate, on_message=on_message, heartbeat=heartbeat,
        heartbeat_interval=HEARTBEAT, idle_timeout=HEARTBEAT * 6, connect_timeout=session.settings.timeout_seconds,
        backoff=backoff, on_up=on_change, on_down=on_change,
    )
