"""aiohttp routes for TradingView webhooks, /healthz and /metrics: HTTP in, `Engine.accept`, an answer out.

A signal is answered 202 only after `Engine.accept` has committed it ("accepted means durable"); a resend of
the same signal is answered 200 duplicate; every refusal is a 4xx JSON `{"error", "detail"}` and changes
nothing. The only 5xx is 503 when the store cannot be reached: the signal was not accepted, and TradingView's
resend on 5xx is then exactly what we want.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from config.settings import Settings
from daemon.domain import Intent
from daemon.engine import Engine
from daemon.fanout import plan
from daemon.intake import for_account, normalize_ticker
from daemon.metrics import CONTENT_TYPE_LATEST, Metrics
from daemon.store.repository import FanoutChild
from daemon.store.retry import describe
from daemon.web.errors import error
from daemon.web.signals import (
    AlertLimits,
    SignalError,
    dedup_keys,
    new_signal_id,
    parse_body,
    timing_problem,
    to_intent,
    validate_alert,
)

log = logging.getLogger("traderd.webhook")

ACCEPTED_TYPES = ("application/json", "text/plain", "")


class SourceFilter:
    """Optional allowlist of source addresses (TradingView's published IPs, or your proxy)."""

    def __init__(self, allowed: list[str], trust_forwarded_for: bool) -> None:
        self.networks = [ipaddress.ip_network(item, strict=False) for item in allowed]
        self.trust_forwarded_for = trust_forwarded_for

    def client_ip(self, request: web.Request) -> str:
        forwarded = request.headers.get("X-Forwarded-For")
        if self.trust_forwarded_for and forwarded:
            # The last entry is the one our own proxy appended; earlier ones are the caller's word.
            return forwarded.split(",")[-1].strip()
        return request.remote or ""

    def allows(self, request: web.Request) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(self.client_ip(request))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


class TradingViewWebhook:
    def __init__(self, *, settings: Settings, engine: Engine, metrics: Metrics, secret: str,
                 clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.secret = secret
        self.clock = clock
        self.sources = SourceFilter(settings.webhook.allowed_ips, settings.webhook.trust_forwarded_for)
        self.limits = AlertLimits(max_quantity=settings.webhook.max_quantity, max_price=settings.webhook.max_price)

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        response = await self._handle(request)
        outcome = "accepted" if response.status == 202 else "duplicate" if response.status == 200 else None
        if outcome is None:
            outcome = getattr(response, "error_code", str(response.status))
        self.metrics.webhooks.labels(outcome).inc()
        self.metrics.webhook_latency.observe(time.perf_counter() - started)
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        if not self.sources.allows(request):
            log.warning("refused a webhook from %s (not in webhook.allowed_ips)", self.sources.client_ip(request))
            return self._refuse(403, "forbidden_ip", "this source address may not post signals")
        limit = self.settings.webhook.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(413, "body_too_large", f"the body exceeds {limit} bytes")
        if request.content_type not in ACCEPTED_TYPES:
            return self._refuse(415, "unsupported_media_type",
                                "send application/json or text/plain holding JSON")
        try:
            body = await self._read_body(request, limit)
            data = parse_body(body)
            presented = request.match_info.get("token") or data.get("secret") or data.get("passphrase")
            if not isinstance(presented, str) or not hmac.compare_digest(
                    presented.encode("utf-8", "replace"), self.secret.encode()):
                raise SignalError("bad_secret", "missing or wrong secret", 401)
            alert = validate_alert(data, self.limits)
            targets = self.settings.targets(normalize_ticker(alert.ticker), alert.account, alert.accounts)
            if targets is None:
                raise SignalError("unknown_account", self._routing_problem(alert.account or alert.accounts), 422)
            account = targets.label or targets.legs[0].account
            received = self.clock()
            keys = dedup_keys(alert, data, received)
            late = timing_problem(alert, received_at=received,
                                  default_max_lag=self.settings.webhook.default_max_lag_seconds)
            intent = None if late is not None else to_intent(
                alert, signal_id=new_signal_id(), dedup_key=keys[0], account=account, received_at=received,
                default_max_lag=self.settings.webhook.default_max_lag_seconds)
        except SignalError as exc:
            return self._refuse(exc.status, exc.code, exc.detail)
        except ValidationError as exc:  # the Intent refused what the alert model let through
            return self._refuse(422, "invalid_field", "; ".join(e["msg"] for e in exc.errors()[:5]))
        except Exception:  # a bug in reading a request: refused, never 500 (TradingView would resend it)
            log.exception("could not read a webhook request")
            return self._refuse(400, "bad_request", "the request could not be read")
        try:
            if late is not None:
                return self._late(account, keys, late)
            assert intent is not None
            raw = {k: v for k, v in data.items() if k not in ("secret", "passphrase")}
            if targets.is_fanout:
                return await self._fanout(intent, plan(intent, targets, received.date()), raw, keys)
            one = for_account(intent, targets.legs[0], received.date(), signal_id=intent.signal_id)
            if one.reason is not None:
                return self._refuse(422, "zero_quantity", one.reason)
            intent = one.intent
            # keys[1:]: the previous time bucket's body-hash key (an alert without `id`), only looked up.
            answer = await self.engine.submit(intent, raw, also_known_as=keys[1:])
        except SQLAlchemyError as exc:
            log.error("could not store a signal for %s (%s); answering 503 so TradingView resends", account,
                      describe(exc))
            return self._refuse(503, "store_unavailable", "the signal could not be stored; resend later")
        if not answer.is_new:
            return self._duplicate(answer.signal_id)
        log.info("accepted %s: %s %s on %s", answer.signal_id, intent.action.value, intent.symbol, account)
        return web.json_response({"status": "accepted", "signal_id": answer.signal_id, "account": account},
                                 status=202)

    async def _read_body(self, request: web.Request, limit: int) -> bytes:
        """The whole body, however many TCP segments it comes in: at most `limit` bytes, within the timeout.

        `content.read(n)` returns what has arrived so far, not the whole body: read until the end of the
        stream. A gzip or deflate body is inflated here (the server does not decode bodies itself, so that
        an encoding it cannot read gets this JSON refusal too); `limit` bounds what it inflates to.
        """
        chunks: list[bytes] = []
        size = 0
        timeout = self.settings.webhook.body_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                while chunk := await request.content.read(limit + 1 - size):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise SignalError("body_too_large", f"the body exceeds {limit} bytes", 413)
        except TimeoutError:
            raise SignalError("body_timeout", f"the body did not arrive within {timeout:g} s", 408) from None
        except web.RequestPayloadError as exc:  # e.g. a chunked body cut short or malformed
            raise SignalError("bad_body", f"the body could not be read: {exc}", 400) from None
        return decode_body(b"".join(chunks), request.headers.get("Content-Encoding", ""), limit)

    async def _fanout(self, parent: Intent, children: list[FanoutChild], raw: dict[str, Any],
                keys: list[str]) -> web.Response:
        """202 with the parent id and every account's child, once all of them are committed together."""
        answer = await self.engine.submit_fanout(parent, children, raw, also_known_as=keys[1:])
        if not answer.is_new:
            return self._duplicate(answer.parent_id)
        listed = [{"account": c.intent.account, "signal_id": c.intent.signal_id,
                   "status": c.status.value if new else "duplicate", "symbol": c.intent.symbol,
                   "quantity": None if c.intent.quantity is None else f"{c.intent.quantity.normalize():f}",
                   **({"reason": c.reason} if c.reason else {})} for c, new in answer.children]
        log.info("accepted %s: %s %s on %d accounts", answer.parent_id, parent.action.value, parent.symbol,
                 len(listed))
        return web.json_response({"status": "accepted", "signal_id": answer.parent_id,
                                  "accounts": [c["account"] for c in listed], "children": listed}, status=202)

    def _late(self, account: str, keys: list[str], late: SignalError) -> web.Response:
        """A late resend of a signal we already accepted is a duplicate, not a stale alert."""
        existing = self.engine.known_signal(account, [*keys[1:], keys[0]])
        if existing is not None:
            return self._duplicate(existing)
        return self._refuse(late.status, late.code, late.detail)

    def _routing_problem(self, named: str | list[str] | None) -> str:
        accounts = ", ".join([*self.settings.enabled_accounts(), *self.settings.groups])
        if isinstance(named, list):
            return f"accounts {', '.join(named)}: each must be a configured, enabled account (accounts: {accounts})"
        if named:
            return f"account {named!r} is not configured or not enabled (accounts: {accounts})"
        return f"no account lists this ticker and no default_account is set (accounts: {accounts})"

    @staticmethod
    def _duplicate(signal_id: str) -> web.Response:
        return web.json_response({"status": "duplicate", "signal_id": signal_id}, status=200)

    @staticmethod
    def _refuse(status: int, code: str, detail: str) -> web.Response:
        response = error(status, code, detail)
        response.error_code = code  # type: ignore[attr-defined]
        return response


_INFLATE = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_body(body: bytes, content_encoding: str, limit: int) -> bytes:
    """The body with its Content-Encoding (gzip, deflate, identity; several in order) undone, at most `limit`."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding not in _INFLATE:
            raise SignalError("unsupported_encoding",
                              f"Content-Encoding {coding[:20]!r} is not supported (send gzip, deflate or none)", 415)
        body = _inflate(body, coding, limit)
    return body


def _inflate(body: bytes, coding: str, limit: int) -> bytes:
    # "deflate" is zlib-wrapped by the standard, raw deflate by some clients: try both.
    for wbits in (_INFLATE[coding], -zlib.MAX_WBITS) if coding == "deflate" else (_INFLATE[coding],):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit or inflater.unconsumed_tail:
            raise SignalError("body_too_large", f"the body inflates to more than {limit} bytes", 413)
        if inflater.eof:
            return out
    raise SignalError("bad_encoding", f"the body is not valid {coding} data", 400)


def health_routes(*, readiness: Callable[[], dict[str, Any]], metrics: Metrics,
                  describe: Callable[[], dict[str, Any]] | None = None) -> list[web.RouteDef]:
    """`describe` adds facts beside the checks (the daemon's role among others: active, standby, partial)."""
    async def healthz(request: web.Request) -> web.Response:
        checks = readiness()
        ready = all(bool(v) for v in checks.values())
        extra = describe() if describe is not None else {}
        return web.json_response({"status": "ok" if ready else "not_ready", "live": True, "ready": ready,
                                  "checks": checks} | extra, status=200 if ready else 503)

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "live": True})

    async def metrics_view(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return [web.get("/healthz", healthz), web.get("/healthz/live", live), web.get("/metrics", metrics_view)]


def webhook_routes(hook: TradingViewWebhook) -> list[web.RouteDef]:
    return [web.post("/webhook/tradingview", hook.handle), web.post("/webhook/tradingview/{token}", hook.handle)]
