"""Shared plumbing of the broker stand-ins: fault injection, the loopback aiohttp server, JSON answers.

`Faults` holds knobs applied to the next matching requests (`fail_next`, `delay_next`, `drop_next`, the last
resetting the connection, optionally after the request changed the state). `StandinServer` runs an aiohttp
app on 127.0.0.1 (ephemeral port) and collects contract violations. `dumps`/`json_response` render Decimal as
JSON numbers. Used by the ProjectX and Tradovate stand-ins.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self

from aiohttp import web

from tests.standins.contract import assert_no_violations

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dumps(obj: Any) -> str:
    """JSON with Decimal rendered as a JSON number (the spec's `number`/`decimal`)."""

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    return json.dumps(obj, default=default)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json")


@dataclass
class _Rule:
    kind: str  # "status" | "delay" | "drop"
    remaining: int
    path: str | None
    status: int = 500
    seconds: float = 0.0
    after_handling: bool = False
    body: str = ""


class Faults:
    """Fault knobs applied to the next matching requests (path relative to the API base, or any path)."""

    def __init__(self, base_path: str = "") -> None:
        self.base_path = base_path
        self._rules: list[_Rule] = []

    def fail_next(self, n: int = 1, status: int = 500, path: str | None = None, body: str = "") -> None:
        """The next `n` requests (to `path`, if given) get `status` without reaching the API."""
        self._rules.append(_Rule("status", n, path, status=status, body=body))

    def delay_next(
        self, seconds: float, n: int = 1, path: str | None = None, after_handling: bool = False
    ) -> None:
        """Delay the next `n` responses; `after_handling`: the request is processed first (state changes)."""
        self._rules.append(_Rule("delay", n, path, seconds=seconds, after_handling=after_handling))

    def drop_next(self, n: int = 1, path: str | None = None, after_handling: bool = True) -> None:
        """Reset the connection instead of answering; with `after_handling` the state has already changed."""
        self._rules.append(_Rule("drop", n, path, after_handling=after_handling))

    def clear(self) -> None:
        self._rules.clear()

    def _take(self, path: str) -> _Rule | None:
        rel = path[len(self.base_path) :] if self.base_path and path.startswith(self.base_path) else path
        for rule in self._rules:
            if rule.remaining > 0 and (rule.path is None or rule.path.lower() == rel.lower()):
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
                return rule
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rule = self._take(request.path)
        if rule is None:
            return await handler(request)
        if rule.kind == "status":
            return web.Response(status=rule.status, text=rule.body)
        if rule.kind == "delay":
            if not rule.after_handling:
                await asyncio.sleep(rule.seconds)
                return await handler(request)
            response = await handler(request)
            await asyncio.sleep(rule.seconds)
            return response
        response = await handler(request) if rule.after_handling else web.Response(status=500)
        if request.transport is not None:
            request.transport.abort()
        return response


class StandinServer:
    """Runs an aiohttp app on 127.0.0.1; `.url` is the API base, `.violations` the contract violations."""

    url_suffix = ""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def build_app(self) -> web.Application:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.url_suffix}"

    async def start(self, port: int = 0) -> Self:
        """Start listening (`port=0`: ephemeral; pass the old `.port` to come back after `stop()`)."""
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def assert_no_violations(self) -> None:
        assert_no_violations(self.violations)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
