"""Turns engine events into short alert texts for the trader's phone, one alert type per kind of news.

`alert_for(event)` maps a `daemon.domain.Event` to an `Alert` (type, text) or None when the event is not
news (a risk refusal is announced once, by its violation event, with the rule and numbers, so the matching
`signal_rejected` is skipped). Types and their default levels are `config.chat.ALERT_DEFAULTS`; which level
each transport uses comes from `AlertSettings.level(transport, type)`. The daily summary and chat-ops
notices are built here too, so every alert text lives in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from daemon.chat import render as r
from daemon.domain import Event, Fill, FlattenReport, Position, utcnow
from daemon.money import decimal_or_none
from daemon.queries import PnlReport


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str  # an alert type of config.chat.ALERT_DEFAULTS
    text: str
    account: str | None = None
    at: AwareDatetime = Field(default_factory=utcnow)
    image: bytes | None = None  # a PNG (a chart) sent with the text as a photo or attachment


def _where(event: Event) -> str:
    return f" [{event.account}]" if event.account else ""


def fill_text(fill: Fill, realized: Decimal | None) -> str:
    text = f"Filled [{fill.account}]: {fill.side.value} {r.num(fill.quantity)} {fill.symbol} @ {r.price(fill.price)}"
    if realized:
        text += f", realized {r.money(realized, signed=True)}"
    if fill.commission:
        text += f", fee {r.money(fill.commission)}"
    return text


def rejection_text(event: Event) -> str:
    data = event.data
    numbers: dict[str, str] = data.get("numbers") or {}
    detail = data.get("detail") or event.summary
    rule = data.get("rule") or "risk"
    symbol = f" {data['symbol']}" if data.get("symbol") else ""
    shown = ", ".join(f"{k} {v}" for k, v in numbers.items())
    return f"Order REJECTED{_where(event)}{symbol} by {rule}: {detail}" + (f" ({shown})" if shown else "")


_FANOUT_ORDER = ("filled", "placed", "done", "refused", "skipped", "pending")


def fanout_text(event: Event) -> str:
    """One message for one alert fanned out to many accounts: counts with the reasons, then who got what."""
    children: list[dict[str, Any]] = event.data.get("children") or []
    parts = []
    for outcome in _FANOUT_ORDER:
        lines = [c for c in children if c.get("outcome") == outcome]
        if not lines:
            continue
        why = "; ".join(f"{c['account']}: {c.get('reason') or c.get('status')}" for c in lines)
        parts.append(f"{len(lines)} {outcome}" + (f" ({why})" if outcome in ("refused", "skipped", "pending") else ""))
    text = f"{event.data.get('alert', event.summary)} [{event.data.get('group', '')}] -> {', '.join(parts)}"
    for c in children:
        if c.get("outcome") not in ("filled", "placed"):
            continue
        contract = f" ({c['contract']})" if c.get("contract") else ""
        ratio = f" (from {c.get('ticker')} x{c['ratio']})" if c.get("ratio") not in (None, "1") else ""
        price = f" @ {r.price(Decimal(c['price']))}" if c.get("price") else ""
        text += f"\n{c['account']}: {c.get('side', '')} {c.get('quantity')} {c['symbol']}{contract}{ratio}{price}"
        text += f" {c['outcome']}" if c["outcome"] != "filled" else ""
    return text


def alert_for(event: Event) -> Alert | None:
    """The alert for one engine event, or None when it is not worth a message."""
    kind = event.kind
    text: str | None
    if kind == "fill":
        fill = Fill.model_validate(event.data["fill"]) if "fill" in event.data else None
        realized = decimal_or_none(event.data.get("realized_pnl"))
        text = fill_text(fill, realized) if fill else f"Filled{_where(event)}: {event.summary}"
        return Alert(kind="fill", text=text, account=event.account, at=event.at)
    if kind == "fanout":
        return Alert(kind="fanout", text=r.clip(fanout_text(event)), at=event.at)
    if kind == "order":
        return Alert(kind="order", text=f"Order{_where(event)}: {event.summary}", account=event.account, at=event.at)
    if kind == "violation":
        if event.data.get("warning"):  # the order went through; this is a heads-up (e.g. one day trade left)
            rule = event.data.get("rule") or "risk"
            text = f"Warning{_where(event)} {rule}: {event.summary}"
            return Alert(kind="violation", text=text, account=event.account, at=event.at)
        if event.data.get("signal_id"):
            return Alert(kind="order_rejected", text=rejection_text(event), account=event.account, at=event.at)
        rule = event.data.get("rule") or "risk"
        text = f"RISK{_where(event)} {rule}: {event.summary}"
        return Alert(kind="violation", text=text, account=event.account, at=event.at)
    if kind == "signal_rejected":
        return None  # announced by its violation event(s), with the rule and the numbers
    if kind in ("signal_failed", "signal_expired"):
        what = "Order FAILED" if kind == "signal_failed" else "Signal EXPIRED (not traded)"
        return Alert(kind="order_failed", text=f"{what}{_where(event)}: {event.summary}", account=event.account,
                     at=event.at)
    if kind == "flatten":
        report = event.data.get("report")
        if report:
            flattened = FlattenReport.model_validate(report)
            body = r.flatten_report(flattened)
            by = str(event.data.get("requested") or "").removeprefix("flatten ")  # "by Alice (telegram:111)"
            if by.startswith("by "):
                body = body.replace(f"{flattened.account}:", f"{flattened.account} {by}:", 1)
            text = "FLATTEN " + body
        else:
            text = f"FLATTEN{_where(event)}: {event.summary}"
        return Alert(kind="flatten", text=text, account=event.account, at=event.at)
    if kind in ("paused", "resumed"):
        return Alert(kind="paused", text=f"Account {event.account} {event.summary}", account=event.account,
                     at=event.at)
    if kind == "daemon":
        return Alert(kind="daemon", text=event.summary, at=event.at)
    if kind == "broker":
        return Alert(kind="broker", text=f"Broker{_where(event)}: {event.summary}", account=event.account,
                     at=event.at)
    return None


def daily_summary(day: str, pnl: PnlReport, positions: Sequence[Position], chart: bytes | None = None) -> Alert:
    """The end-of-session message: P&L per account (as `Reader.pnl` gives it) and what is still open."""
    lines = [f"Daily summary {day}"]
    for acc in pnl.accounts:
        lines.append(
            f"{acc.account}: net {r.money(acc.net, signed=True)} (realized {r.money(acc.realized, signed=True)}, "
            f"fees {r.money(acc.fees)}, open {r.money(acc.unrealized, signed=True)}), {acc.fills} fills"
        )
    if len(pnl.accounts) > 1:
        lines.append(f"TOTAL: net {r.money(pnl.total.net, signed=True)}")
    open_positions = [p for p in positions if p.quantity != 0]
    if open_positions:
        held = ", ".join(f"{p.account} {p.symbol} {r.qty(p.quantity)}" for p in open_positions)
        lines.append(f"Still open: {held}")
    else:
        lines.append("No open positions.")
    return Alert(kind="daily_summary", text="\n".join(lines), image=chart)


def notice(text: str, at: datetime | None = None) -> Alert:
    """A chat-ops notice (e.g. a second Telegram poller), sent on the transports that still work."""
    return Alert(kind="chat", text=text, at=at or utcnow())
