"""Sends one discord.py client's REST calls, gateway connection and webhook posts to a configured server.

discord.py keeps Discord's addresses in class attributes (`Route.BASE`, `DiscordWebSocket.DEFAULT_GATEWAY`);
changing those would move every client in the process. These helpers move one client (`rebase`) or one
webhook sender (`RebasedWebhookAdapter`, set in `discord.webhook.async_.async_context` around its calls).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import discord
import yarl
from discord.http import HTTPClient, Route
from discord.webhook.async_ import AsyncWebhookAdapter

DEFAULT_API_BASE = Route.BASE
DEFAULT_GATEWAY_HOST = "gateway.discord.gg"


def _rebased(route: Route, api_base: str) -> Route:
    if api_base != DEFAULT_API_BASE and route.url.startswith(Route.BASE):
        route.url = api_base + route.url[len(Route.BASE):]
    return route


class RebasedHTTPClient(HTTPClient):
    """discord.py's HTTP client, with REST calls sent to `api_base` and the gateway at `gateway`."""

    api_base: str = DEFAULT_API_BASE
    gateway: yarl.URL | None = None

    async def request(self, route: Route, **kwargs: Any) -> Any:
        return await super().request(_rebased(route, self.api_base), **kwargs)

    async def ws_connect(self, url: str, *, compress: int = 0) -> aiohttp.ClientWebSocketResponse:
        asked = yarl.URL(url)
        if self.gateway is not None and asked.host == DEFAULT_GATEWAY_HOST:  # the library's built-in default
            url = str(self.gateway.with_query(asked.query))
        return await super().ws_connect(url, compress=compress)


class RebasedWebhookAdapter(AsyncWebhookAdapter):
    """Interaction answers and webhook posts go through this adapter; it sends them to `api_base` too."""

    def __init__(self, api_base: str) -> None:
        super().__init__()
        self.api_base = api_base

    async def request(self, route: Route, session: aiohttp.ClientSession, **kwargs: Any) -> Any:
        return await super().request(_rebased(route, self.api_base), session, **kwargs)


def rebase(client: discord.Client, api_base: str, gateway: str | None = None) -> None:
    """Point one client at `api_base` (and `gateway`). The client builds its HTTP client itself and shares it
    with its connection state, so that one object changes class rather than being replaced."""
    client.http.__class__ = RebasedHTTPClient
    http: RebasedHTTPClient = client.http  # type: ignore[assignment]
    http.api_base, http.gateway = api_base.rstrip("/"), yarl.URL(gateway) if gateway else None
