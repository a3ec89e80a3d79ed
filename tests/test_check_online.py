"""`traderd check --online` against the stand-ins: brokers, Telegram getMe, Discord login, the database."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.cli.main import main
from tests.standins.discord_api import DiscordStandin
from tests.standins.projectx_api import ProjectXStandin
from tests.standins.telegram_api import TelegramStandin
from tests.test_cli_subprocess import clean_env
from tests.test_projectx_adapter import ensure_front_contracts

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def projectx() -> AsyncIterator[ProjectXStandin]:
    stand = ProjectXStandin()
    ensure_front_contracts(stand)
    await stand.start()
    try:
        yield stand
    finally:
        await stand.stop()


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramStandin]:
    stand = await TelegramStandin().start()
    try:
        yield stand
    finally:
        await stand.stop()


def projectx_account(name: str, standin: ProjectXStandin, api_key: str) -> str:
    return (f'[accounts.{name}]\nbroker = "projectx"\n[accounts.{name}.projectx]\nusername = "trader"\n'
            f'api_key = "{api_key}"\nbase_url = "{standin.url}"\ntimeout_seconds = 2\n')


async def test_online_check_reports_each_failure_with_a_fix(tmp_path: Path, projectx: ProjectXStandin,
                                                            telegram: TelegramStandin) -> None:
    state = tmp_path / "state"
    config = tmp_path / "traderd.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "{state}"\n'
        + projectx_account("good", projectx, "px-api-key") + projectx_account("bad", projectx, "not-the-key")
        + f'[telegram]\ntoken = "999:WRONG"\nbase_url = "{telegram.base_url}"\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.cli", "check", "--online", "--config", str(config),
        env=clean_env(tmp_path), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 90)
    stdout = out.decode()
    assert process.returncode == 1, stdout + err.decode()
    lines = stdout.splitlines()
    good = next(line for line in lines if "broker good" in line)
    assert good.startswith("ok") and "logged in" in good and "equity" in good
    bad = next(line for line in lines if "broker bad" in line)
    assert bad.startswith("FAIL") and "refused" in bad
    assert "fix: check the credentials in [accounts.bad.projectx]" in bad
    tg = next(line for line in lines if line.split()[1].startswith("telegram"))
    assert tg.startswith("FAIL") and "fix: check telegram.token" in tg
    db = next(line for line in lines if "database" in line)
    assert db.startswith("ok") and "will be created" in db
    assert not (state / "traderd.db").exists()  # checking creates nothing
    assert "2 of 4 online checks passed" in stdout
    assert "not-the-key" not in stdout and "999:WRONG" not in stdout
    assert projectx.count("/api/Order/place") == 0


async def test_online_check_passes_with_good_credentials(tmp_path: Path, projectx: ProjectXStandin,
                                                         telegram: TelegramStandin,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    dc = await DiscordStandin().start()
    try:
        config = tmp_path / "traderd.toml"
        base = (f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n' + projectx_account("good", projectx, "px-api-key")
                + f'[telegram]\ntoken = "{telegram.token}"\nbase_url = "{telegram.base_url}"\n')
        config.write_text(base + f'[discord]\ntoken = "{dc.token}"\napi_base = "{dc.api_base}"\n')
        code = await asyncio.to_thread(main, ["check", "--online", "--config", str(config)])
        passed = capsys.readouterr().out
        assert code == 0, passed
        assert "ok    telegram: bot @traderd_bot answers getMe" in passed
        assert "ok    discord: bot traderd" in passed and "4 of 4 online checks passed" in passed
        assert "getMe" in [method for method, _ in telegram.calls]

        config.write_text(base + f'[discord]\ntoken = "not-the-bot-token"\napi_base = "{dc.api_base}"\n')
        code = await asyncio.to_thread(main, ["check", "--online", "--config", str(config)])
        refused = capsys.readouterr().out
        assert code == 1
        assert "FAIL  discord: login: the bot token was refused -- fix: check discord.token" in refused
    finally:
        await dc.stop()


async def test_online_check_reports_an_unreachable_database(tmp_path: Path) -> None:
    config = tmp_path / "traderd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                      '[store]\nurl = "postgresql://nobody@127.0.0.1:1/nothing"\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.cli", "check", "--online", "--config", str(config),
        env=clean_env(tmp_path), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    line = next(line for line in out.decode().splitlines() if "database" in line)
    assert process.returncode == 1
    assert line.startswith("FAIL") and "cannot connect" in line and "fix: check store.url" in line
