"""The control API under /api/: read-only views and control actions, behind an optional bearer token.

It serialises what `daemon.queries.Reader` computes and forwards control actions to the engine (and strategy
pause/resume to the `StrategyRunner`), so the API, the CLI and chat always agree.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web

from daemon.domain import PERIODS, StrategyControls
from daemon.engine import Engine
from daemon.queries import AccountView, PnlReport, PositionView, Reader
from daemon.risk.engine import RiskEngine
from daemon.risk.monitor import RiskMonitor
from daemon.store import journal
from daemon.store.paging import BadCursor, Page
from daemon.store.repository import Store
from daemon.web import openapi
from daemon.web.errors import error, http_error
from daemon.web.signals import parse_time

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FLATTEN_WAIT_SECONDS = 15.0


def bearer_middleware(token: str | None) -> Any:
    """Require `Authorization: Bearer <token>` on /api/* when a token is configured."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path.startswith("/api/"):
            header = request.headers.get("Authorization", "")
            presented = header[7:] if header.startswith("Bearer ") else ""
            if not hmac.compare_digest(presented.encode(), token.encode()):
                response = error(401, "unauthorized", "missing or wrong bearer token")
                response.headers["WWW-Authenticate"] = 'Bearer realm="traderd"'
                return response
        return await handler(request)

    return check


def redacting_middleware(redact_strings: Callable[[Any], Any]) -> Any:
    """Pass every JSON answer of /api/* through the log redaction: a broker's error text may echo a key."""

    @web.middleware
    async def redact(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.text:
                exc.text = _redacted_json(exc.text, redact_strings)
            raise
        if isinstance(response, web.Response) and response.content_type == "application/json" and response.text:
            response.text = _redacted_json(response.text, redact_strings)
        return response

    return redact


def _redacted_json(text: str, redact_strings: Callable[[Any], Any]) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return str(redact_strings(text))
    cleaned = redact_strings(data)
    return text if cleaned == data else json.dumps(cleaned)


def _int(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 < int(raw) <= maximum:
        raise http_error(web.HTTPBadRequest, "bad_query", f"{name} must be 1..{maximum}")
    return int(raw)


def _paged(request: web.Request, maximum: int, read: Callable[[str | None, int], Page[T]]) -> Page[T]:
    """One page of a list: `limit` (1..maximum, default 100) rows after the cursor `after`."""
    try:
        return read(request.query.get("after"), _int(request, "limit", 100, maximum))
    except BadCursor as exc:
        raise http_error(web.HTTPBadRequest, "bad_query", str(exc)) from None


def _next_link(request: web.Request, page: Page[Any]) -> str | None:
    """The same request (path and query) continued after this page, or None after the last one."""
    if page.next is None:
        return None
    return str(request.rel_url.update_query(after=page.next))


def _since(request: web.Request) -> datetime | None:
    if "since" not in request.query:
        return None
    try:
        return parse_time(request.query["since"])
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, "bad_query", str(exc)) from None


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise http_error(web.HTTPBadRequest, "bad_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise http_error(web.HTTPBadRequest, "bad_json", "the body must be a JSON object")
    return data


def account_json(view: AccountView) -> dict[str, Any]:
    """One account: link and controls, then the state fields (flat), `error` and `stale` when the broker failed."""
    row: dict[str, Any] = {"account": view.account, "broker": view.broker, "connected": view.connected,
                           "paused": view.controls.paused, "locked": view.controls.locked,
                           "queue_depth": view.controls.queue_depth}
    if view.error is not None:
        row["error"] = view.error
    if view.state is not None:
        row |= view.state.model_dump(mode="json", exclude={"account", "broker"})
    if view.stale:
        row["stale"] = True
    return row


def position_json(view: PositionView) -> dict[str, Any]:
    return view.position.model_dump(mode="json") | {"stale": view.stale, "time_exits": [
        countdown.model_dump(mode="json") for countdown in view.time_exits]}


def pnl_json(report: PnlReport) -> dict[str, Any]:
    """Money as strings with two decimals; `since` in the daemon's time zone."""
    return {"period": report.period, "since": report.since.isoformat(),
            "accounts": [line.model_dump(mode="json") for line in report.accounts],
            "total": report.total.model_dump(mode="json"),
            "by_day": [day.model_dump(mode="json") for day in report.by_day]}


class ControlApi:
    def __init__(self, *, reader: Reader, engine: Engine, store: Store, status: Callable[[], dict[str, Any]],
                 risk: RiskEngine, monitor: RiskMonitor | None = None,
                 strategies: StrategyControls | None = None) -> None:
        self.reader = reader
        self.engine = engine
        self.store = store
        self.status_info = status
        self.risk = risk
        self.monitor = monitor
        self.strategies = strategies

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/status", self.status), web.get("/api/accounts", self.accounts),
            web.get("/api/positions", self.positions), web.get("/api/orders", self.orders),
            web.get("/api/fills", self.fills), web.get("/api/fills.csv", self.fills_csv), web.get("/api/pnl", self.pnl),
            web.get("/api/signals", self.signals), web.get("/api/signals/{signal_id}", self.signal),
            web.get("/api/openapi.json", self.openapi), web.get("/api/violations", self.violations),
            web.get("/api/audit", self.audit),
            web.post("/api/pause", self.pause), web.post("/api/resume", self.resume),
            web.post("/api/flatten", self.flatten),
            web.get("/api/risk", self.risk_status), web.post("/api/risk/reset", self.risk_reset),
            web.get("/api/strategies", self.strategy_list),
            web.post("/api/strategies/{name}/pause", self.strategy_pause),
            web.post("/api/strategies/{name}/resume", self.strategy_resume),
        ]

    def _account(self, request: web.Request) -> str | None:
        account = request.query.get("account")
        if account is not None:
            try:
                self.reader.accounts_named(account)
            except KeyError as exc:
                raise http_error(web.HTTPNotFound, "unknown_account", exc.args[0]) from None
        return None if account in (None, "all") else account

    def _scope(self, request: web.Request) -> str | list[str] | None:
        """The store rows `?account=` means: all, one account, or a group's members and its alerts (`@group`)."""
        account = self._account(request)
        if account is None:
            return None
        members = self.reader.accounts_named(account)
        return account if members == [account] else [*members, f"@{account}"]

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status_info() | {"accounts": await self._accounts()})

    async def _accounts(self) -> list[dict[str, Any]]:
        return [account_json(view) for view in await self.reader.accounts()]

    async def accounts(self, request: web.Request) -> web.Response:
        return web.json_response({"accounts": await self._accounts()})

    async def positions(self, request: web.Request) -> web.Response:
        views = await self.reader.positions(self._account(request))
        return web.json_response({"positions": [position_json(view) for view in views]})

    async def orders(self, request: web.Request) -> web.Response:
        open_only = request.query.get("open", "false").lower() in ("1", "true", "yes")
        found = _paged(request, 1000, lambda after, limit: self.store.orders_page(
            self._scope(request), open_only=open_only, after=after, limit=limit))
        return web.json_response({"orders": [o.model_dump(mode="json") for o in found.items],
                                  "next": _next_link(request, found)})

    async def fills(self, request: web.Request) -> web.Response:
        since = _since(request)
        found = _paged(request, 5000, lambda after, limit: self.store.fills_page(
            self._scope(request), since=since, after=after, limit=limit))
        return web.json_response({"fills": [f.model_dump(mode="json") for f in found.items],
                                  "next": _next_link(request, found)})

    async def fills_csv(self, request: web.Request) -> web.Response:
        """Every fill since `since` in TradeNote's generic CSV layout (see daemon.store.journal)."""
        text = journal.export(self.store, "fills", "csv", _since(request), self._scope(request),
                              self.reader.timezone)
        return web.Response(text=text, content_type="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="traderd-fills.csv"'})

    async def signals(self, request: web.Request) -> web.Response:
        found = _paged(request, 1000, lambda after, limit: self.store.signals_page(
            self._scope(request), after=after, limit=limit))
        return web.json_response({"signals": [s.model_dump(mode="json") for s in found.items],
                                  "next": _next_link(request, found)})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document(str(self.status_info().get("version", "0"))))

    async def pnl(self, request: web.Request) -> web.Response:
        asked = request.query.get("period", "today")
        period = next((p for p in PERIODS if p == asked), None)
        if period is None:
            return error(400, "bad_query", f"period must be one of {', '.join(PERIODS)}")
        return web.json_response(pnl_json(await self.reader.pnl(period, self._account(request))))

    async def signal(self, request: web.Request) -> web.Response:
        record = self.store.get_signal(request.match_info["signal_id"])
        if record is None:
            return error(404, "unknown_signal", "no signal with that id")
        return web.json_response(record.model_dump(mode="json"))

    async def violations(self, request: web.Request) -> web.Response:
        found = self.store.violations(self._scope(request), limit=_int(request, "limit", 100, 1000))
        return web.json_response({"violations": [v.model_dump(mode="json") for v in found]})

    async def audit(self, request: web.Request) -> web.Response:
        entries = self.store.audit_log(limit=_int(request, "limit", 100, 1000))
        return web.json_response({"audit": [e.model_dump(mode="json") for e in entries]})

    async def risk_status(self, request: web.Request) -> web.Response:
        """Every configured limit per account with used and left, and the prop-firm rule snapshot."""
        accounts = []
        for name in self.reader.accounts_named(self._account(request)):
            held = {view.position.symbol: view.position.quantity for view in await self.reader.positions(name)}
            row: dict[str, Any] = {"account": name, "limits": [asdict(s) for s in self.risk.describe(name, held)]}
            if self.monitor is not None:
                try:
                    row["funded"] = self.monitor.snapshot(name)
                except KeyError:
                    pass
            accounts.append(row)
        return web.json_response({"accounts": accounts}, dumps=lambda o: json.dumps(o, default=str))

    async def risk_reset(self, request: web.Request) -> web.Response:
        """Operator reset of a prop-firm lock (and optionally a session block) after a hard breach."""
        data = await _json_body(request)
        account, actor = data.get("account"), str(data.get("actor") or f"api:{request.remote}")[:80]
        if not isinstance(account, str) or account == "all":
            return error(400, "bad_field", "account must name one account")
        if self.monitor is None:
            return error(404, "no_rules", "no account has prop-firm rules")
        try:
            snapshot = self.monitor.reset_lock(account, actor, clear_block=bool(data.get("clear_block")))
        except KeyError as exc:
            return error(404, "no_rules", exc.args[0])
        return web.json_response({"account": account, "funded": snapshot},
                                 dumps=lambda o: json.dumps(o, default=str))

    async def _target(self, request: web.Request) -> tuple[str, str, dict[str, Any]]:
        data = await _json_body(request)
        target = data.get("account", "all")
        actor = str(data.get("actor") or f"api:{request.remote}")[:80]
        if not isinstance(target, str):
            raise http_error(web.HTTPBadRequest, "bad_field", "account must be a string")
        try:
            self.engine.targets(target)
        except KeyError as exc:
            raise http_error(web.HTTPNotFound, "unknown_account", exc.args[0]) from None
        return target, actor, data

    async def pause(self, request: web.Request) -> web.Response:
        target, actor, _ = await self._target(request)
        return web.json_response({"paused": self.engine.pause(target, actor, True)})

    async def resume(self, request: web.Request) -> web.Response:
        target, actor, _ = await self._target(request)
        return web.json_response({"resumed": self.engine.pause(target, actor, False)})

    async def flatten(self, request: web.Request) -> web.Response:
        """Queue a flatten on each account's worker and wait (bounded) for what it did."""
        target, actor, data = await self._target(request)
        request_id = str(data.get("request_id") or secrets.token_hex(8))[:64]
        ids = self.engine.request_flatten(target, actor, request_id)
        results = []
        for signal_id in ids:
            try:
                outcome = await self.engine.wait_for(signal_id, FLATTEN_WAIT_SECONDS)
                report = outcome.result.model_dump(mode="json") if outcome.result is not None else None
                results.append({"signal_id": signal_id, "status": outcome.status.value,
                                "detail": outcome.reason, "report": report})
            except TimeoutError:
                results.append({"signal_id": signal_id, "status": "pending",
                                "detail": "still queued behind earlier signals; see /api/signals/<id>"})
        return web.json_response({"request_id": request_id, "results": results})

    # ---- strategies ------------------------------------------------------------------------------

    def _strategy_rows(self) -> list[dict[str, Any]]:
        rows = self.strategies.status() if self.strategies is not None else []
        return [row.model_dump(mode="json") for row in rows]

    async def strategy_list(self, request: web.Request) -> web.Response:
        """Each strategy: state (running, paused, disabled with its error), account, symbol, last bar, signal."""
        return web.json_response({"strategies": self._strategy_rows()})

    async def _strategy_control(self, request: web.Request, action: str) -> web.Response:
        name = request.match_info["name"]
        data = await _json_body(request)
        actor = str(data.get("actor") or f"api:{request.remote}")[:80]
        runner = self.strategies
        if runner is None or name not in {s.name for s in runner.status()}:
            known = ", ".join(s.name for s in runner.status()) if runner is not None else ""
            return error(404, "unknown_strategy", f"no strategy {name!r}; strategies: {known or 'none'}")
        (runner.pause if action == "pause" else runner.resume)(name, actor)
        row = next(r for r in self._strategy_rows() if r["name"] == name)
        ok = action == "pause" or row["status"] != "disabled"
        self.store.audit(actor, f"strategy_{action}", name, None if ok else f"still disabled: {row['error']}", ok)
        if not ok:
            return error(409, "still_disabled", f"strategy {name} could not be re-enabled: {row['error']}")
        return web.json_response({"strategy": row})

    async def strategy_pause(self, request: web.Request) -> web.Response:
        return await self._strategy_control(request, "pause")

    async def strategy_resume(self, request: web.Request) -> web.Response:
        """Resume a paused strategy, or re-enable one disabled after an error (its code is reloaded)."""
        return await self._strategy_control(request, "resume")
