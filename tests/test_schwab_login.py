"""Schwab login lifecycle against the stand-in: token renewal, 48 h / 6 h warnings, expiry, `traderd auth schwab`."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from brokers.base import AuthenticationFailed, BrokerUnavailable
from brokers.schwab.tokens import TokenFile, token_path
from daemon.domain import OrderStatus
from tests.standin_fixtures import schwab_running
from tests.standins.schwab_api import BASE, SchwabStandin
from tests.test_schwab_adapter import ACCOUNT, login, make_broker, req

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def stand() -> AsyncIterator[SchwabStandin]:
    async with schwab_running() as standin:
        yield standin


async def test_access_token_renewed_before_expiry_and_on_401(stand: SchwabStandin, tmp_path: Path) -> None:
    first = login(stand, tmp_path, access_left=timedelta(seconds=30))  # inside the renewal margin
    broker = make_broker(stand, tmp_path)
    await broker.connect()
    try:
        assert stand.grants == ["refresh_token"]
        saved = TokenFile(token_path(tmp_path, ACCOUNT)).load()
        assert saved is not None and saved.access_token != first.access_token
        assert saved.refresh_token == first.refresh_token and saved.refresh_issued_at == first.refresh_issued_at
        assert stat.S_IMODE(os.stat(token_path(tmp_path, ACCOUNT)).st_mode) == 0o600
        stand.expire_access_tokens()  # refused before its time: one renewal, the call resent
        order = await broker.place_order(req())
        assert order.status is OrderStatus.FILLED and len(stand.orders_for("AAPL")) == 1
        assert stand.grants == ["refresh_token", "refresh_token"] and broker.healthy()
    finally:
        await broker.close()


async def test_warnings_48h_and_6h_each_once_across_restarts(stand: SchwabStandin, tmp_path: Path) -> None:
    said: list[str] = []
    login(stand, tmp_path, issued_at=datetime.now(UTC) - timedelta(days=7) + timedelta(hours=40))
    broker = make_broker(stand, tmp_path, announce=said.append)
    await broker.connect()
    await broker.poll_once()
    await broker.close()
    assert len(said) == 1 and "expires in 40 h" in said[0] and f"traderd auth schwab --account {ACCOUNT}" in said[0]
    again = make_broker(stand, tmp_path, announce=said.append)  # a restart: the warning is not repeated
    await again.connect()
    await again.close()
    assert len(said) == 1
    tokens = TokenFile(token_path(tmp_path, ACCOUNT)).load()
    assert tokens is not None
    tokens.refresh_issued_at -= timedelta(hours=36)  # now 4 h left: the 6 h warning falls due
    TokenFile(token_path(tmp_path, ACCOUNT)).save(tokens)
    third = make_broker(stand, tmp_path, announce=said.append)
    await third.connect()
    await third.close()
    assert len(said) == 2 and "expires in 4 h" in said[1]


async def test_expired_login_refuses_entries_and_says_so_once(stand: SchwabStandin, tmp_path: Path) -> None:
    said: list[str] = []
    login(stand, tmp_path)
    broker = make_broker(stand, tmp_path, announce=said.append)
    await broker.connect()
    try:
        held = await broker.place_order(req(key="before"))
        stand.revoke_refresh_tokens()  # Schwab's 7 days are over (or the login was revoked)
        stand.expire_access_tokens()
        with pytest.raises(AuthenticationFailed, match=f"login of account {ACCOUNT} has expired"):
            await broker.place_order(req(key="entry"))
        with pytest.raises(AuthenticationFailed, match="traderd auth schwab --account sw1"):
            await broker.positions()
        assert not broker.healthy() and len(said) == 1 and "LOGIN EXPIRED" in said[0]
        assert len(stand.orders_for("AAPL")) == 1  # nothing sent, nothing lost at Schwab
        assert stand.book.positions["AAPL"][0] == 10 and held.status is OrderStatus.FILLED

        login(stand, tmp_path)  # `traderd auth schwab` run again while the daemon runs
        assert [p.quantity for p in await broker.positions()] == [10]
        assert broker.healthy() and len(said) == 1
    finally:
        await broker.close()


async def test_login_past_its_7_days_is_refused_at_connect(stand: SchwabStandin, tmp_path: Path) -> None:
    said: list[str] = []
    login(stand, tmp_path, issued_at=datetime.now(UTC) - timedelta(days=7, minutes=1))
    broker = make_broker(stand, tmp_path, announce=said.append)
    try:
        with pytest.raises(AuthenticationFailed, match=r"has expired .*refresh token"):
            await broker.connect()
        assert not broker.healthy() and len(said) == 1 and stand.calls == []
    finally:
        await broker.close()


async def test_no_login_and_wrong_account_are_clear(stand: SchwabStandin, tmp_path: Path) -> None:
    broker = make_broker(stand, tmp_path)
    with pytest.raises(AuthenticationFailed, match=r"no login yet .*traderd auth schwab --account sw1"):
        await broker.connect()
    await broker.close()
    login(stand, tmp_path)
    other = make_broker(stand, tmp_path, config={"account_number": "99998888"})
    with pytest.raises(AuthenticationFailed, match=r"no account \.\.\.8888 \(accounts: \.\.\.5678\)"):
        await other.connect()
    await other.close()


async def test_schwab_down_at_startup_is_unavailable(tmp_path: Path) -> None:
    stand = await SchwabStandin().start()
    login(stand, tmp_path)
    await stand.stop()
    broker = make_broker(stand, tmp_path, config={"timeout_seconds": 1})
    try:
        with pytest.raises(BrokerUnavailable, match=r"schwab is unreachable at http://127\.0\.0\.1:\d+/trader/v1"):
            await broker.connect()
        assert not broker.healthy()
    finally:
        await broker.close()


async def test_traderd_auth_schwab_end_to_end(stand: SchwabStandin, tmp_path: Path) -> None:
    """The real CLI in a subprocess: prints the authorize URL, takes the pasted redirect, writes the token file."""
    state = tmp_path / "state"
    config = tmp_path / "traderd.toml"
    config.write_text(f"""
[daemon]
state_dir = "{state}"
[webhook]
secret = "test-secret-0123456789abcdef"
[accounts.{ACCOUNT}]
broker = "schwab"
[accounts.{ACCOUNT}.schwab]
app_key = "{stand.app_key}"
app_secret = "{stand.app_secret}"
base_url = "{stand.url}{BASE}"
oauth_url = "{stand.url}/v1/oauth"
""")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.cli", "auth", "schwab", "--account", ACCOUNT, "--config", str(config),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stdin is not None
    url = ""
    while not url:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line, "the CLI ended before printing the authorize URL"
        if "/v1/oauth/authorize?" in line:
            url = line.strip()
    query = parse_qs(urlparse(url).query)
    assert query["client_id"] == [stand.app_key] and query["redirect_uri"] == [stand.callback_url]
    assert query["response_type"] == ["code"]
    redirect = f"{stand.callback_url}/?code={stand.issue_code()}&session=abc&state={query['state'][0]}"
    out, err = await asyncio.wait_for(proc.communicate((redirect + "\n").encode()), 20)
    assert proc.returncode == 0, err.decode()
    assert "Logged in" in out.decode() and stand.app_secret not in out.decode() + err.decode()
    path = token_path(state, ACCOUNT)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stand.grants == ["authorization_code"]
    broker = make_broker(stand, state)  # the daemon uses the login as it is
    await broker.connect()
    try:
        assert await broker.positions() == []
    finally:
        await broker.close()

    replay = await asyncio.create_subprocess_exec(  # a code works once: refused, and the login is untouched
        sys.executable, "-m", "daemon.cli", "auth", "schwab", "--account", ACCOUNT, "--config", str(config),
        "--redirect-url", f"{stand.callback_url}/?code=C0.used%40", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO)
    _, err = await asyncio.wait_for(replay.communicate(), 20)
    assert replay.returncode == 1 and "nothing changed" in err.decode()
    assert TokenFile(path).load() is not None
