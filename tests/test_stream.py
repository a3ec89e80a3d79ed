"""StreamClient (brokers/stream.py) against a small loopback websocket server: frames, auth, heartbeat, reconnect."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web

from brokers.stream import Backoff, Socket, StreamAuthFailed, StreamClient, receive_text, ws_url
from tests.conftest import wait_until

FAST = Backoff(initial=0.02, maximum=0.1, jitter=0.1)


class EchoServer:
    """Sends `hello`, expects `auth <token>`, answers `ok`/`no`, then sends each queued frame; records pings."""

    def __init__(self) -> None:
        self.token = "good"
        self.sent: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.received: list[str] = []
        self.connections = 0
        self.sockets: list[web.WebSocketResponse] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self.sockets.append(ws)
        await ws.send_str("hello")
        auth = await ws.receive(timeout=5)
        if auth.type is not WSMsgType.TEXT or auth.data != f"auth {self.token}":
            await ws.send_str("no")
            await ws.close()
            return ws
        await ws.send_str("ok")

        async def reader() -> None:
            async for msg in ws:
                self.received.append(str(msg.data))

        task = asyncio.create_task(reader())
        try:
            while not ws.closed:
                try:
                    frame = await asyncio.wait_for(self.sent.get(), 0.05)
                except TimeoutError:
                    continue
                if frame is None:
                    break
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        finally:
            task.cancel()
            await ws.close()
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/websocket", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"ws://127.0.0.1:{self.runner.addresses[0][1]}/v1/websocket"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[EchoServer]:
    s = EchoServer()
    await s.start()
    yield s
    await s.stop()


def client(server: EchoServer, got: list[str], token: str = "good", **kw: object) -> StreamClient:
    async def authenticate(ws: Socket) -> None:
        assert await receive_text(ws, 2) == "hello"
        await ws.send_str(f"auth {token}")
        if await receive_text(ws, 2) != "ok":
            raise StreamAuthFailed("token refused")

    async def on_message(text: str) -> None:
        if text == "boom":
            raise RuntimeError("handler bug")
        got.append(text)

    return StreamClient("test", lambda: server.url, authenticate=authenticate, on_message=on_message,
                        backoff=FAST, connect_timeout=2, **kw)  # type: ignore[arg-type]


def test_ws_url_follows_the_rest_base() -> None:
    assert ws_url("https://paper-api.alpaca.markets", "/stream") == "wss://paper-api.alpaca.markets/stream"
    assert ws_url("https://demo.tradovateapi.com/v1/", "/websocket") == "wss://demo.tradovateapi.com/v1/websocket"
    assert ws_url("http://127.0.0.1:5000", "/stream") == "ws://127.0.0.1:5000/stream"


async def test_text_and_binary_frames_reach_the_handler_and_a_handler_bug_does_not_stop_it(
    server: EchoServer,
) -> None:
    got: list[str] = []
    stream = client(server, got)
    assert not stream.healthy()
    stream.start()
    try:
        await wait_until(stream.healthy, within=10)
        for frame in ("one", "boom", b"two", "three"):
            server.sent.put_nowait(frame)
        await wait_until(lambda: len(got) == 3, within=10)
        assert got == ["one", "two", "three"] and stream.healthy() and stream.connects == 1
    finally:
        await stream.stop()
    assert not stream.healthy()


async def test_reconnects_after_the_server_closes_and_reports_down_then_up(server: EchoServer) -> None:
    states: list[str] = []
    got: list[str] = []
    stream = client(server, got, on_up=lambda: states.append("up"), on_down=lambda: states.append("down"))
    stream.start()
    try:
        await wait_until(stream.healthy, within=10)
        server.sent.put_nowait(None)  # the server ends this connection
        await wait_until(lambda: stream.connects == 2 and stream.healthy(), within=10)
        server.sent.put_nowait("after")
        await wait_until(lambda: got == ["after"], within=10)
    finally:
        await stream.stop()
    assert states == ["up", "down", "up", "down"]
    assert server.connections == 2


async def test_auth_refused_is_logged_clearly_and_never_healthy(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    stream = client(server, [], token="bad")
    caplog.set_level(logging.ERROR, logger="brokers.stream")
    stream.start()
    try:
        await wait_until(lambda: server.connections >= 2, within=10)  # retried at the longest backoff
        assert not stream.healthy() and stream.auth_failed and stream.last_error == "token refused"
        assert "stream authentication refused: token refused; polling continues" in caplog.text
        assert stream.down_for() > 0
    finally:
        await stream.stop()


async def test_heartbeat_hook_runs_while_connected(server: EchoServer) -> None:
    async def beat(ws: Socket) -> None:
        await ws.send_str("[]")

    stream = client(server, [], heartbeat=beat, heartbeat_interval=0.05)
    stream.start()
    try:
        await wait_until(lambda: server.received.count("[]") >= 3, within=10)
    finally:
        await stream.stop()


async def test_silent_connection_is_dropped_after_idle_timeout(server: EchoServer) -> None:
    stream = client(server, [], idle_timeout=0.2)
    stream.start()
    try:
        await wait_until(lambda: stream.connects >= 2, within=10)  # nothing was sent: it reconnected
        assert "TimeoutError" in (stream.last_error or "") or stream.healthy()
    finally:
        await stream.stop()


async def test_server_down_is_retried_with_bounded_backoff(server: EchoServer) -> None:
    url = server.url
    await server.stop()
    stream = client(server, [])
    stream.start()
    try:
        await asyncio.sleep(0.3)
        assert not stream.healthy() and stream.last_error is not None
        server.url = url
        port = int(url.split(":")[2].split("/")[0])
        app = web.Application()
        app.router.add_get("/v1/websocket", server.handle)
        server.runner = web.AppRunner(app, shutdown_timeout=1.0)
        await server.runner.setup()
        await web.TCPSite(server.runner, "127.0.0.1", port).start()
        await wait_until(stream.healthy, within=10)  # maximum backoff 0.1 s: back quickly
    finally:
        await stream.stop()


def test_backoff_is_bounded_with_jitter() -> None:
    b = Backoff(initial=1, maximum=8, jitter=0.25)
    assert 1 <= b.delay(1) <= 1.25 and 2 <= b.delay(2) <= 2.5
    assert all(8 <= b.delay(n) <= 10 for n in range(4, 40))
