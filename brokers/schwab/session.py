"""The Schwab adapter's authenticated HTTP session: access-token renewal, login-expiry warnings, two rate limits.

Access tokens last about 30 minutes and are renewed with the refresh token (OAuth `refresh_token` grant,
HTTP Basic with the app key and secret, through authlib) a minute before they expire, or at once on a
401. The refresh token dies `refresh_token_days` after the browser login: `warn_before_hours` before that
the session announces it once per threshold (a chat alert); once it is dead (by the clock, or because the
token endpoint refuses it) every call raises `AuthenticationFailed` telling the operator to run
`traderd auth schwab --account NAME`, and `healthy()` is False. A token file rewritten by that command is
picked up on the next call, without a restart. Order requests (place, replace, cancel) also wait for the
per-account order budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from brokers.base import AuthenticationFailed, BrokerUnavailable
from brokers.http import HttpBroker, RateLimiter, RetryPolicy
from brokers.schwab.tokens import SchwabTokens, TokenFile
from config.brokers import SchwabSettings

log = logging.getLogger(__name__)
RENEW_MARGIN = timedelta(seconds=60)


def login_hint(account: str) -> str:
    return f"run `traderd auth schwab --account {account}` to log in again"


class SchwabSession:
    def __init__(
        self,
        account: str,
        settings: SchwabSettings,
        tokens: TokenFile,
        clock: Callable[[], datetime],
        announce: Callable[[str], None],
        *,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.account, self.settings, self.file, self.clock, self.announce = account, settings, tokens, clock, announce
        self.tokens: SchwabTokens | None = None
        self.expired_reason: str | None = None  # set once the login is dead: nothing works until a new one
        self._lock = asyncio.Lock()
        self.http = HttpBroker(
            "schwab", settings.base_url, timeout=settings.timeout_seconds, auth_headers=self._headers,
            on_unauthorized=self._on_unauthorized, rate_limiter=RateLimiter.per_minute(settings.rate_limit_per_minute),
            retry=retry or RetryPolicy(retries=settings.max_retries), client=http, sleep=sleep,
        )
        self.order_limiter = RateLimiter.per_minute(settings.order_rate_limit_per_minute)

    def _headers(self) -> dict[str, str]:
        token = self.tokens.access_token if self.tokens else ""
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def healthy(self) -> bool:
        return self.expired_reason is None and self.http.healthy()

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- tokens ------------------------------------------------------------------------------------------

    def refresh_expires_at(self) -> datetime | None:
        return self.tokens.refresh_expires_at(self.settings.refresh_token_days) if self.tokens else None

    def _load(self) -> None:
        """Read the token file now, or again when `traderd auth schwab` rewrote it (a new login)."""
        if self.tokens is not None and not self.file.changed():
            return
        try:
            loaded = self.file.load()
        except ValueError as exc:
            raise AuthenticationFailed(f"schwab {self.account}: {exc}; {login_hint(self.account)}") from None
        if loaded is None:
            raise AuthenticationFailed(f"schwab {self.account}: no login yet (no {self.file.path.name} in the "
                                       f"state directory); {login_hint(self.account)}")
        if self.tokens is not None and loaded.refresh_token != self.tokens.refresh_token:
            log.info("schwab %s: a new login was found in %s", self.account, self.file.path)
            self.expired_reason = None
        self.tokens = loaded

    def _expired(self, why: str) -> AuthenticationFailed:
        first = self.expired_reason is None
        self.expired_reason = f"schwab login of account {self.account} has expired ({why}): new entries are " \
                              f"refused until someone logs in; {login_hint(self.account)}"
        if first:
            log.error("%s", self.expired_reason)
            self.announce(f"LOGIN EXPIRED. {self.expired_reason}. Open orders and positions at Schwab are unchanged.")
        return AuthenticationFailed(self.expired_reason)

    def check_login(self) -> None:
        """Raise when the login is dead; announce the expiry warnings that fall due (once each)."""
        self._load()
        assert self.tokens is not None
        now, ends = self.clock(), self.tokens.refresh_expires_at(self.settings.refresh_token_days)
        if now >= ends:
            raise self._expired(f"the refresh token of the login of {self.tokens.refresh_issued_at:%Y-%m-%d %H:%M} "
                                f"UTC ended at {ends:%Y-%m-%d %H:%M} UTC")
        if self.expired_reason is not None:
            raise AuthenticationFailed(self.expired_reason)
        left_hours = (ends - now).total_seconds() / 3600
        due = [h for h in sorted(self.settings.warn_before_hours) if left_hours <= h and h not in self.tokens.warned]
        if due:
            self.tokens.warned += [h for h in self.settings.warn_before_hours if left_hours <= h]
            self.file.save(self.tokens)
            self.announce(f"Schwab login of account {self.account} expires in {_hours(left_hours)} "
                          f"({ends:%Y-%m-%d %H:%M} UTC); {login_hint(self.account)} before then, or new entries "
                          "will be refused")

    async def ensure_token(self) -> None:
        """A live access token, renewed if it is (nearly) out of date."""
        self.check_login()
        assert self.tokens is not None
        if self.clock() + RENEW_MARGIN >= self.tokens.access_expires_at:
            await self.renew()

    async def access_token(self) -> str:
        """A live access token (renewed first when near its end), for the streamer's LOGIN."""
        await self.ensure_token()
        return self.tokens.access_token if self.tokens else ""

    async def renew(self) -> None:
        async with self._lock:
            self.check_login()
            tokens = self.tokens
            assert tokens is not None
            try:
                async with AsyncOAuth2Client(
                    client_id=self.settings.app_key.get_secret_value(),
                    client_secret=self.settings.app_secret.get_secret_value(),
                    token_endpoint_auth_method="client_secret_basic", timeout=self.settings.timeout_seconds,
                ) as oauth:
                    answer: dict[str, Any] = dict(await oauth.refresh_token(
                        f"{self.settings.oauth_url}/token", refresh_token=tokens.refresh_token))
            except OAuthError as exc:  # invalid_grant & co: the refresh token is dead (or revoked)
                raise self._expired(f"Schwab refused the refresh token: {exc.error}") from None
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code in (400, 401, 403):
                    raise self._expired(f"Schwab refused the refresh token (HTTP {exc.response.status_code})") \
                        from None
                raise BrokerUnavailable(f"schwab token renewal: HTTP {exc.response.status_code}") from None
            except (httpx.TransportError, ValueError) as exc:
                raise BrokerUnavailable(f"schwab token renewal failed: {type(exc).__name__}") from None
            answer.setdefault("refresh_token", tokens.refresh_token)  # Schwab keeps the login's refresh token
            try:
                renewed = SchwabTokens.from_answer(answer, self.clock(), tokens.refresh_issued_at, tokens.warned)
            except ValueError as exc:
                raise BrokerUnavailable(f"schwab token renewal: {exc}") from None
            self.tokens = renewed
            self.file.save(renewed)
            log.info("schwab %s: access token renewed until %s", self.account, renewed.access_expires_at)

    async def _on_unauthorized(self) -> bool:
        """A 401: the access token was refused before its time (revoked, clock skew); renew once and resend.
        A refused renewal raises the login's expiry (with the command to run), not the bare 401."""
        await self.renew()
        return True

    # -- calls -------------------------------------------------------------------------------------------

    async def call(self, method: str, path: str, *, order: bool = False, **kwargs: Any) -> httpx.Response:
        """One authenticated request (`order`: also within the order budget); errors as `brokers.base` types."""
        await self.ensure_token()
        if order:
            await self.order_limiter.acquire()
        return await self.http.request(method, path, **kwargs)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.call(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise BrokerUnavailable(f"schwab {method} {path}: answer is not JSON") from None


def _hours(hours: float) -> str:
    return f"{hours:.0f} h" if hours >= 2 else f"{hours * 60:.0f} min"
