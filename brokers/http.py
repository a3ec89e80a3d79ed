"""Shared HTTP layer of the broker adapters: httpx client, safe retries, rate limiting, error mapping.

`HttpBroker.request()` sends one logical request: it waits for the client-side token bucket, adds the auth
headers (a hook, so renewed tokens apply), and retries with exponential backoff + jitter only when that is
safe (GET/HEAD, or a call marked `safe=True`, e.g. a lookup POST) and the failure is transient (connect
error, timeout, 5xx, 429 — honouring `Retry-After` up to a cap). A 401 triggers the `on_unauthorized`
hook (token renewal) once. Failures come back as `brokers.base` errors whose `reason` names the call and
quotes the broker's message; headers (keys, tokens) are never logged or put in a reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from brokers.base import (
    AuthenticationFailed,
    BrokerError,
    BrokerUnavailable,
    DeadlinePassed,
    OrderNotFound,
    OrderRejected,
)
from daemon.domain import Order

log = logging.getLogger(__name__)
T = TypeVar("T")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class RateLimiter:
    """Async token bucket: `rate` tokens per second, up to `burst` at once."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()

    @classmethod
    def per_minute(cls, requests: int, burst: int | None = None) -> RateLimiter:
        return cls(requests / 60.0, burst or max(1, min(requests, 10)))

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await self._sleep((1 - self._tokens) / self.rate)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3  # extra attempts after the first
    initial: float = 0.25  # seconds, doubled each attempt
    maximum: float = 5.0
    jitter: float = 0.25  # up to this many seconds added at random
    max_retry_after: float = 30.0  # a longer Retry-After is not waited for: the call fails as unavailable

    def backoff(self, attempt: int) -> float:
        return min(self.maximum, self.initial * 2 ** (attempt - 1)) + random.uniform(0, self.jitter)


class Throttled(BrokerUnavailable):
    """HTTP 429 (or 503 with Retry-After): the broker asked us to wait `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Transient(Exception):
    """One attempt failed in a way a retry may cure."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def broker_message(response: httpx.Response) -> str:
    """The broker's own words from an error body (JSON message fields, else the start of the text)."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(data, dict):
        for key in ("message", "errorMessage", "errorText", "failureText", "error", "detail"):
            value = data.get(key)
            if isinstance(value, dict) and value.get("message"):  # {error: {code, message, errors: [...]}}
                inner = [str(e["message"]) for e in value.get("errors") or []
                         if isinstance(e, dict) and e.get("message")]
                return "; ".join([str(value["message"]), *inner])[:300]
            if value:
                return str(value)[:300]
    return str(data)[:200]


def map_http_error(
    response: httpx.Response,
    what: str,
    *,
    not_found: type[BrokerError] = OrderNotFound,
    forbidden: type[BrokerError] = AuthenticationFailed,
) -> BrokerError:
    """A non-2xx answer as the typed error the engine understands."""
    status, message = response.status_code, broker_message(response)
    reason = f"{what}: HTTP {status}: {message}"
    if status == 401:
        return AuthenticationFailed(f"{what}: credentials refused (HTTP 401): {message}")
    if status == 403:
        return forbidden(reason)
    if status == 404:
        return not_found(reason)
    if status in (400, 409, 422):
        return OrderRejected(reason)
    if status in TRANSIENT_STATUSES or status >= 500:
        return BrokerUnavailable(reason)
    return BrokerError(reason)


class HttpBroker:
    """One broker's HTTP client: base URL, timeouts, auth hook, rate limit, retry policy, error mapping."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float = 10.0,
        auth_headers: Callable[[], Mapping[str, str]] | None = None,
        on_unauthorized: Callable[[], Awaitable[bool]] | None = None,
        rate_limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._auth_headers = auth_headers
        self._on_unauthorized = on_unauthorized
        self.rate_limiter = rate_limiter
        self.retry = retry or RetryPolicy()
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout))
        self._sleep = sleep
        self.last_ok: bool | None = None  # outcome of the last request (None: nothing sent yet)
        self.last_error: str | None = None

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    def healthy(self) -> bool:
        return bool(self.last_ok)

    def _record(self, ok: bool, error: str | None = None) -> None:
        self.last_ok, self.last_error = ok, error

    async def _send(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any, what: str
    ) -> httpx.Response:
        if self.rate_limiter is not None:
            await self.rate_limiter.acquire()
        headers = dict(self._auth_headers()) if self._auth_headers else {}
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        try:
            response = await self.client.request(
                method, url, params=params, json=body, headers=headers, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            self._record(False, f"{what}: timed out")
            raise _Transient(f"{what}: no answer within {self.timeout:g}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            self._record(False, f"{what}: {type(exc).__name__}")
            raise _Transient(f"{what}: cannot reach {self.name} ({type(exc).__name__}: {exc})") from exc
        log.debug("%s %s %s -> %s", self.name, method, path, response.status_code)
        if response.status_code in TRANSIENT_STATUSES:
            self._record(False, f"{what}: HTTP {response.status_code}")
            raise _Transient(
                f"{what}: HTTP {response.status_code}: {broker_message(response)}",
                parse_retry_after(response.headers.get("Retry-After")),
            )
        return response

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        return self.retry.backoff(state.attempt_number)

    def _should_retry(self, exc: BaseException) -> bool:
        return isinstance(exc, _Transient) and (
            exc.retry_after is None or exc.retry_after <= self.retry.max_retry_after
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        safe: bool | None = None,
        what: str | None = None,
        not_found: type[BrokerError] = OrderNotFound,
        forbidden: type[BrokerError] = AuthenticationFailed,
    ) -> httpx.Response:
        """Send, retrying if safe; return the 2xx response or raise a `brokers.base` error.

        `safe` defaults to True for GET/HEAD/OPTIONS; pass True for POSTs that change nothing (searches,
        lookups) and never for order placement (the adapter looks the order up instead).
        """
        method = method.upper()
        what = what or f"{self.name} {method} {path}"
        is_safe = method in SAFE_METHODS if safe is None else safe
        attempts = self.retry.retries + 1 if is_safe else 1
        renewed = False
        while True:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(attempts),
                wait=self._wait,
                retry=retry_if_exception(self._should_retry),
                sleep=self._sleep,
                reraise=True,
            )
            try:
                response: httpx.Response = await retrying(self._send, method, path, params, json, what)
            except _Transient as exc:
                if exc.retry_after is not None:
                    raise Throttled(exc.reason, exc.retry_after) from None
                raise BrokerUnavailable(exc.reason) from None
            if response.status_code == 401 and self._on_unauthorized is not None and not renewed:
                renewed = True
                if await self._on_unauthorized():
                    continue
            if response.is_success:
                self._record(True)
                return response
            error = map_http_error(response, what, not_found=not_found, forbidden=forbidden)
            self._record(not isinstance(error, AuthenticationFailed), error.reason)
            raise error

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request()` and decode the JSON body (an unreadable body is the broker misbehaving)."""
        response = await self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise BrokerUnavailable(f"{self.name} {method} {path}: answer is not JSON") from None


async def place_once(
    broker: str,
    client_order_id: str,
    send: Callable[[], Awaitable[T]],
    lookup: Callable[[], Awaitable[Order | None]],
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    *,
    deadline: datetime | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> T | Order:
    """Send an order at most once in effect: when an answer is lost (timeout, reset, 5xx, 429) the order is
    looked up by its client order id before anything is resent, and returned if the broker has it.

    `send` places the order and returns whatever the adapter needs from the answer; business refusals
    (`OrderRejected`) pass straight through. `lookup` finds the order by client order id. A lookup that
    itself fails leaves the order's state unknown: nothing is resent, and reconciliation settles it.
    This is the one retry policy of a placement, and `deadline` (the signal's `expires_at`) bounds it: nothing
    is sent after it, and a wait that would cross it is not waited (`DeadlinePassed` once the order is known
    not to be at the broker).
    """
    attempts = policy.retries + 1
    last: BrokerUnavailable | None = None
    for attempt in range(1, attempts + 1):
        if last is not None:  # the previous answer was lost: was the order accepted after all?
            wait = last.retry_after if isinstance(last, Throttled) else policy.backoff(attempt - 1)
            wait = min(wait, policy.max_retry_after)
            late = deadline is not None and (clock() - deadline).total_seconds() + wait > 0
            if late and isinstance(last, Throttled):  # refused outright: nothing reached the broker
                raise DeadlinePassed(f"{broker}: order {client_order_id} not sent again: the signal expires at "
                                     f"{_iso(deadline)} and the broker asked to wait {wait:g} s ({last.reason})")
            if not late:
                await sleep(wait)
            try:
                existing = await lookup()
            except BrokerUnavailable as exc:
                raise BrokerUnavailable(f"{broker}: order {client_order_id} state unknown ({exc.reason}); "
                                        "it is looked up again before anything is resent") from None
            if existing is not None:
                log.info("%s: order %s was accepted despite a lost answer", broker, client_order_id)
                return existing
            if late:
                raise DeadlinePassed(f"{broker}: order {client_order_id} not sent again: the signal expires at "
                                     f"{_iso(deadline)} (last answer: {last.reason})")
        if deadline is not None and clock() > deadline:
            raise DeadlinePassed(f"{broker}: order {client_order_id} not sent: the signal expired at "
                                 f"{_iso(deadline)}")
        try:
            return await send()
        except BrokerUnavailable as exc:
            last = exc
    assert last is not None
    raise BrokerUnavailable(f"{broker}: order {client_order_id} not placed after {attempts} attempts: {last.reason}")


def _iso(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "?"
