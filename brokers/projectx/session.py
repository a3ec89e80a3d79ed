"""Authenticated calls to the ProjectX Gateway: the bearer token (login, renewal, re-login on 401) and answer checks.

Everything is a JSON POST with a bearer token from `/api/Auth/loginKey`; the token is renewed with
`/api/Auth/validate` once it is `token_renew_seconds` old, and by a fresh login when the gateway answers 401.
Business failures come back as HTTP 200 with `success: false`; they become `brokers.base` errors carrying
the gateway's `errorMessage`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from brokers.base import AuthenticationFailed, BrokerError, BrokerUnavailable
from brokers.http import HttpBroker, RateLimiter, RetryPolicy
from brokers.projectx import models as px
from config.brokers import ProjectXSettings

log = logging.getLogger(__name__)

E = TypeVar("E", bound=px.Envelope)


class ProjectXSession:
    """One signed-in gateway user; `on_token` hears every new token (the user hub reconnects with it)."""

    def __init__(
        self, name: str, settings: ProjectXSettings, client: httpx.AsyncClient | None, *,
        clock: Callable[[], datetime], sleep: Callable[[float], Awaitable[None]], retry: RetryPolicy | None,
        on_token: Callable[[str], None],
    ) -> None:
        self.name, self.settings, self.clock, self._on_token = name, settings, clock, on_token
        common: dict[str, Any] = dict(
            timeout=settings.timeout_seconds, auth_headers=self._auth_headers, sleep=sleep,
            rate_limiter=RateLimiter.per_minute(settings.rate_limit_per_minute),
            retry=retry or RetryPolicy(retries=settings.max_retries))
        self.http = HttpBroker("projectx", settings.base_url, on_unauthorized=self._relogin, client=client,
                               **common)
        # Login and renewal go through their own HttpBroker (same client and budget) without the 401 hook.
        self._auth = HttpBroker("projectx", settings.base_url, client=self.http.client, **common)
        self.token: str | None = None
        self._token_at: datetime | None = None
        self._lock = asyncio.Lock()

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def post(
        self, path: str, body: Mapping[str, Any] | None, model: type[E], *, what: str, safe: bool,
        errors: Mapping[int, type[BrokerError]] | None = None, default: type[BrokerError] = BrokerError,
        via: HttpBroker | None = None,
    ) -> E:
        """One gateway call: token fresh, POST, answer validated, `success: false` raised as a typed error."""
        if via is None:
            await self.ensure_token()
        data = await (via or self.http).json("POST", path, json=body, safe=safe, what=what)
        try:
            answer = model.model_validate(data)
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
            raise BrokerUnavailable(f"{what}: answer not understood ({detail})") from None
        if not answer.success:
            code, message = answer.error_code, answer.error_message or "refused"
            raise (errors or {}).get(code or -1, default)(f"{what}: {message} (errorCode {code})")
        return answer

    async def login(self) -> None:
        answer = await self.post(
            "/api/Auth/loginKey",
            {"userName": self.settings.username, "apiKey": self.settings.api_key.get_secret_value()},
            px.LoginAnswer, what="projectx login", safe=True, default=AuthenticationFailed, via=self._auth,
        )
        if not answer.token:
            raise AuthenticationFailed("projectx login: no token in the answer")
        self._set_token(answer.token)

    def _set_token(self, token: str) -> None:
        self.token, self._token_at = token, self.clock()
        self._on_token(token)

    def _fresh(self) -> bool:
        at = self._token_at
        return at is not None and (self.clock() - at).total_seconds() < self.settings.token_renew_seconds

    async def ensure_token(self) -> None:
        """Log in if needed; renew with /api/Auth/validate before the 24 h token runs out."""
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():
                return  # renewed while we waited
            if self.token is None:
                await self.login()
                return
            try:
                answer = await self.post("/api/Auth/validate", None, px.ValidateAnswer, what="projectx renew token",
                                         safe=True, via=self._auth)
                self._set_token(answer.new_token or self.token)
            except BrokerUnavailable:
                raise
            except BrokerError as exc:  # refused (expired, revoked): a fresh login
                log.info("%s: token renewal refused (%s); logging in again", self.name, exc.reason)
                await self.login()

    async def _relogin(self) -> bool:
        """The gateway answered 401 (token expired or revoked): log in again, once for concurrent callers."""
        stale = self.token
        async with self._lock:
            if self.token != stale:
                return True  # another caller already logged in
            try:
                await self.login()
            except BrokerError as exc:
                log.warning("%s: login after 401 failed: %s", self.name, exc.reason)
                return False
        return True
