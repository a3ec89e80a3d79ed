"""Tests the alert texts: each engine event kind becomes the message the trader should read (or none)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from daemon.chat.alerts import alert_for, daily_summary
from daemon.domain import (
    Event,
    Fill,
    FlattenReport,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Violation,
)
from daemon.queries import AccountPnl, PnlReport, PnlTotal

T = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_fill_with_realized_pnl_and_fee() -> None:
    fill = Fill(fill_id="f1", broker_order_id="b1", client_order_id="c1", account="topstep1", symbol="ESH6",
                side=Side.SELL, quantity=Decimal(2), price=Decimal("5012.5"), commission=Decimal("4.20"), filled_at=T)
    event = Event(kind="fill", account="topstep1", summary="x",
                  data={"fill": fill.model_dump(mode="json"), "realized_pnl": "225.00"})
    alert = alert_for(event)
    assert alert is not None and alert.kind == "fill"
    assert alert.text == "Filled [topstep1]: sell 2 ESH6 @ 5,012.50, realized +225.00, fee 4.20"


def test_rejection_names_rule_and_numbers_once() -> None:
    violation = Violation(account="paper", rule="max_order_quantity", detail="order of 10 exceeds the limit of 5",
                          numbers={"limit": "5", "requested": "10"}, signal_id="sig1", symbol="AAPL")
    event = Event(kind="violation", account="paper", summary=violation.detail,
                  data=violation.model_dump(mode="json"))
    alert = alert_for(event)
    assert alert is not None and alert.kind == "order_rejected"
    assert alert.text == ("Order REJECTED [paper] AAPL by max_order_quantity: order of 10 exceeds the limit of 5"
                          " (limit 5, requested 10)")
    assert alert_for(Event(kind="signal_rejected", account="paper", summary="buy AAPL: ...")) is None
    breach = Violation(account="apex", rule="trailing_drawdown", detail="equity 47,480 below floor 47,500")
    monitor = alert_for(Event(kind="violation", account="apex", summary=breach.detail,
                              data=breach.model_dump(mode="json")))
    assert monitor is not None and monitor.kind == "violation"
    assert monitor.text == "RISK [apex] trailing_drawdown: equity 47,480 below floor 47,500"


def test_flatten_daemon_broker_and_failures() -> None:
    closing = Order(broker_order_id="o1", client_order_id="c", account="paper", symbol="AAPL", side=Side.SELL,
                    quantity=Decimal(10), order_type=OrderType.MARKET, status=OrderStatus.FILLED,
                    filled_quantity=Decimal(10), average_fill_price=Decimal("187.5"))
    report = FlattenReport(account="paper", closing=[closing])
    data = {"report": report.model_dump(mode="json")}
    flat = alert_for(Event(kind="flatten", account="paper", summary="s", data=data))
    assert flat is not None and flat.text == "FLATTEN paper:\n  closed: sell 10 AAPL @ 187.50"
    started = alert_for(Event(kind="daemon", summary="traderd 0.1 started"))
    assert started is not None and (started.kind, started.text) == ("daemon", "traderd 0.1 started")
    down = alert_for(Event(kind="broker", account="tv", summary="broker unavailable: timeout"))
    assert down is not None and down.text == "Broker [tv]: broker unavailable: timeout"
    failed = alert_for(Event(kind="signal_failed", account="tv", summary="buy ES: broker rejected the order: x"))
    expired = alert_for(Event(kind="signal_expired", account="tv", summary="buy ES: not executed before ..."))
    assert failed is not None and failed.kind == "order_failed" and failed.text.startswith("Order FAILED [tv]")
    assert expired is not None and expired.text.startswith("Signal EXPIRED (not traded) [tv]")
    paused = alert_for(Event(kind="paused", account="tv", summary="paused by telegram:1"))
    assert paused is not None and (paused.kind, paused.text) == ("paused", "Account tv paused by telegram:1")


def test_daily_summary() -> None:
    pnl = PnlReport(
        period="today", since=T, by_day=[],
        accounts=[AccountPnl(account="a", realized=Decimal("100.00"), fees=Decimal("2.00"),
                             unrealized=Decimal("-10.00"), net=Decimal("88.00"), fills=4),
                  AccountPnl(account="b", realized=Decimal("0.00"), fees=Decimal("0.00"), unrealized=Decimal("0.00"),
                             net=Decimal("0.00"), fills=0)],
        total=PnlTotal(realized=Decimal("100.00"), fees=Decimal("2.00"), unrealized=Decimal("-10.00"),
                       net=Decimal("88.00")),
    )
    held = Position(account="a", symbol="ES", quantity=Decimal("-1"), average_price=Decimal("5000"))
    alert = daily_summary("Mon 2026-03-02", pnl, [held])
    assert alert.kind == "daily_summary"
    assert alert.text.splitlines() == [
        "Daily summary Mon 2026-03-02",
        "a: net +88.00 (realized +100.00, fees 2.00, open -10.00), 4 fills",
        "b: net +0.00 (realized +0.00, fees 0.00, open +0.00), 0 fills",
        "TOTAL: net +88.00",
        "Still open: a ES -1",
    ]


def test_warning_is_not_worded_as_a_rejection() -> None:
    from daemon.chat.alerts import alert_for
    from daemon.domain import Event

    event = Event(kind="violation", account="margin", summary="1 day trade left before the PDT limit",
                  data={"signal_id": "sig_1", "rule": "pdt", "warning": True})
    alert = alert_for(event)
    assert alert is not None and alert.kind == "violation"
    assert alert.text.startswith("Warning") and "REJECTED" not in alert.text and "pdt" in alert.text
