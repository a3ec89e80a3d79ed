"""The OpenAPI 3.1 description of the HTTP interface (/api/*, /healthz, the webhook), served at /api/openapi.json.

Built in code so it cannot drift from the answers: the schemas of every typed answer (orders, fills, signals,
positions, accounts, P&L, strategies, violations, audit) are generated from the same pydantic models that
produce the JSON (`models_json_schema`, serialization mode), and only the hand-assembled envelopes around
them are written out here. The test suite validates every response it receives against this document.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from daemon.domain import AccountState, Fill, Order, Position, StrategyStatus, Violation
from daemon.queries import AccountPnl, PnlTotal, TimeExitCountdown
from daemon.store.views import AuditEntry, DailyPnl, SignalRecord, SignalSummary

MODELS = (AccountState, Fill, Order, Position, StrategyStatus, Violation, AccountPnl, PnlTotal, AuditEntry,
          DailyPnl, SignalRecord, SignalSummary, TimeExitCountdown)
JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


STR, BOOL, INT, NULL_STR = {"type": "string"}, {"type": "boolean"}, {"type": "integer"}, {"type": ["string", "null"]}
NEXT = {"type": ["string", "null"], "description": "Path and query of the next page; null on the last page"}

_HAND_WRITTEN: dict[str, Any] = {
    "Error": _obj(["error", "detail"], error={"type": "string", "description": "machine-readable code"},
                  detail={"type": "string", "description": "plain words"}),
    "PnlReport": _obj(["period", "since", "accounts", "total", "by_day"],
                      period={"enum": ["today", "week", "month"]}, since={"type": "string", "format": "date-time"},
                      accounts=_array(ref("AccountPnl")), total=ref("PnlTotal"), by_day=_array(ref("DailyPnl"))),
    "Status": _obj(["version", "ready", "started_at", "uptime_seconds", "webhook_url", "accounts"],
                   version=STR, ready=BOOL, started_at=NULL_STR, uptime_seconds=INT, webhook_url=STR,
                   accounts=_array(ref("Account"))),
    "Target": {"type": "object", "properties": {
        "account": {"type": "string", "default": "all", "description": "an account name, a group name, or all"},
        "actor": {"type": "string", "description": "who asks (audited); default api:<address>"}}},
    "FlattenRequest": {"allOf": [ref("Target"), {"type": "object", "properties": {
        "request_id": {"type": "string", "description": "makes a retried flatten the same flatten"}}}]},
    "FlattenAnswer": _obj(["request_id", "results"], request_id=STR, results=_array(_obj(
        ["signal_id", "status", "detail"], signal_id=STR, status=STR, detail=NULL_STR,
        report={"type": ["object", "array", "null"]}))),
    "RiskAccount": _obj(["account", "limits"], account=STR, funded={"type": "object"}, limits=_array(_obj(
        ["name", "used", "limit", "left", "breached"], name=STR, used=STR, limit=STR, left=STR, breached=BOOL))),
    "RiskReset": _obj(["account"], account=STR, actor=STR, clear_block=BOOL),
    "Health": _obj(["status", "live"], status={"enum": ["ok", "not_ready"]}, live=BOOL, ready=BOOL,
                   checks={"type": "object"}),
    "Alert": {"type": "object", "required": ["ticker", "action"], "additionalProperties": True,
              "description": "A TradingView alert; every field is described in the README (Webhook)",
              "properties": {"ticker": STR, "action": {"enum": ["buy", "sell", "exit", "cancel", "flatten",
                                                                  "long", "short", "close"]},
                             "secret": STR, "account": STR, "quantity": {"type": ["string", "number"]},
                             "price": {"type": ["string", "number"]}, "id": STR}},
    "Accepted": {"oneOf": [
        _obj(["status", "signal_id", "account"], status={"const": "accepted"}, signal_id=STR, account=STR),
        # An alert for a group (or a list of accounts): the parent's id and each account's child signal.
        _obj(["status", "signal_id", "accounts", "children"], status={"const": "accepted"}, signal_id=STR,
             accounts=_array(STR),
             children=_array(_obj(["account", "signal_id", "status", "symbol", "quantity"], account=STR,
                                  signal_id=STR, status={"enum": ["pending", "skipped", "duplicate"]},
                                  symbol=STR, quantity=NULL_STR, reason=STR))),
    ]},
    "Duplicate": _obj(["status", "signal_id"], status={"const": "duplicate"}, signal_id=STR),
}


def _extend(base: dict[str, Any], description: str, required: list[str], **properties: Any) -> dict[str, Any]:
    """A generated (closed) object schema with more properties, still closed; `required` replaces its own."""
    kept = {k: v for k, v in base.items() if k not in ("title", "required")}
    return {**kept, "description": description, "required": required,
            "properties": {**base["properties"], **properties}}


def _answer(description: str, schema: dict[str, Any], media: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {400: "Bad query or body", 401: "Missing or wrong bearer token (or webhook secret)",
             403: "Source address not allowed", 404: "Unknown account, signal or strategy",
             408: "The body did not arrive in time", 409: "Conflict (e.g. a strategy that stays disabled)",
             413: "Body too large",
             415: "Unsupported media type", 422: "A valid alert the daemon cannot route or is too late",
             503: "Not ready, or the store is unreachable"}
    return {str(code): _answer(words[code], ref("Error")) for code in codes}


def _param(name: str, description: str, schema: dict[str, Any] | None = None, where: str = "query",
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "description": description,
            "schema": schema or STR}


ACCOUNT = _param("account", "an account name, a group name (its members; for signals also the group's alerts), "
                           "or all (the default)")
SINCE = _param("since", "ISO time or date: only fills at or after it")


def _paged(name: str, item: str, maximum: int, *extra: dict[str, Any]) -> dict[str, Any]:
    params = [ACCOUNT, *extra, _param("limit", f"page size, 1..{maximum} (default 100)",
                                      {"type": "integer", "minimum": 1, "maximum": maximum}),
              _param("after", "the cursor from the previous page's `next`")]
    body = _obj([name, "next"], **{name: _array(ref(item)), "next": NEXT})
    return {"get": {"summary": f"{name.capitalize()}, newest first, a page at a time", "parameters": params,
                    "responses": {"200": _answer(f"One page of {name}", body), **_errors(400, 401, 404)}}}


def _get(summary: str, schema: dict[str, Any], *params: dict[str, Any], errors: tuple[int, ...] = (401,)
         ) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": list(params),
                    "responses": {"200": _answer("OK", schema), **_errors(*errors)}}}


def _post(summary: str, body: str, schema: dict[str, Any], *params: dict[str, Any],
          errors: tuple[int, ...] = (400, 401, 404)) -> dict[str, Any]:
    return {"post": {"summary": summary, "parameters": list(params),
                     "requestBody": {"required": False, "content": {JSON: {"schema": ref(body)}}},
                     "responses": {"200": _answer("Done", schema), **_errors(*errors)}}}


def _webhook(*params: dict[str, Any]) -> dict[str, Any]:
    body = {"required": True, "content": {JSON: {"schema": ref("Alert")},
                                          "text/plain": {"schema": {"type": "string",
                                                                    "description": "JSON of an Alert"}}}}
    return {"post": {"summary": "A TradingView alert (secret in the body or in the path)", "security": [],
                     "parameters": list(params), "requestBody": body,
                     "responses": {"202": _answer("Accepted: committed before this answer", ref("Accepted")),
                                   "200": _answer("A duplicate of an accepted signal", ref("Duplicate")),
                                   **_errors(400, 401, 403, 408, 413, 415, 422, 503)}}}


def _paths() -> dict[str, Any]:
    name = _param("name", "strategy name", where="path")
    strategy = _obj(["strategy"], strategy=ref("StrategyStatus"))
    period = _param("period", "today (default), week or month", {"enum": ["today", "week", "month"]})
    return {
        "/api/openapi.json": _get("This document", {"type": "object"}),
        "/api/status": _get("Version, readiness, uptime and every account", ref("Status")),
        "/api/accounts": _get("Every account: link, controls and state",
                              _obj(["accounts"], accounts=_array(ref("Account")))),
        "/api/positions": _get("Open positions, live (or stale from the store)",
                               _obj(["positions"], positions=_array(ref("PositionView"))), ACCOUNT,
                               errors=(401, 404)),
        "/api/orders": _paged("orders", "Order", 1000, _param("open", "true: only working orders")),
        "/api/fills": _paged("fills", "Fill", 5000, SINCE),
        "/api/fills.csv": {"get": {"summary": "Fills as TradeNote's generic CSV (one execution per line)",
                                   "parameters": [ACCOUNT, SINCE],
                                   "responses": {"200": _answer("CSV", {"type": "string"}, "text/csv"),
                                                 **_errors(400, 401, 404)}}},
        "/api/signals": _paged("signals", "SignalSummary", 1000),
        "/api/signals/{signal_id}": _get("One signal with its orders and fills", ref("SignalRecord"),
                                         _param("signal_id", "the id the webhook answered", where="path"),
                                         errors=(401, 404)),
        "/api/pnl": _get("Realized, fees, unrealized and net P&L per account and per day", ref("PnlReport"),
                         ACCOUNT, period, errors=(400, 401, 404)),
        "/api/violations": _get("Risk violations, newest first",
                                _obj(["violations"], violations=_array(ref("Violation"))), ACCOUNT,
                                _param("limit", "1..1000", {"type": "integer"}), errors=(400, 401, 404)),
        "/api/audit": _get("Who did what, newest first", _obj(["audit"], audit=_array(ref("AuditEntry"))),
                           _param("limit", "1..1000", {"type": "integer"}), errors=(400, 401)),
        "/api/pause": _post("Pause an account (or all)", "Target", _obj(["paused"], paused=_array(STR))),
        "/api/resume": _post("Resume an account (or all)", "Target", _obj(["resumed"], resumed=_array(STR))),
        "/api/flatten": _post("Flatten an account (or all) and wait (bounded) for the outcome", "FlattenRequest",
                              ref("FlattenAnswer")),
        "/api/risk": _get("Every configured limit per account with used and left",
                          _obj(["accounts"], accounts=_array(ref("RiskAccount"))), ACCOUNT, errors=(401, 404)),
        "/api/risk/reset": _post("Reset a prop-firm lock after a hard breach", "RiskReset",
                                 _obj(["account", "funded"], account=STR, funded={"type": "object"})),
        "/api/strategies": _get("Every scheduled strategy and its state",
                                _obj(["strategies"], strategies=_array(ref("StrategyStatus")))),
        "/api/strategies/{name}/pause": _post("Pause a strategy", "Target", strategy, name),
        "/api/strategies/{name}/resume": _post("Resume (or re-enable) a strategy", "Target", strategy, name,
                                               errors=(400, 401, 404, 409)),
        "/healthz": {"get": {"summary": "Readiness with its checks", "security": [], "responses": {
            "200": _answer("Ready", ref("Health")), "503": _answer("Not ready", ref("Health"))}}},
        "/healthz/live": {"get": {"summary": "Liveness", "security": [],
                                  "responses": {"200": _answer("Alive", ref("Health"))}}},
        "/webhook/tradingview": _webhook(),
        "/webhook/tradingview/{token}": _webhook(_param("token", "the webhook secret", where="path")),
    }


@cache
def document(version: str) -> dict[str, Any]:
    """The whole description; `version` is the daemon's."""
    _, generated = models_json_schema([(m, "serialization") for m in MODELS],
                                      ref_template="#/components/schemas/{model}")
    schemas = generated["$defs"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "traderd", "version": version,
                 "description": "Control API (bearer token when api.token is set), health and the webhook."},
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {**schemas, **_HAND_WRITTEN,
                                   "Account": _extend(schemas["AccountState"], "An account: link and controls, "
                                                      "then its state when known (stale: the last snapshot)",
                                                      ["account", "broker", "connected", "paused", "locked",
                                                       "queue_depth"],
                                                      connected=BOOL, paused=BOOL, locked=BOOL, queue_depth=INT,
                                                      error=STR, stale=BOOL),
                                   "PositionView": _extend(schemas["Position"], "A position; stale: from the "
                                                           "store's ledger; time_exits: its armed time exits "
                                                           "with the seconds left",
                                                           [*schemas["Position"]["required"], "stale", "time_exits"],
                                                           stale=BOOL, time_exits=_array(ref("TimeExitCountdown")))}},
    }
