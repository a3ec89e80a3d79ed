"""Tests for daemon.supervision: sd_notify, the stall-aware watchdog, log redaction and Sentry."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from daemon.supervision.logs import QUIET_LOGGERS, configure_logging
from daemon.supervision.notify import SystemdNotifier, Watchdog, watchdog_interval
from daemon.supervision.redaction import Redactor, collect_secrets
from daemon.supervision.sentry import init_sentry, make_before_send

SECRET = "s3cr3t-Value-42"
PLAIN_TOKEN = "plain-token-value"  # not configured: only its `token=` context marks it as secret
TELEGRAM_URL = "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getUpdates"


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    path = str(tmp_path / "notify.sock")
    if len(path) > 100:  # sun_path limit
        path = f"/tmp/traderd-notify-{uuid.uuid4().hex[:8]}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()
    Path(path).unlink(missing_ok=True)


def receive_all(sock: socket.socket, wait: float = 0.05) -> list[str]:
    """Every datagram that arrives within `wait` seconds of the last one."""
    received: list[str] = []
    sock.settimeout(wait)
    try:
        while True:
            received.append(sock.recv(4096).decode())
    except TimeoutError:
        return received


@pytest.fixture
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for name, value in quiet.items():
        logging.getLogger(name).setLevel(value)
    logging.captureWarnings(False)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------------------ sd_notify
def test_notifier_sends_lifecycle_datagrams(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = SystemdNotifier()
    assert notifier.enabled

    assert notifier.ready("listening on\n127.0.0.1:8080")
    assert sock.recv(4096).decode() == "READY=1\nSTATUS=listening on 127.0.0.1:8080"
    assert notifier.status("2 accounts, 0 open orders")
    assert sock.recv(4096).decode() == "STATUS=2 accounts, 0 open orders"
    assert notifier.watchdog()
    assert sock.recv(4096).decode() == "WATCHDOG=1"
    assert notifier.extend_timeout(20)
    assert sock.recv(4096).decode() == "EXTEND_TIMEOUT_USEC=20000000"
    assert notifier.reloading()
    reload_fields = sock.recv(4096).decode().split("\n")
    assert reload_fields[0] == "RELOADING=1" and reload_fields[1].startswith("MONOTONIC_USEC=")
    assert notifier.stopping()
    assert sock.recv(4096).decode() == "STOPPING=1"
    notifier.close()


def test_notifier_supports_abstract_sockets() -> None:
    name = f"traderd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
    except OSError:
        pytest.skip("abstract unix sockets are Linux-only")
    sock.settimeout(2.0)
    try:
        notifier = SystemdNotifier("@" + name)
        assert notifier.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.close()
    finally:
        sock.close()


def test_notifier_is_a_no_op_without_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_notifier_survives_a_vanished_socket(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone.sock"))
    assert notifier.enabled
    assert notifier.watchdog() is False  # logged at debug, never raised


def test_watchdog_interval_is_half_the_timeout() -> None:
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


# ------------------------------------------------------------------------------------------------ watchdog
def test_watchdog_stops_petting_after_a_stall_and_resumes(
    notify_socket: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    sock, path = notify_socket
    clock = FakeClock()
    dog = Watchdog(SystemdNotifier(path), interval=5, stall_seconds=30, clock=clock)

    assert dog.check()
    assert receive_all(sock) == ["WATCHDOG=1"]
    clock.now += 29
    dog.beat()
    clock.now += 29
    assert dog.check() and not dog.stalled
    assert receive_all(sock) == ["WATCHDOG=1"]

    clock.now += 1  # 30 s without a beat
    with caplog.at_level(logging.ERROR, logger="daemon.supervision"):
        assert not dog.check()
        clock.now += 10
        assert not dog.check()
    assert dog.stalled
    stall_logs = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(stall_logs) == 1 and "no longer petting" in stall_logs[0].getMessage()
    assert receive_all(sock) == ["STATUS=engine stalled for 30s"]  # a status line, no WATCHDOG=1

    dog.beat()
    assert dog.check()
    assert receive_all(sock) == ["WATCHDOG=1"]
    assert dog.pets == 3


async def test_watchdog_task_goes_silent_when_the_engine_stalls(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    clock = FakeClock()
    dog = Watchdog(SystemdNotifier(path), interval=0.01, stall_seconds=5, clock=clock)
    task = asyncio.create_task(dog.run())
    try:
        for _ in range(3):  # petting while the engine beats
            clock.now += 1
            dog.beat()
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout=2)
            assert data == b"WATCHDOG=1"

        clock.now += 6  # the engine loop hangs
        while True:  # pets already in flight, then the one STATUS line announcing the stall
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout=2)
            if data.startswith(b"STATUS="):
                break
            assert data == b"WATCHDOG=1"
        pets_at_stall = dog.pets
        with pytest.raises(TimeoutError):  # ~10 intervals of silence
            await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout=0.1)
        assert dog.pets == pets_at_stall

        dog.beat()  # the engine recovers
        data = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout=2)
        assert data == b"WATCHDOG=1"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_watchdog_rejects_nonsense_intervals() -> None:
    with pytest.raises(ValueError):
        Watchdog(SystemdNotifier(None), interval=0, stall_seconds=30)


# ------------------------------------------------------------------------------------------------ redaction
def test_redactor_patterns() -> None:
    r = Redactor([SECRET, "ab"])  # too-short values are ignored
    assert r.redact(f"x {SECRET} y") == "x *** y"
    assert r.redact("ab cab") == "ab cab"
    assert r.redact(TELEGRAM_URL) == "https://api.telegram.org/bot***/getUpdates"
    assert r.redact("GET /cb?token=abc123&x=1") == "GET /cb?token=***&x=1"
    assert r.redact('{"client_secret": "zz9", "qty": 2}') == '{"client_secret": "***", "qty": 2}'
    assert r.redact("Authorization: Bearer eyJhbGci.x") == "Authorization: ***"
    assert r.redact("sent Bearer eyJhbGci.x") == "sent Bearer ***"
    assert r.redact("postgresql://trader:pa55@db:5432/t") == "postgresql://trader:***@db:5432/t"
    assert r.redact("https://discord.com/api/webhooks/123/AbC-_9") == "https://discord.com/api/webhooks/123/***"
    assert r.redact("filled 3 ES at 5012.25") == "filled 3 ES at 5012.25"


def test_collect_secrets_walks_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "webhook.secret").write_text("wh-secret-1\n")
    (tmp_path / "api.token").write_text("api-token-2\n")
    settings = load_settings()
    assert sorted(collect_secrets(settings)) == ["api-token-2", "wh-secret-1"]


def _log_everything(logger: logging.Logger) -> None:
    logger.info(f"webhook secret is {SECRET}")
    logger.warning("calling %s with %r", TELEGRAM_URL, {"key": SECRET})
    logger.info("named %(who)s", {"who": SECRET})
    try:
        raise RuntimeError(f"broker rejected credentials {SECRET}")
    except RuntimeError:
        logger.exception("order failed, token=%s", "plain-token-value")


def test_text_logs_are_redacted(clean_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    configure_logging("INFO", "text", [SECRET], stream=out)
    _log_everything(logging.getLogger("traderd.test"))

    text = out.getvalue()
    assert SECRET not in text and "AAHdqTcv" not in text and "plain-token-value" not in text
    assert "webhook secret is ***" in text
    assert "bot***/getUpdates" in text and "{'key': '***'}" in text
    assert "named ***" in text
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: broker rejected credentials ***" in text
    assert "order failed, token=***" in text
    first = text.splitlines()[0]
    assert first[:4].isdigit() and " INFO    traderd.test: " in first  # timestamped outside journald


def test_json_logs_are_redacted_and_parse(clean_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    configure_logging("info", "json", [SECRET], stream=out)
    logger = logging.getLogger("traderd.test")
    _log_everything(logger)
    logger.info("with extra", extra={"account": "main", "api_key": "k-123456"})

    assert SECRET not in out.getvalue()
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(entries) == 5
    assert entries[0]["level"] == "INFO" and entries[0]["logger"] == "traderd.test" and "ts" in entries[0]
    assert entries[3]["level"] == "ERROR" and "RuntimeError: broker rejected credentials ***" in entries[3]["exc"]
    assert entries[4]["account"] == "main" and entries[4]["api_key"] == "***"


def test_journald_format_has_priorities_and_no_timestamps(clean_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # a StringIO has no fd to compare: trust the env
    out = io.StringIO()
    configure_logging("DEBUG", "text", [SECRET], stream=out)
    logger = logging.getLogger("traderd.test")
    logger.debug("d")
    logger.warning("w")
    try:
        raise ValueError(SECRET)
    except ValueError:
        logger.error("boom", exc_info=True)

    lines = out.getvalue().splitlines()
    assert lines[0] == "<7>traderd.test: d"
    assert lines[1] == "<4>traderd.test: w"
    assert lines[2] == "<3>traderd.test: boom"
    assert all(line.startswith("<3>") for line in lines[2:])  # traceback lines keep the error level
    assert lines[-1] == "<3>ValueError: ***"


def test_journal_stream_must_match_the_stream(
    clean_logging: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")  # inherited from a parent, not our stderr
    with open(tmp_path / "log.txt", "w") as out:
        configure_logging("INFO", "text", [], stream=out)
        logging.getLogger("traderd.test").info("hello")
    assert not (tmp_path / "log.txt").read_text().startswith("<")


def test_configure_logging_is_idempotent(clean_logging: None) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "text", ["old-secret"], stream=first)
    configure_logging("WARNING", "text", ["new-secret"], stream=second)
    assert len(root.handlers) == before + 1
    assert root.level == logging.WARNING
    assert logging.getLogger("httpx").level == logging.WARNING

    logging.getLogger("traderd.test").warning("rotated new-secret once")
    assert first.getvalue() == ""
    assert second.getvalue().count("rotated *** once") == 1
    with pytest.raises(ValueError):
        configure_logging("LOUD", "text", [], stream=second)


# ------------------------------------------------------------------------------------------------ Sentry
def test_before_send_scrubs_the_whole_event() -> None:
    before_send = make_before_send([SECRET])
    event: dict[str, Any] = {
        "message": f"failed with {SECRET}",
        "logentry": {
            "message": "login token=%s",
            "params": ["plain-token-value"],
            "formatted": "login token=plain-token-value",
        },
        "exception": {"values": [{"type": "RuntimeError", "value": f"bad key {SECRET}", "stacktrace": {"frames": []}}]},
        "breadcrumbs": {"values": [{"category": "httpx", "message": f"GET {TELEGRAM_URL}", "level": "info"}]},
        "request": {
            "url": f"http://127.0.0.1:8080/webhook/tradingview/{SECRET}",
            "query_string": "token=abcdef",
            "headers": {"Authorization": "Bearer xyz123", "User-Agent": "Go-http-client/1.1"},
            "data": {"secret": "other-inline", "ticker": "ES1!"},
        },
        "extra": {"note": f"value={SECRET}"},
        "level": "error",
    }
    scrubbed = before_send(event, {})

    dumped = json.dumps(scrubbed)
    for leaked in (SECRET, "AAHdqTcv", "abcdef", "xyz123", "other-inline", "plain-token-value"):
        assert leaked not in dumped
    assert scrubbed["logentry"] == {
        "message": "login token=***",
        "params": [],
        "formatted": "login token=***",
    }
    assert scrubbed["exception"]["values"][0]["type"] == "RuntimeError"
    assert scrubbed["exception"]["values"][0]["value"] == "bad key ***"
    assert scrubbed["request"]["headers"]["User-Agent"] == "Go-http-client/1.1"
    assert scrubbed["request"]["data"]["ticker"] == "ES1!"
    assert scrubbed["level"] == "error"
    assert SECRET in json.dumps(event)  # the input is not mutated


def test_init_sentry_without_dsn_does_nothing() -> None:
    assert init_sentry(None, "test", "0.0.0", [SECRET]) is False
    assert init_sentry("", "test", "0.0.0", [SECRET]) is False


class _EnvelopeSink(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        elif self.headers.get("Content-Encoding") == "br":
            import brotli  # type: ignore[import-not-found]

            body = brotli.decompress(body)
        self.server.bodies.append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_sentry_events_leave_the_process_scrubbed(clean_logging: None) -> None:
    import sentry_sdk

    server = ThreadingHTTPServer(("127.0.0.1", 0), _EnvelopeSink)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    dsn = f"http://publickey@127.0.0.1:{server.server_address[1]}/42"
    try:
        assert init_sentry(dsn, "test", "traderd@0.0.0", [SECRET]) is True
        assert sentry_sdk.get_client().should_send_default_pii() is False
        logger = logging.getLogger("traderd.sentrytest")
        logger.warning("about to call %s with %s", TELEGRAM_URL, SECRET)  # becomes a breadcrumb
        try:
            raise RuntimeError(f"broker said no to {SECRET}")
        except RuntimeError:
            logger.exception("order failed, token=%s", PLAIN_TOKEN)  # source context is sent too
        sentry_sdk.flush(timeout=5)
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)  # no Sentry for the rest of the session
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    sent = b"".join(server.bodies)  # type: ignore[attr-defined]
    assert b"RuntimeError" in sent and b"order failed" in sent
    assert b"about to call" in sent and b"traderd@0.0.0" in sent
    assert SECRET.encode() not in sent and b"AAHdqTcv" not in sent and PLAIN_TOKEN.encode() not in sent
