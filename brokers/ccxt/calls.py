"""Every ccxt call of the adapter goes through `Caller`: budget, safe retries, and ccxt errors as `brokers.base` ones.

ccxt raises its own exception tree; `translate` turns each into the typed error the engine understands and
keeps the exchange's own words (`binance {"code":-2010,"msg":"Account has insufficient balance..."}`) in the
reason, never the keys. Throttling (HTTP 429, or 418 when the IP is banned) becomes `Throttled` with the
`Retry-After` the exchange sent. Binance's `-1007` ("execution status unknown") and every 5xx or timeout is
`BrokerUnavailable`: for a placement that means "look it up before resending" (`brokers.http.place_once`).
Only calls marked safe (reads, lookups, cancels) are retried here; placements never are.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import ccxt.async_support as ccxt

from brokers.base import (
    AuthenticationFailed,
    BrokerError,
    BrokerUnavailable,
    OrderNotFound,
    OrderRejected,
    UnknownSymbol,
)
from brokers.http import RateLimiter, RetryPolicy, Throttled, parse_retry_after

log = logging.getLogger(__name__)
T = TypeVar("T")

_UNKNOWN_STATE = re.compile(r'"code"\s*:\s*-100[67]\b')  # Binance: "Send status unknown; execution status unknown"
THROTTLE_DEFAULT = 60.0  # seconds to wait after a 429/418 that named no Retry-After


def _words(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    if not headers:
        return None
    lowered = {str(k).lower(): v for k, v in headers.items()}
    return parse_retry_after(lowered.get("retry-after"))


def translate(exc: Exception, what: str, headers: Mapping[str, Any] | None = None) -> BrokerError:
    """A ccxt exception as the `brokers.base` error for it (see the module docstring)."""
    reason = f"{what}: {_words(exc)}"
    if isinstance(exc, BrokerError):
        return exc
    if _UNKNOWN_STATE.search(str(exc)):
        return BrokerUnavailable(f"{reason} (execution status unknown)")
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        wait = retry_after(headers)
        return Throttled(f"{reason} (throttled)", THROTTLE_DEFAULT if wait is None else wait)
    if isinstance(exc, ccxt.NetworkError | ccxt.BadResponse | ccxt.NullResponse):
        return BrokerUnavailable(reason)
    if isinstance(exc, ccxt.BadSymbol):
        return UnknownSymbol(reason)
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFound(reason)
    if isinstance(exc, ccxt.PermissionDenied | ccxt.AccountSuspended):
        return OrderRejected(reason)  # e.g. "This symbol is not permitted for this account"
    if isinstance(exc, ccxt.AuthenticationError):
        return AuthenticationFailed(f"{what}: credentials refused: {_words(exc)}")
    if isinstance(exc, ccxt.ExchangeError | ccxt.ArgumentsRequired | ccxt.NotSupported):
        return OrderRejected(reason)
    if isinstance(exc, ccxt.BaseError):
        return BrokerUnavailable(reason)
    raise exc


class Caller:
    """Runs ccxt coroutines for one exchange: client-side budget, translation, retries of safe calls."""

    def __init__(self, exchange: Any, limiter: RateLimiter, policy: RetryPolicy,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.exchange = exchange
        self.limiter = limiter
        self.policy = policy
        self._sleep = sleep
        self.last_ok: bool | None = None
        self.last_error: str | None = None

    def healthy(self) -> bool:
        return bool(self.last_ok)

    async def once(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One attempt; a ccxt error comes back translated."""
        await self.limiter.acquire()
        try:
            result = await call()
        except Exception as exc:
            error = translate(exc, what, getattr(self.exchange, "last_response_headers", None))
            self.last_ok = not isinstance(error, BrokerUnavailable | AuthenticationFailed)
            self.last_error = error.reason
            raise error from None
        self.last_ok, self.last_error = True, None
        return result

    async def safe(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """A call that changes nothing (or may be repeated): retried with backoff while the exchange is
        unavailable, waiting as long as a throttle asks when that is within the policy's cap."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.once(what, call)
            except BrokerUnavailable as exc:
                wait = exc.retry_after if isinstance(exc, Throttled) else self.policy.backoff(attempt)
                if attempt > self.policy.retries or wait > self.policy.max_retry_after:
                    raise
                log.info("%s: retrying in %.1f s (%s)", what, wait, exc.reason)
                await self._sleep(wait)
