"""Alpaca's `trade_updates` websocket: the stream client, its authentication and the events it carries.

Protocol (`wss://<host>/stream`, derived from `base_url`): the client sends `{"action": "authenticate",
"data": {"key_id", "secret_key"}}` and is answered on the `authorization` stream (`status: authorized`),
then sends `{"action": "listen", "data": {"streams": ["trade_updates"]}}` and waits for the `listening`
answer that grants it. Events arrive as `{"stream": "trade_updates", "data": {"event", "order", ...}}`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from brokers.stream import Backoff, Socket, StreamAuthFailed, StreamClient, receive_text, ws_url
from config.brokers import AlpacaSettings


def trade_stream(
    name: str,
    settings: AlpacaSettings,
    on_update: Callable[[dict[str, Any]], Awaitable[None]],
    on_change: Callable[[], None],
    backoff: Backoff | None,
) -> StreamClient:
    """The `trade_updates` stream: `on_update` gets each event's `data`; `on_change` hears it go up or down."""

    async def authenticate(ws: Socket) -> None:
        await ws.send_str(json.dumps({"action": "authenticate", "data": {
            "key_id": settings.key_id.get_secret_value(), "secret_key": settings.secret_key.get_secret_value()}}))
        answer = json.loads(await receive_text(ws, settings.timeout_seconds))
        data = answer.get("data") or {}
        if answer.get("stream") != "authorization" or data.get("status") != "authorized":
            raise StreamAuthFailed(f"alpaca refused the stream keys: {data.get('status') or answer}"[:200])
        await ws.send_str(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        while (ack := json.loads(await receive_text(ws, settings.timeout_seconds))).get("stream") != "listening":
            continue
        if "trade_updates" not in ((ack.get("data") or {}).get("streams") or []):
            raise StreamAuthFailed(f"alpaca did not grant the trade_updates stream: {ack}"[:200])

    async def on_message(text: str) -> None:
        message = json.loads(text)
        if isinstance(message, dict) and message.get("stream") == "trade_updates":
            await on_update(message["data"])

    return StreamClient(
        name, lambda: settings.stream_url or ws_url(settings.base_url, "/stream"),
        authenticate=authenticate, on_message=on_message, ws_heartbeat=20.0, idle_timeout=300.0,
        connect_timeout=settings.timeout_seconds, backoff=backoff, on_up=on_change, on_down=on_change,
    )
