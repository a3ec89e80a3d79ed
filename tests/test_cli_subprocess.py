"""The real `traderd` command as a subprocess: run with no config, webhook, status, flatten, SIGTERM, check, init."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

TRADERD = [sys.executable, "-m", "daemon.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRADERD_", "NOTIFY_", "WATCHDOG_", "CREDENTIALS_", "STATE_DIRECTORY", "XDG_"))}
    env |= {"HOME": str(home), "PYTHONUNBUFFERED": "1"} | extra
    return env


def traderd(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRADERD, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=Path(__file__).parent.parent)


def wait_for_url(process: subprocess.Popen[str], within: float = 30) -> str:
    deadline = time.monotonic() + within
    assert process.stdout is not None
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        lines.append(line)
        found = re.search(r"(http://\S+/webhook/tradingview/\S+)", line)
        if found:
            return found.group(1)
    process.kill()
    raise AssertionError(f"no webhook URL printed: {''.join(lines)} {process.stderr.read() if process.stderr else ''}")


def test_run_without_configuration_as_a_service(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, TRADERD_WEBHOOK__PORT=str(port))
    process = subprocess.Popen([*TRADERD, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, stdin=subprocess.DEVNULL, cwd=tmp_path)
    try:
        url = wait_for_url(process)
        assert url.startswith(f"http://127.0.0.1:{port}/webhook/tradingview/")
        state = tmp_path / ".local" / "state" / "traderd"
        assert (state / "traderd.db").is_file()
        token = url.rsplit("/", 1)[1]
        assert (state / "webhook_secret").read_text().strip() == token
        body = {"ticker": "AAPL", "action": "buy", "quantity": "3", "price": "187.5", "id": "sub-1"}
        answer = httpx.post(url, content=json.dumps(body), headers={"Content-Type": "text/plain"}, timeout=10)
        assert answer.status_code == 202, answer.text
        signal_id = answer.json()["signal_id"]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            outcome = httpx.get(f"{base}/api/signals/{signal_id}", timeout=5).json()
            if outcome["status"] == "executed":
                break
            time.sleep(0.05)
        assert outcome["status"] == "executed"
        positions = httpx.get(f"{base}/api/positions", timeout=5).json()["positions"]
        assert [(p["symbol"], p["quantity"]) for p in positions] == [("AAPL", "3")]

        status = traderd("status", env=env)
        assert status.returncode == 0, status.stderr
        assert "ready" in status.stdout and "paper" in status.stdout
        flattened = traderd("flatten", "--yes", env=env)
        assert flattened.returncode == 0, flattened.stderr
        assert "executed" in flattened.stdout and "AAPL sell 3" in flattened.stdout
        assert httpx.get(f"{base}/api/positions", timeout=5).json()["positions"] == []
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        stderr = process.stderr.read() if process.stderr else ""
    assert code == 0, stderr
    assert "stopped cleanly" in stderr
    assert token not in stderr  # the secret never reaches the logs


def test_flatten_when_daemon_is_down_and_status_says_so(tmp_path: Path) -> None:
    env = clean_env(tmp_path, TRADERD_WEBHOOK__PORT=str(free_port()))
    assert traderd("status", env=env).returncode == 1
    refused = traderd("flatten", env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    offline = traderd("flatten", "paper", "--yes", env=env)
    assert offline.returncode == 0, offline.stderr
    assert "flattening directly" in offline.stderr and "executed" in offline.stdout


def test_version_init_check(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    version = traderd("version", env=env)
    assert version.returncode == 0 and version.stdout.startswith("traderd ")
    target = tmp_path / "etc" / "traderd.toml"
    assert traderd("init", str(target), env=env).returncode == 0
    assert traderd("init", str(target), env=env).returncode == 1  # never overwrites silently
    checked = traderd("check", "--config", str(target), env=env)
    assert checked.returncode == 0, checked.stderr
    assert "configuration OK" in checked.stdout
    via_env = traderd("check", env=env | {"TRADERD_CONFIG": str(target)})
    assert via_env.returncode == 0


def test_check_reports_every_problem_in_plain_words(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'default_account = "ghost"\n[webhook]\nport = 99999\nsecret = "s3cr3t-value"\nallowed_ips = ["nonsense"]\n'
        '[accounts.main.risk]\nmax_order_quantity = "-1"\nmax_orders_per_minute = "lots"\n'
        '[accounts.main]\nbrokr = "paper"\n'
    )
    result = traderd("check", "--config", str(bad), env=env)
    assert result.returncode == 2
    for expected in ("webhook.port", "webhook.allowed_ips", "max_order_quantity", "max_orders_per_minute",
                     "accounts.main.brokr: unknown option"):
        assert expected in result.stderr, result.stderr
    assert "s3cr3t-value" not in result.stderr + result.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text("[webhook\nport = 1")
    result = traderd("check", "--config", str(broken), env=env)
    assert result.returncode == 2 and "not valid TOML" in result.stderr
    missing = traderd("check", "--config", str(tmp_path / "missing.toml"), env=env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    semantic = tmp_path / "semantic.toml"
    semantic.write_text('default_account = "ghost"\n')
    result = traderd("check", "--config", str(semantic), env=env)
    assert result.returncode == 2 and "default_account 'ghost' is not one of the accounts" in result.stderr


def test_console_script_is_installed() -> None:
    assert shutil.which("traderd") or Path(sys.executable).with_name("traderd").exists()
