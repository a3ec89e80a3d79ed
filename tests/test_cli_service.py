"""`traderd url | status | flatten` against an installed-like service, run by an admin with another HOME.

The service is laid out as the shipped unit does it, under a temporary root: its configuration in etc/traderd,
its credentials handed over in $CREDENTIALS_DIRECTORY, its state in $STATE_DIRECTORY and its admin socket in
$RUNTIME_DIRECTORY. The admin runs `traderd` with a separate HOME and none of those variables.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.test_cli_subprocess import TRADERD, clean_env, free_port, wait_for_url

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
API_TOKEN = "service-api-token-0123456789"


@dataclass
class Service:
    root: Path
    config: Path
    state: Path
    runtime: Path
    credentials: Path
    port: int

    def daemon_env(self) -> dict[str, str]:
        return clean_env(self.root / "home" / "traderd", CREDENTIALS_DIRECTORY=str(self.credentials),
                         STATE_DIRECTORY=str(self.state), RUNTIME_DIRECTORY=str(self.runtime))

    def admin_env(self, **extra: str) -> dict[str, str]:
        return clean_env(self.root / "home" / "admin", **extra)

    def cli(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            user: int | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*TRADERD, *args], env=env or self.admin_env(), capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, cwd=cwd or REPO, user=user)


@pytest.fixture
def service() -> Iterator[Service]:
    # A short root: unix socket paths are limited to 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="tds-", dir="/tmp"))
    try:
        port = free_port()
        etc = root / "etc" / "traderd"
        (etc / "credentials").mkdir(parents=True, mode=0o700)
        (etc / "credentials" / "api.token").write_text(API_TOKEN + "\n")
        config = etc / "traderd.toml"
        state, runtime = root / "var" / "lib" / "traderd", root / "run" / "traderd"
        config.write_text(f'[daemon]\nstate_dir = "{state}"\nruntime_dir = "{runtime}"\n'
                          f'[webhook]\nport = {port}\n')
        credentials = root / "run" / "credentials" / "traderd.service"  # systemd's private copy
        credentials.mkdir(parents=True)
        shutil.copy(etc / "credentials" / "api.token", credentials / "api.token")
        for home in ("traderd", "admin"):
            (root / "home" / home).mkdir(parents=True)
        yield Service(root=root, config=config, state=state, runtime=runtime, credentials=credentials, port=port)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def running(service: Service) -> Iterator[tuple[Service, str]]:
    process = subprocess.Popen([*TRADERD, "run", "--config", str(service.config)], env=service.daemon_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL, cwd=service.root)
    try:
        url = wait_for_url(process)
        yield service, url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def secret_files(root: Path) -> list[Path]:
    return sorted(root.rglob("webhook_secret"))


def test_admin_gets_the_real_url_status_and_flatten_from_the_running_service(running: tuple[Service, str]) -> None:
    service, _ = running
    token = (service.state / "webhook_secret").read_text().strip()

    url = service.cli("url", "--config", str(service.config))
    assert url.returncode == 0, url.stderr
    assert url.stdout.strip() == f"http://127.0.0.1:{service.port}/webhook/tradingview/{token}"
    assert f"configuration: {service.config} (from --config)" in url.stderr
    body = {"ticker": "AAPL", "action": "buy", "quantity": "2", "price": "190", "id": "admin-1"}
    answer = httpx.post(url.stdout.strip(), json=body, timeout=10)
    assert answer.status_code == 202, answer.text  # the URL the admin got is the one the daemon accepts

    status = service.cli("status", "--config", str(service.config))
    assert status.returncode == 0, status.stderr
    assert "ready" in status.stdout and "paper" in status.stdout
    flattened = service.cli("flatten", "--yes", "--config", str(service.config))
    assert flattened.returncode == 0, flattened.stderr
    assert "executed" in flattened.stdout
    assert secret_files(service.root) == [service.state / "webhook_secret"]  # nothing invented elsewhere
    assert oct((service.runtime / "admin.sock").stat().st_mode & 0o777) == "0o600"


def test_url_reads_the_stopped_service_state_and_never_invents_a_secret(service: Service) -> None:
    missing = service.cli("url", "--config", str(service.config))
    assert missing.returncode == 1
    assert "sudo traderd" in missing.stderr and "admin socket" in missing.stderr, missing.stderr
    assert missing.stdout == ""
    assert secret_files(service.root) == []

    service.state.mkdir(parents=True)
    (service.state / "webhook_secret").write_text("kept-by-the-daemon\n")
    found = service.cli("url", "--config", str(service.config))
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip().endswith("/webhook/tradingview/kept-by-the-daemon")


def test_status_answered_401_tells_the_admin_what_to_do(running: tuple[Service, str]) -> None:
    service, _ = running
    # An admin whose CLI cannot use the socket (another runtime directory) and has no token.
    env = service.admin_env(TRADERD_DAEMON__RUNTIME_DIR=str(service.root / "elsewhere"))
    refused = service.cli("status", "--config", str(service.config), env=env)
    assert refused.returncode == 1
    assert "401" in refused.stderr
    assert "sudo traderd" in refused.stderr and "api.token" in refused.stderr, refused.stderr
    with_token = service.cli("status", "--config", str(service.config), env=env | {"TRADERD_API__TOKEN": API_TOKEN})
    assert with_token.returncode == 0, with_token.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_admin_socket_checks_the_peer_not_only_the_file_mode(running: tuple[Service, str]) -> None:
    service, _ = running
    sock_path = service.runtime / "admin.sock"
    os.chmod(service.runtime, 0o755)
    probe = ("import socket,sys;s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);"
             "s.sendall(b'GET /api/status HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n');"
             "print(s.recv(200).split(b'\\r\\n')[0].decode())")
    for parent in sock_path.parents:
        if parent == service.root.parent:
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o005)
    denied = subprocess.run(["python3", "-c", probe, str(sock_path)], user=65534, group=65534,
                            capture_output=True, text=True, timeout=20)
    assert "PermissionError" in denied.stderr  # 0600: another user cannot even connect
    os.chmod(sock_path, 0o666)  # a mistaken file mode still does not let them in
    refused = subprocess.run(["python3", "-c", probe, str(sock_path)], user=65534, group=65534,
                             capture_output=True, text=True, timeout=20)
    assert refused.stdout.strip().endswith("403 Forbidden"), refused.stdout + refused.stderr
    with socket.socket(socket.AF_UNIX) as own:  # root is always let in
        own.connect(str(sock_path))
        own.sendall(b"GET /api/status HTTP/1.0\r\nHost: x\r\n\r\n")
        assert own.recv(200).split(b"\r\n")[0].endswith(b"200 OK")


# ------------------------------------------------------------------------------------------ config discovery
def test_every_command_uses_and_names_the_discovered_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    work = tmp_path / "work"
    work.mkdir()
    none = subprocess.run([*TRADERD, "check"], env=env, cwd=work, capture_output=True, text=True, timeout=60)
    assert none.returncode == 0 and "configuration: no file: built-in defaults" in none.stderr, none.stderr

    xdg = tmp_path / "xdg"
    (xdg / "traderd").mkdir(parents=True)
    (xdg / "traderd" / "traderd.toml").write_text("[webhook]\nport = 9011\n")
    env_xdg = env | {"XDG_CONFIG_HOME": str(xdg)}
    found = subprocess.run([*TRADERD, "check"], env=env_xdg, cwd=work, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0 and "127.0.0.1:9011" in found.stdout, found.stdout + found.stderr
    assert f"configuration: {xdg / 'traderd' / 'traderd.toml'} (from $XDG_CONFIG_HOME)" in found.stderr

    (work / "traderd.toml").write_text("[webhook\nport = 1")  # what `traderd init` would write, broken
    broken = subprocess.run([*TRADERD, "check"], env=env_xdg, cwd=work, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 2 and "not valid TOML" in broken.stderr, broken.stdout + broken.stderr
    assert "(from ./traderd.toml)" in broken.stderr

    chosen = tmp_path / "chosen.toml"
    chosen.write_text("[webhook]\nport = 9022\n")
    by_env = subprocess.run([*TRADERD, "check"], env=env_xdg | {"TRADERD_CONFIG": str(chosen)}, cwd=work,
                            capture_output=True, text=True, timeout=60)
    assert by_env.returncode == 0 and "127.0.0.1:9022" in by_env.stdout, by_env.stderr
    assert "(from $TRADERD_CONFIG)" in by_env.stderr
    other = tmp_path / "other.toml"
    other.write_text("[webhook]\nport = 9033\n")
    by_flag = subprocess.run([*TRADERD, "check", "--config", str(other)], env=env_xdg | {"TRADERD_CONFIG": str(chosen)},
                             cwd=work, capture_output=True, text=True, timeout=60)
    assert by_flag.returncode == 0 and "127.0.0.1:9033" in by_flag.stdout
    status = subprocess.run([*TRADERD, "status", "--json"], env=env_xdg, cwd=work, capture_output=True, text=True,
                            timeout=60)
    assert "(from ./traderd.toml)" in status.stderr and status.returncode == 2
