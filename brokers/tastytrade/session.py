"""The tastytrade adapter's authenticated HTTP session: OAuth or session login, renewal, User-Agent, the envelope.

Two logins, as tastytrade offers them: OAuth (`client_secret` + the user's `refresh_token`, exchanged at
`POST /oauth/token` for a 15-minute access token sent as `Bearer`), or the legacy `POST /sessions`
(username + password, then the single-use `remember-token` it hands back, for a session token sent bare).
Either is renewed a minute before it expires, or at once on a 401. Every request carries the
`User-Agent: traderd/<version>` tastytrade requires. A login tastytrade refuses is not tried again in
this process: repeated failed logins block the IP for hours, so the session stays refused (every call
raises `AuthenticationFailed` with what to fix, `healthy()` is False) until the daemon is restarted with
corrected credentials. Answers are read out of their `{data: ...}` envelope.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from brokers.base import AuthenticationFailed, BrokerUnavailable
from brokers.http import HttpBroker, RateLimiter, RetryPolicy, broker_message
from brokers.tastytrade import models as tm
from config.brokers import TastytradeSettings

log = logging.getLogger(__name__)
RENEW_MARGIN = timedelta(seconds=60)
SESSION_HOURS = 24  # a legacy session token's life when the answer gives none


def user_agent(settings: TastytradeSettings) -> str:
    if settings.user_agent:
        return settings.user_agent
    try:
        return f"traderd/{version('traderd')}"
    except PackageNotFoundError:
        return "traderd/0"


class TastytradeSession:
    def __init__(
        self,
        account: str,
        settings: TastytradeSettings,
        clock: Callable[[], datetime],
        *,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.account, self.settings, self.clock = account, settings, clock
        self.oauth = settings.refresh_token is not None and settings.client_secret is not None
        self.agent = user_agent(settings)
        self.token: str | None = None
        self.expires_at: datetime | None = None
        self.remember: str | None = None  # legacy login: the single-use remember-token of the last session
        self.refused: str | None = None  # set once tastytrade refused the login: no further attempt
        self.logins = 0
        self._lock = asyncio.Lock()
        self.http = HttpBroker(
            "tastytrade", settings.base_url, timeout=settings.timeout_seconds, auth_headers=self._headers,
            on_unauthorized=self._on_unauthorized, rate_limiter=RateLimiter.per_minute(settings.rate_limit_per_minute),
            retry=retry or RetryPolicy(retries=settings.max_retries), client=http, sleep=sleep,
        )

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.agent, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}" if self.oauth else self.token
        return headers

    async def auth_token(self) -> str:
        """The token as the `Authorization` header carries it (the account streamer's `auth-token`), fresh."""
        await self.ensure()
        return self._headers()["Authorization"]

    def healthy(self) -> bool:
        return self.refused is None and self.http.healthy()

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- login -------------------------------------------------------------------------------------------

    def _refuse(self, why: str) -> AuthenticationFailed:
        how = "client_secret and refresh_token" if self.oauth else "username and password"
        self.refused = (f"tastytrade {self.account}: login refused ({why}); check {how} in "
                        f"[accounts.{self.account}.tastytrade] and restart: no further login is tried, as "
                        "repeated failed logins block the address for hours")
        log.error("%s", self.refused)
        return AuthenticationFailed(self.refused)

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """A login request: no Authorization header, no retry (a login is tried once at a time)."""
        try:
            return await self.http.client.post(f"{self.http.base_url}{path}", json=body, timeout=self.http.timeout,
                                               headers={"User-Agent": self.agent, "Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(f"tastytrade login: cannot reach {self.http.base_url} "
                                    f"({type(exc).__name__})") from None

    async def _oauth(self) -> None:
        assert self.settings.refresh_token is not None and self.settings.client_secret is not None
        response = await self._post("/oauth/token", {
            "grant_type": "refresh_token", "refresh_token": self.settings.refresh_token.get_secret_value(),
            "client_secret": self.settings.client_secret.get_secret_value()})
        if response.status_code in (400, 401, 403):
            raise self._refuse(f"HTTP {response.status_code}: {broker_message(response)}")
        if not response.is_success:
            raise BrokerUnavailable(f"tastytrade login: HTTP {response.status_code}: {broker_message(response)}")
        try:
            answer = response.json()
            self.token, lifetime = str(answer["access_token"]), float(answer.get("expires_in") or 900)
        except (ValueError, KeyError, TypeError):
            raise BrokerUnavailable("tastytrade login: the token answer is unreadable") from None
        self.expires_at = self.clock() + timedelta(seconds=lifetime)

    async def _session(self) -> None:
        assert self.settings.username is not None and self.settings.password is not None
        response = None
        if self.remember is not None:
            remember, self.remember = self.remember, None  # single use, whatever the answer
            response = await self._post("/sessions", {"login": self.settings.username, "remember-token": remember,
                                                      "remember-me": True})
            if response.status_code in (400, 401, 403):
                log.info("tastytrade %s: remember-token refused; logging in with the password", self.account)
                response = None
        if response is None:
            response = await self._post("/sessions", {"login": self.settings.username, "remember-me": True,
                                                      "password": self.settings.password.get_secret_value()})
            if response.status_code in (400, 401, 403):
                raise self._refuse(f"HTTP {response.status_code}: {broker_message(response)}")
        if not response.is_success:
            raise BrokerUnavailable(f"tastytrade login: HTTP {response.status_code}: {broker_message(response)}")
        try:
            data = tm.payload(response.json())
            self.token, self.remember = str(data["session-token"]), data.get("remember-token")
        except (ValueError, KeyError, TypeError):
            raise BrokerUnavailable("tastytrade login: the session answer is unreadable") from None
        self.expires_at = tm.parse_time(data.get("session-expiration")) or self.clock() + timedelta(
            hours=SESSION_HOURS)

    def _fresh(self) -> bool:
        return self.token is not None and self.expires_at is not None and \
            self.clock() + RENEW_MARGIN < self.expires_at

    async def login(self, *, force: bool = False) -> None:
        """Log in, or renew a token near its end; `force`: the token was refused, renew it whatever its age.
        Callers wait for each other, so a token that expires under many callers is renewed once."""
        async with self._lock:
            if self.refused is not None:
                raise AuthenticationFailed(self.refused)
            if not force and self._fresh():
                return
            await (self._oauth() if self.oauth else self._session())
            self.logins += 1
            log.info("tastytrade %s: logged in until %s", self.account, self.expires_at)

    async def ensure(self) -> None:
        if self.refused is not None:
            raise AuthenticationFailed(self.refused)
        if not self._fresh():
            await self.login()

    async def _on_unauthorized(self) -> bool:
        """A 401: the token was refused before its time (revoked, clock skew); log in once and resend."""
        await self.login(force=True)
        return True

    # -- calls -------------------------------------------------------------------------------------------

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        await self.ensure()
        return await self.http.request(method, path, **kwargs)

    async def data(self, method: str, path: str, **kwargs: Any) -> Any:
        """The `data` of a JSON answer (BrokerUnavailable when the broker answers something else)."""
        response = await self.call(method, path, **kwargs)
        try:
            return tm.payload(response.json())
        except ValueError as exc:
            raise BrokerUnavailable(f"tastytrade {method} {path}: {exc}") from None

    async def items(self, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        """The `data.items` of a JSON list answer."""
        response = await self.call(method, path, **kwargs)
        try:
            return tm.items(response.json())
        except ValueError as exc:
            raise BrokerUnavailable(f"tastytrade {method} {path}: {exc}") from None
