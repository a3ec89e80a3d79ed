"""systemd/INSTALL.md, followed step by step in a clean temporary root, as far as it goes without systemd.

Every ```sh block of the Linux part runs in order, line by line, from the top of the checkout, with the
service's fixed paths moved under the temporary root and `sudo ` dropped. Then the service is started the
way the unit would start it (its ExecStart=, with $STATE_DIRECTORY, $RUNTIME_DIRECTORY and
$CREDENTIALS_DIRECTORY filled from its LoadCredential= lines), and the "Operate it" commands run as an
administrator with another HOME. The CLI finds /etc/traderd/traderd.toml, /var/lib/traderd and
/run/traderd by itself; under the temporary root it is pointed there with TRADERD_CONFIG and
TRADERD_DAEMON__* instead, and the webhook gets a free port.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_cli_subprocess import clean_env, free_port, wait_for_url
from tests.test_service_unit import parse_unit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # it installs the package into a fresh venv
REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "systemd" / "INSTALL.md"
UNIT = REPO / "systemd" / "traderd.service"
MOVED = ("/opt/traderd", "/etc/traderd", "/etc/systemd/system", "/usr/local/bin", "/var/lib/traderd", "/run/traderd")


def sh_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(heading, command lines) of every ```sh block, in order."""
    blocks, heading = [], ""
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("#"):
            heading = line.lstrip("# ").strip()
        if line.strip() == "```sh":
            body = []
            for inner in lines:
                if inner.strip() == "```":
                    break
                body.append(inner)
            blocks.append((heading, body))
    return blocks


def moved(command: str, root: Path) -> str:
    for path in MOVED:
        command = re.sub(rf"(?<![\w/]){re.escape(path)}(?=[/\s]|$)", f"{root}{path}", command)
    return command


def unsudo(command: str) -> str:
    return re.sub(r"(^|\|\s*)sudo ", r"\1", command)


def wait_for_position(port: int, token: str, expected: tuple[str, str] | None, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while True:
        answer = httpx.get(f"http://127.0.0.1:{port}/api/positions", headers={"Authorization": f"Bearer {token}"},
                           timeout=5)
        if answer.status_code == 200:
            held = [(p["symbol"], p["quantity"]) for p in answer.json()["positions"]]
            if held == ([expected] if expected else []):
                return
        assert time.monotonic() < deadline, f"positions never became {expected}: {answer.text}"
        time.sleep(0.1)


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tdi-", dir="/tmp"))  # short: the admin socket path must fit
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_install_md_followed_in_a_clean_root(root: Path) -> None:
    text = INSTALL.read_text()
    linux = text[text.index("## Linux"):text.index("## macOS")]
    assert "pip install traderd " not in linux.replace("`pip install traderd` from an index", "")
    blocks = sh_blocks(linux)
    install = [(h, b) for h, b in blocks if not h.startswith("5.")]
    operate = [line for h, b in blocks if h.startswith("5.") for line in b]
    assert [h.split(".")[0] for h, _ in install] == ["1", "2", "3", "4"]

    env = clean_env(root / "home" / "installer", PATH=f"{root}/usr/local/bin:{os.environ['PATH']}")
    (root / "home" / "installer").mkdir(parents=True)
    for _, lines in install:
        for line in lines:
            command = moved(unsudo(line), root)
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"

    # Step 1 put the program where the unit's ExecStart expects it, and on the PATH.
    service = parse_unit(UNIT.read_text())["Service"]
    exec_start = service["ExecStart"][-1].split()
    assert exec_start[0] == "/opt/traderd/venv/bin/traderd"
    program = Path(moved(exec_start[0], root))
    assert program.is_file() and os.access(program, os.X_OK)
    assert (root / "usr/local/bin/traderd").resolve() == program.resolve()
    config = Path(moved(exec_start[exec_start.index("--config") + 1], root))
    assert config.is_file()
    assert (root / "etc/systemd/system/traderd.service").read_text() == UNIT.read_text()

    # What systemd would do: credentials copied by id, state and runtime directories, then ExecStart.
    credentials = root / "run/credentials/traderd.service"
    credentials.mkdir(parents=True)
    for entry in service["LoadCredential"]:
        name, source = entry.split(":", 1)
        shutil.copy(moved(source, root), credentials / name)
    state, runtime = root / "var/lib/traderd", root / "run/traderd"
    state.mkdir(parents=True, mode=0o700)
    runtime.mkdir(parents=True, mode=0o755)
    port = free_port()
    daemon_env = clean_env(root / "home" / "service", STATE_DIRECTORY=str(state), RUNTIME_DIRECTORY=str(runtime),
                           CREDENTIALS_DIRECTORY=str(credentials), TRADERD_WEBHOOK__PORT=str(port),
                           JOURNAL_STREAM="8:1")  # under journald the banner hides the token
    (root / "home" / "service").mkdir(parents=True)
    process = subprocess.Popen([moved(part, root) for part in exec_start], env=daemon_env, cwd=state,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        banner = wait_for_url(process)
        assert banner.endswith("/<secret>")
        admin_env = clean_env(root / "home" / "admin", PATH=env["PATH"], TRADERD_CONFIG=str(config),
                              TRADERD_DAEMON__STATE_DIR=str(state), TRADERD_DAEMON__RUNTIME_DIR=str(runtime),
                              TRADERD_WEBHOOK__PORT=str(port))
        (root / "home" / "admin").mkdir(parents=True)
        outputs = {}
        api_token = (root / "etc/traderd/credentials/api.token").read_text().strip()
        for line in operate:
            command = moved(unsudo(line), root)
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=REPO, env=admin_env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
            outputs[command.split()[1]] = done.stdout
            if command.split()[1] == "url":  # TradingView uses the URL: a position for the flatten to close
                url = done.stdout.strip()
                secret = (root / "etc/traderd/credentials/webhook.secret").read_text().strip()
                assert url == f"http://127.0.0.1:{port}/webhook/tradingview/{secret}"
                accepted = httpx.post(url, json={"ticker": "AAPL", "action": "buy", "quantity": "1",
                                                 "price": "190", "id": "install-1"}, timeout=10)
                assert accepted.status_code == 202, accepted.text
                wait_for_position(port, api_token, ("AAPL", "1"))
        assert set(outputs) == {"status", "url", "flatten"}
        assert "ready" in outputs["status"] and "paper" in outputs["status"]
        assert "executed" in outputs["flatten"] and "AAPL sell 1" in outputs["flatten"]
        wait_for_position(port, api_token, None)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert not (root / "home" / "admin" / ".local" / "state" / "traderd" / "webhook_secret").exists()
