"""What the broker stand-ins' websocket servers share: each client's JSON text frames, its writer's end,
and the set of subscribed connections with their outgoing queues.

A frame that is not JSON is recorded as a contract violation (our adapter sent it) and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web


async def json_frames(ws: web.WebSocketResponse, violations: list[str], name: str,
                      **loads: Any) -> AsyncIterator[Any]:
    """Each text frame the client sends, decoded (`loads` passed to `json.loads`), until it closes."""
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue
        try:
            frame = json.loads(msg.data, **loads)
        except ValueError:
            violations.append(f"{name}: frame is not JSON: {msg.data[:100]!r}")
            continue
        yield frame


async def stop_writer(writer: asyncio.Task[None] | None) -> None:
    """End a connection's writer task (if it was started), whatever it was doing."""
    if writer is not None:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer


class Subscribers:
    """Connections subscribed to a stand-in's stream, each with the queue of frames it is yet to be sent."""

    def __init__(self) -> None:
        self._subscribed: dict[web.WebSocketResponse, asyncio.Queue[str]] = {}

    async def drop(self) -> None:
        for ws in list(self._subscribed):
            await ws.close()
        self._subscribed.clear()

    def subscribed(self) -> int:
        return len(self._subscribed)

    def broadcast(self, frame: str) -> None:
        for queue in self._subscribed.values():
            queue.put_nowait(frame)
