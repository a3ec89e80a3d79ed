"""Authenticated calls to one Tradovate user on `brokers.http.HttpBroker`: access tokens, renewal, p-ticket waits.

- Auth: `/auth/accesstokenrequest` (wrong credentials are HTTP 200 with `errorText`), renewed with
  `/auth/renewaccesstoken` before `token_renew_seconds` or expiry, and by a fresh login on a 401.
- p-ticket throttling: any HTTP 200 `{p-ticket, p-time}` answer is waited out (bounded by the retry policy's
  `max_retry_after`) and the same request is sent again carrying the ticket; a captcha demand fails clearly.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from brokers.base import AuthenticationFailed, BrokerError, BrokerUnavailable, OrderNotFound
from brokers.http import HttpBroker, RateLimiter, RetryPolicy, Throttled
from brokers.tradovate.models import AccessToken, parse, parse_time
from config.brokers import TradovateSettings

log = logging.getLogger(__name__)

MAX_TICKETS = 5  # p-tickets honoured for one request before giving up
TICKET_MARGIN = 0.05  # seconds added to p-time so the retry is not early (an early retry is penalised)
EXPIRY_MARGIN = timedelta(seconds=60)


def decode(response: httpx.Response, what: str) -> Any:
    """JSON body with exact decimals (prices as Decimal, never float)."""
    if not response.content:
        return None
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        raise BrokerUnavailable(f"{what}: answer is not JSON") from None


class TradovateSession:
    """Authenticated calls to one Tradovate user: token request/renewal, re-login on 401, p-ticket waits.

    `self.http` carries the 401 hook; token calls go through `self.auth_http` (same client, limiter and
    policy, no hook) so a refused login cannot recurse into another login.
    """

    def __init__(
        self,
        settings: TradovateSettings,
        client: httpx.AsyncClient | None,
        *,
        clock: Callable[[], datetime],
        retry: RetryPolicy | None,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.settings, self.clock, self._sleep = settings, clock, sleep
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(settings.timeout_seconds))
        common: dict[str, Any] = {
            "timeout": settings.timeout_seconds,
            "auth_headers": self._auth_headers,
            "rate_limiter": RateLimiter.per_minute(settings.rate_limit_per_minute),
            "retry": retry or RetryPolicy(retries=settings.max_retries),
            "client": self.client,
            "sleep": sleep,
        }
        self.http = HttpBroker("tradovate", settings.base_url, on_unauthorized=self._reauthenticate, **common)
        self.auth_http = HttpBroker("tradovate", settings.base_url, **common)
        self.token: str | None = None
        self.user_id: int | None = None
        self._token_at: datetime | None = None
        self._token_expires: datetime | None = None
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    def healthy(self) -> bool:
        return self.token is not None and self.http.healthy()

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _credentials(self) -> dict[str, Any]:
        s = self.settings
        return {"name": s.username, "password": s.password.get_secret_value(), "appId": s.app_id,
                "appVersion": s.app_version, "cid": str(s.cid), "sec": s.sec.get_secret_value(),
                "deviceId": s.device_id}

    def _set_token(self, data: Any, what: str) -> None:
        token = parse(AccessToken, data, what)
        self.token, self._token_at = token.accessToken, self.clock()
        self._token_expires = parse_time(token.expirationTime)
        self.user_id = token.userId if token.userId is not None else self.user_id

    async def login(self) -> None:
        what = "tradovate login"
        data = await self.call("POST", "/auth/accesstokenrequest", json=self._credentials(), safe=True, what=what,
                               auth=False)
        if not isinstance(data, dict) or data.get("errorText") or not data.get("accessToken"):
            message = data.get("errorText") if isinstance(data, dict) else None
            self.token = None
            raise AuthenticationFailed(
                f"tradovate refused the login of user {self.settings.username!r}: {message or 'no access token'}"
            )
        self._set_token(data, what)

    async def renew(self) -> None:
        what = "tradovate token renewal"
        try:
            data = await self.call("GET", "/auth/renewaccesstoken", what=what, auth=False)
        except AuthenticationFailed:  # already expired: only a new login helps
            data = None
        if isinstance(data, dict) and data.get("accessToken") and not data.get("errorText"):
            self._set_token(data, what)
        else:
            await self.login()

    def _renew_due(self) -> bool:
        if self.token is None or self._token_at is None:
            return True
        now = self.clock()
        if now >= self._token_at + timedelta(seconds=self.settings.token_renew_seconds):
            return True
        return self._token_expires is not None and now >= self._token_expires - EXPIRY_MARGIN

    async def ensure_token(self) -> None:
        if not self._renew_due():
            return
        async with self._lock:
            if self._renew_due():
                await (self.login() if self.token is None else self.renew())

    async def _reauthenticate(self) -> bool:
        """The 401 hook of `self.http`: log in again unless another task already did."""
        stale = self.token
        async with self._lock:
            if self.token == stale:
                self.token = None
                await self.login()
        return True

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        safe: bool | None = None,
        what: str,
        not_found: type[BrokerError] = OrderNotFound,
        auth: bool = True,
    ) -> Any:
        """One logical call: token first, then send; p-ticket answers are waited out and resent with the ticket.

        A p-ticket answer means the request was not processed, so resending is safe even for placements.
        TODO(http.py): this loop could become a response hook of HttpBroker.
        """
        http = self.http if auth else self.auth_http
        if auth:
            await self.ensure_token()
        wait = 0.0
        for _ in range(MAX_TICKETS + 1):
            response = await http.request(method, path, params=params, json=json, safe=safe, what=what,
                                          not_found=not_found)
            data = decode(response, what)
            if not (isinstance(data, dict) and "p-ticket" in data):
                return data
            ticket, wait = str(data["p-ticket"]), float(data.get("p-time") or 0)
            if data.get("p-captcha"):
                raise BrokerUnavailable(f"{what}: Tradovate demands a captcha (too many requests or logins); "
                                        "log in once on the Tradovate web site to clear it")
            if wait > http.retry.max_retry_after:
                raise Throttled(f"{what}: Tradovate throttled us for {wait:g}s (p-ticket)", wait)
            log.info("%s: throttled by Tradovate, retrying with its p-ticket in %.1fs", what, wait)
            await self._sleep(wait + TICKET_MARGIN)
            if method.upper() == "GET":
                params = {**(params or {}), "p-ticket": ticket}
            else:
                json = {**(json or {}), "p-ticket": ticket}
        raise Throttled(f"{what}: still throttled after {MAX_TICKETS} p-tickets", wait)

    async def get(self, path: str, what: str, not_found: type[BrokerError] = OrderNotFound, **params: Any) -> Any:
        return await self.call("GET", path, params=params or None, what=what, not_found=not_found)
