"""Tests the transport-neutral chat-ops core: every command's answer, authorization, confirmation, bad input.

`FakeBackend` (tests/standins/chat_backend.py) is an in-memory model of the daemon seam (`ChatBackend`): its
flatten/cancel/pause really change its state, so the tests assert outcomes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from daemon.chat import render as r
from daemon.chat.commands import (
    ChatAuth,
    ChatOps,
    ChatReply,
    ChatRequest,
    Transport,
    TransportAuth,
)
from daemon.domain import FlattenReport
from tests.standins.chat_backend import T0, FakeBackend

# ------------------------------------------------------------------------------------------------ tests


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(hours=2, minutes=5)

    def __call__(self) -> datetime:
        return self.now


AUTH = ChatAuth(
    telegram=TransportAuth(users={"100": "operator", "200": "viewer"}, chats=["100", "-500"]),
    discord=TransportAuth(users={"9001": "operator"}, chats=["guild7"]),
)


def req(
    text: str,
    user: str = "100",
    chat: str = "100",
    transport: Transport = "telegram",
    guild: str | None = None,
) -> ChatRequest:
    parsed = ChatRequest.from_text(transport, user, chat, text, guild_id=guild)
    assert parsed is not None
    return parsed


@pytest.fixture
def env() -> tuple[ChatOps, FakeBackend, Clock]:
    backend, clock = FakeBackend(), Clock()
    return ChatOps(backend, AUTH, clock=clock), backend, clock


async def ask(ops: ChatOps, text: str, **kw: str) -> ChatReply:
    reply = await ops.handle(req(text, **kw))
    assert reply is not None
    return reply


def test_parse_command_text() -> None:
    parsed = ChatRequest.from_text("telegram", 1, 2, "/PnL@TraderBot week topstep1")
    assert parsed is not None
    assert (parsed.command, parsed.args, parsed.user_id, parsed.chat_id) == (
        "pnl",
        ["week", "topstep1"],
        "1",
        "2",
    )
    assert ChatRequest.from_text("telegram", 1, 2, "hello") is None
    assert ChatRequest.from_text("telegram", 1, 2, "/") is None


async def test_help_lists_commands_by_role(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, _, _ = env
    operator = (await ask(ops, "/help")).text
    viewer = (await ask(ops, "/help", user="200")).text
    assert "/flatten [account|all]" in operator and "/pnl [today|week|month] [account]" in operator
    assert "/flatten" not in viewer and "/positions [account]" in viewer


async def test_status(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    backend.paused.add("paper")
    text = (await ask(ops, "/status")).text
    assert "traderd 0.1.0, up 2h05m" in text and "alerts queued: 3" in text
    assert "```" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("topstep1", "paper"))}
    assert rows["topstep1"] == ["topstep1", "projectx", "ok", "active", "50,225.50"]
    assert rows["paper"][3] == "paused"


async def test_accounts(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, _, _ = env
    text = (await ask(ops, "/accounts")).text
    assert "topstep1 projectx active 50,225.50 100,000.00" in " ".join(text.split())


async def test_pnl_periods_accounts_and_total(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, _, _ = env
    text = (await ask(ops, "/pnl")).text
    assert text.startswith("P&L today (USD)")
    assert "TOTAL +2,501.00 -40.00 24.80 +2,436.20" in " ".join(text.split())
    week = (await ask(ops, "/pnl week TOPSTEP1")).text
    assert week.startswith("P&L week - topstep1") and "TOTAL" not in week
    assert "topstep1 +1,250.50 -20.00 12.40 +1,218.10" in " ".join(week.split())
    assert (await ask(ops, "/pnl paper")).text.startswith("P&L today - paper")


async def test_positions_orders_trades(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, _, _ = env
    text = " ".join((await ask(ops, "/positions")).text.split())
    assert "topstep1 ESH5 +2 5,010.25 +225.00" in text and "paper AAPL -10 187.50 -5.00" in text
    text = " ".join((await ask(ops, "/positions topstep1")).text.split())
    assert "ESH5 +2 5,010.25 +225.00" in text and "AAPL" not in text
    orders = " ".join((await ask(ops, "/orders")).text.split())
    assert "topstep1 sell 2 ESH5 LMT 5,030.00" in orders
    assert (await ask(ops, "/orders paper")).text == "No open orders on paper."
    trades = (await ask(ops, "/trades 3")).text
    assert trades.startswith("Last 3 fills") and "216.50" in trades and "213.50" not in trades
    assert (await ask(ops, "/trades")).text.startswith("Last 10 fills")


async def test_risk_and_health(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    text = " ".join((await ask(ops, "/risk topstep1")).text.split())
    assert "daily loss 420 1000 580" in text and "day trades 2 3 1" in text and "paper" not in text
    assert "Healthy" in (await ask(ops, "/health")).text
    backend.fail_health = True
    text = (await ask(ops, "/health")).text
    assert text.startswith("1 problem(s)") and "FAIL broker topstep1: timeout" in text


async def test_bad_input_changes_nothing(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    assert (await ask(ops, "/frobnicate")).text == "Unknown command /frobnicate. Send /help for the list."
    assert "Unknown account 'nope'. Accounts: topstep1, paper." == (await ask(ops, "/positions nope")).text
    assert "Unknown account 'nope'" in (await ask(ops, "/flatten nope")).text
    assert "not 'x'" in (await ask(ops, "/trades x")).text
    assert "from 1 to 50, not 0" in (await ask(ops, "/trades 0")).text
    assert "from 1 to 50, not 999" in (await ask(ops, "/trades 999")).text
    assert "Unknown period 'year'" in (await ask(ops, "/pnl year paper")).text
    assert "Too many arguments" in (await ask(ops, "/status now")).text
    assert "Say which account" in (await ask(ops, "/flatten")).text
    assert ops.pending_count() == 0
    assert backend.flatten_calls == 0 and backend.positions_["topstep1"] and not backend.paused


async def test_unauthorized_is_ignored_and_audited(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    assert await ops.handle(req("/status", user="666", chat="666")) is None
    assert await ops.handle(req("/flatten all", user="666", chat="666")) is None
    assert await ops.handle(req("/status", user="100", chat="-999")) is None  # right user, wrong chat
    assert await ops.handle(req("/status", user="100", chat="100", transport="discord")) is None  # other transport
    assert await ops.handle(req("/status", user="9001", chat="c1", transport="discord", guild="guild7")) is not None
    denied = [a for a in backend.audits if not a[3]]
    assert [(a[0], a[1]) for a in denied] == [
        ("telegram:666", "status"),
        ("telegram:666", "flatten"),
        ("telegram:100", "status"),
        ("discord:100", "status"),
    ]
    assert backend.flatten_calls == 0


async def test_whoami_answers_everyone(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, _, _ = env
    text = (await ask(ops, "/whoami", user="666", chat="-42")).text
    assert "user id: 666" in text and "chat id: -42" in text and "not authorized" in text
    assert "role: viewer" in (await ask(ops, "/whoami", user="200")).text


async def test_viewer_cannot_control(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    reply = await ask(ops, "/flatten all", user="200")
    assert "needs the operator role" in reply.text and not reply.buttons
    assert "needs the operator role" in (await ask(ops, "/pause paper", user="200")).text
    assert not backend.paused and backend.flatten_calls == 0
    assert ("telegram:200", "flatten", "all", False, "denied: viewer") in backend.audits


async def test_flatten_confirm_says_exactly_what_was_done(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    reply = await ask(ops, "/flatten all")
    assert "cancel 1 open order(s) and close 2 position(s)" in reply.text
    assert "Confirm within 30 s." in reply.text
    assert backend.flatten_calls == 0
    (yes_label, yes), (_, no) = reply.buttons
    assert yes_label == "Yes, flatten all" and yes.startswith("ok:") and no.startswith("no:")
    done = await ops.confirm(yes, req("/x"))
    assert done is not None
    assert done.text.splitlines()[0] == "Flatten all: done."
    assert "  cancelled sell 2 ESH5 LMT 5,030.00" in done.text
    assert "  closed: sell 2 ESH5 @ 5,012.50" in done.text
    assert "  closed: buy 10 AAPL @ 188.00" in done.text
    assert backend.flatten_calls == 1 and not backend.positions_["topstep1"] and not backend.orders_["topstep1"]
    assert backend.request_ids == [yes.split(":", 1)[1]]  # the engine request id is the confirmation's
    again = await ops.confirm(yes, req("/x"))
    assert again is not None and "expired or was already used" in again.text
    assert backend.flatten_calls == 1
    assert ("telegram:100", "flatten", "all", True, "confirmed and executed") in backend.audits


async def test_confirmation_expires(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, clock = env
    reply = await ask(ops, "/flatten topstep1")
    clock.now += timedelta(seconds=31)
    late = await ops.confirm(reply.buttons[0][1], req("/x"))
    assert late is not None and "expired" in late.text
    assert backend.flatten_calls == 0 and backend.positions_["topstep1"]
    assert ops.pending_count() == 0


async def test_confirmation_no_and_other_users(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    reply = await ask(ops, "/cancel topstep1")
    assert "Cancel 1 open order(s) on topstep1?" in reply.text and "LMT 5,030.00" in reply.text
    assert await ops.confirm(reply.buttons[0][1], req("/x", user="666")) is None  # stranger: ignored
    other = await ops.confirm(reply.buttons[0][1], req("/x", user="200"))  # viewer, not the requester
    assert other is not None and "Only the person who asked" in other.text
    assert backend.orders_["topstep1"]
    declined = await ops.confirm(reply.buttons[1][1], req("/x"))
    assert declined is not None and "cancelled. Nothing was done." in declined.text
    assert backend.orders_["topstep1"]
    assert "expired" in (await ops.confirm(reply.buttons[0][1], req("/x")) or ChatReply(text="")).text


async def test_cancel_confirmed(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    reply = await ask(ops, "/cancel topstep1")
    done = await ops.confirm(reply.buttons[0][1], req("/x"))
    assert done is not None and "Cancel topstep1: done." in done.text and "cancelled sell 2 ESH5" in done.text
    assert not backend.orders_["topstep1"] and backend.positions_["topstep1"]


async def test_pause_resume(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    assert (await ask(ops, "/pause paper")).text == "paper: paused"
    assert backend.paused == {"paper"}
    assert (await ask(ops, "/pause paper")).text == "paper: already paused"
    reply = await ask(ops, "/pause all")
    assert reply.buttons and backend.paused == {"paper"}
    done = await ops.confirm(reply.buttons[0][1], req("/x"))
    assert done is not None and done.text == "topstep1: paused\npaper: already paused"
    assert backend.paused == {"paper", "topstep1"}
    assert (await ask(ops, "/resume all")).text == "topstep1: resumed\npaper: resumed"
    assert not backend.paused


async def test_backend_failure_is_reported(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env

    async def broken(target: str, actor: str, request_id: str) -> list[FlattenReport]:
        raise ConnectionError("broker unreachable")

    backend.flatten = broken  # type: ignore[method-assign]
    reply = await ask(ops, "/flatten paper")
    done = await ops.confirm(reply.buttons[0][1], req("/x"))
    assert done is not None and done.text == "/flatten paper FAILED: broker unreachable"
    assert backend.audits[-1][3] is False


def test_render_numbers() -> None:
    assert r.num(Decimal("5012.2500")) == "5012.25" and r.num(Decimal("1E+1")) == "10"
    assert r.price(Decimal("12.5")) == "12.50" and r.price(Decimal("0.0001")) == "0.0001"
    assert r.money(Decimal("-0.001"), signed=True) == "+0.00" and r.money(Decimal("1234.5")) == "1,234.50"
    assert r.qty(Decimal(-3)) == "-3"
    rows = [[str(i), "x"] for i in range(40)]
    text = r.table(["n", "v"], rows)
    assert "... and 15 more" in text and text.startswith("```") and text.endswith("```")
    clipped = r.clip("```\n" + "line\n" * 1000 + "```")
    assert len(clipped) <= r.MAX_TEXT and clipped.count("```") == 2


async def test_strategies_list_state_error_and_signal(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    text = (await ask(ops, "/strategies", user="200")).text  # a viewer may look
    assert text.startswith("Strategies (2, times UTC)")
    assert "es_sma: running\n  sma_cross on topstep1 ESH5 5m" in text
    assert "last bar 03-03 14:30, last signal: target 1 (bar 03-03 14:30)" in text
    assert "next run 03-03 14:35" in text
    assert "rsi: DISABLED - on_bar raised ZeroDivisionError: boom" in text and "last signal: none yet" in text
    backend.strategies_.clear()
    assert (await ask(ops, "/strategies")).text.startswith("No strategies configured")


async def test_strategy_pause_resume_and_reenable(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    assert (await ask(ops, "/strategy pause ES_SMA")).text.startswith("Strategy es_sma: paused.")
    assert backend.strategies_["es_sma"].state == "paused"
    assert (await ask(ops, "/strategy pause es_sma")).text == "Strategy es_sma: already paused."
    assert (await ask(ops, "/strategy resume es_sma")).text.startswith("Strategy es_sma: resumed")
    assert backend.strategies_["es_sma"].state == "running"
    still = (await ask(ops, "/strategy resume rsi")).text
    assert still == "Strategy rsi: still DISABLED - on_bar raised ZeroDivisionError: boom"
    backend.fixed.add("rsi")  # the trader fixed the file
    again = (await ask(ops, "/strategy resume rsi")).text
    assert again.startswith("Strategy rsi: re-enabled (was disabled: on_bar raised ZeroDivisionError: boom)")
    assert backend.strategies_["rsi"].state == "running"
    audits = [(a, act, t, ok) for a, act, t, ok, _ in backend.audits]
    assert audits == [("telegram:100", "strategy_pause", "es_sma", True)] * 2 + [
        ("telegram:100", "strategy_resume", "es_sma", True), ("telegram:100", "strategy_resume", "rsi", False),
        ("telegram:100", "strategy_resume", "rsi", True)]


async def test_strategy_bad_input_unknown_name_and_viewer(env: tuple[ChatOps, FakeBackend, Clock]) -> None:
    ops, backend, _ = env
    before = dict(backend.strategies_)
    unknown = (await ask(ops, "/strategy pause nope")).text
    assert unknown == "Unknown strategy 'nope'. Strategies: es_sma, rsi."
    for text in ("/strategy", "/strategy pause", "/strategy stop es_sma", "/strategy pause es_sma extra"):
        assert (await ask(ops, text)).text == "Usage: /strategy pause|resume NAME"
    viewer = (await ask(ops, "/strategy pause es_sma", user="200")).text
    assert viewer == "/strategy needs the operator role; you are a viewer."
    assert backend.strategies_ == before
    assert [(a, act, ok) for a, act, _, ok, _ in backend.audits] == [("telegram:200", "strategy", False)]
    assert "/strategy pause|resume NAME" not in (await ask(ops, "/help", user="200")).text
    assert "/strategies - scheduled strategies" in (await ask(ops, "/help", user="200")).text
