"""Secrets never leave the daemon: a broker whose error text echoes its request headers (key id and secret key)
is quoted, redacted, in API answers, chat replies, alerts and stored reasons, in whole or in part."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.domain import SignalStatus
from daemon.supervision.redaction import Redactor
from tests.conftest import SECRET, alert, client_for, settings_for, settled
from tests.standins.alpaca_api import AlpacaStandIn
from tests.standins.telegram_api import TelegramStandin
from tests.test_chat_e2e import OPERATOR, alerts_text, ask, tg_settings

KEY_ID = "PKTEST7QX2M4N6P8R0T2"
SECRET_KEY = "Zr8uV3wY6bN1mK4jH7gF0dS9aQ2eW5tR8yU1iO4p"
TOKEN = "api-token-0123456789abcdef"


def leaks(text: str) -> list[str]:
    """The secrets, or 8-character runs of them, found in `text`."""
    found = [s for s in (KEY_ID, SECRET_KEY, TOKEN) if s in text]
    found += [s[i:i + 8] for s in (KEY_ID, SECRET_KEY) for i in range(len(s) - 7) if s[i:i + 8] in text]
    return found


@pytest.fixture
async def standin() -> AsyncIterator[AlpacaStandIn]:
    stand = AlpacaStandIn(key_id=KEY_ID, secret_key=SECRET_KEY)
    await stand.start()
    yield stand
    await stand.stop()


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandin]:
    standin = await TelegramStandin(max_poll=1.0).start()
    yield standin
    await standin.stop()


async def test_a_broker_echoing_its_credentials_leaks_them_nowhere(start_daemon, standin, tg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    account = {"broker": "alpaca", "alpaca": {
        "key_id": KEY_ID, "secret_key": SECRET_KEY, "base_url": standin.base_url,
        "timeout_seconds": 2, "rate_limit_per_minute": 6000, "poll_interval_seconds": 60}}
    settings = settings_for(tmp_path / "state", accounts={"stocks": account}, api={"token": TOKEN},
                            **tg_settings(tg))
    daemon = await start_daemon(settings)
    await tg.wait_for(lambda: "started" in alerts_text(tg), within=10)
    # Every order, account and position call fails with the request headers quoted back.
    for method, path in (("POST", "/v2/orders"), ("GET", "/v2/account"), ("DELETE", "/v2/positions"),
                         ("DELETE", "/v2/orders"), ("GET", "/v2/orders")):
        standin.inject("status", count=50, method=method, path=path, status=403, echo_headers=True)

    async with client_for(daemon, TOKEN) as client:
        accepted = await client.post(f"/webhook/tradingview/{SECRET}", json=alert(id="echo-1", account="stocks"))
        assert accepted.status_code == 202, accepted.text
        record = await settled(daemon, accepted.json()["signal_id"])
        assert record.status is SignalStatus.FAILED
        answers = [await client.get(f"/api/signals/{record.signal_id}"), await client.get("/api/status"),
                   await client.get("/api/accounts"),
                   await client.post("/api/flatten", json={"account": "stocks", "request_id": "echo"})]
    # The broker did echo the credentials: the redaction had something to do.
    assert "request headers" in json.dumps([a.json() for a in answers])
    for answer in answers:
        assert leaks(answer.text) == [], answer.text
    reply = await ask(tg, "/accounts", OPERATOR)
    assert leaks(reply.text) == []
    await tg.wait_for(lambda: "echo" in alerts_text(tg) or "rejected" in alerts_text(tg).lower(), within=10)
    await asyncio.sleep(0.5)
    assert leaks(alerts_text(tg)) == []
    with daemon.store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT reason FROM signals").fetchall()
        outbox = conn.exec_driver_sql("SELECT text FROM outbox").fetchall()
    assert leaks(" ".join(str(row[0]) for row in [*stored, *outbox])) == []


def test_partial_secrets_are_redacted_without_mangling_ordinary_text() -> None:
    redactor = Redactor([KEY_ID, SECRET_KEY, "https://discord.com/api/webhooks/1234/abcdefgh"])
    assert redactor.redact(f"key {KEY_ID[:12]}... refused") == "key *** refused"
    assert redactor.redact(f"secret ends {SECRET_KEY[-10:]}") == "secret ends ***"
    assert redactor.redact(f"joined x{SECRET_KEY[5:20]}y") == "joined ***"
    kept = "posted to https://discord.com/api/webhooks ok; order 1234567890 filled at 187.50"
    assert redactor.redact(kept) == kept
    assert redactor.redact_strings({"a": [f"{KEY_ID}"], "n": 1}) == {"a": ["***"], "n": 1}
