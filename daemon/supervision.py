"""Running under a supervisor: sd_notify (READY/STATUS/WATCHDOG/STOPPING), redacted logging, and Sentry.

- `SystemdNotifier` speaks systemd's notify protocol; it does nothing when `$NOTIFY_SOCKET` is unset
  (launchd, a terminal, tests), so callers never branch on "am I under systemd".
- `Watchdog` pets systemd's watchdog only while the engine loop keeps calling `beat()`: a hung engine
  stops the petting and systemd kills and restarts the process (`WatchdogSec=` + `Restart=on-failure`).
- `configure_logging` sends stdlib logging to stderr in a journald-friendly shape and scrubs secrets
  (configured values, `token=...`, bearer tokens, Telegram bot tokens, URL passwords) from every record.
- `init_sentry` turns on error reporting only when a DSN is configured, with the same scrubbing applied
  to every event before it leaves the machine.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from pydantic import BaseModel, SecretStr

log = logging.getLogger(__name__)

REDACTED = "***"
# Configured secrets shorter than this are not redacted by value: "a" or "1" would mangle every line.
MIN_SECRET_LENGTH = 4
# Chatty libraries turned down to WARNING unless the level is DEBUG (httpx logs every Telegram long-poll).
QUIET_LOGGERS = ("httpx", "httpcore", "apscheduler", "alembic", "telegram.ext", "discord")


# --------------------------------------------------------------------------------------------- sd_notify
# Hand-written on purpose: the protocol is "send one datagram of KEY=VALUE lines to $NOTIFY_SOCKET", which
# fits in a few lines. The packages that wrap it (systemd-python, sdnotify) either need libsystemd headers
# to build, do not exist on macOS, or add a dependency for less code than this class.
class SystemdNotifier:
    """sd_notify(3) over the `$NOTIFY_SOCKET` datagram socket; every method is a no-op without one."""

    def __init__(self, socket_path: str | None = None) -> None:
        path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
        if path.startswith("@"):  # abstract namespace socket (Linux)
            path = "\0" + path[1:]
        self._address = path or None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=VALUE` fields in one datagram. Returns False (never raises) if it could not be sent."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:  # a supervisor hiccup must never take the daemon down
            log.debug("sd_notify %s failed: %s", fields, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def reloading(self) -> bool:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop (slow migrations, broker reconciliation)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of `WatchdogSec=`), or None if no watchdog is armed for us."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None  # the variable was inherited from a parent the watchdog is meant for
        except ValueError:
            return None
    return usec / 2 / 1_000_000


class Watchdog:
    """Pets systemd's watchdog only while the engine is alive, as witnessed by recent `beat()` calls."""

    def __init__(
        self,
        notifier: SystemdNotifier,
        interval: float,
        stall_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or stall_seconds <= 0:
            raise ValueError("interval and stall_seconds must be positive")
        self.notifier = notifier
        self.interval = interval
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._last_beat = clock()  # the engine gets `stall_seconds` to start beating
        self._stalled = False
        self.pets = 0

    def beat(self) -> None:
        """Called by the engine loop every iteration; only stores a timestamp."""
        self._last_beat = self._clock()

    def silence(self) -> float:
        """Seconds since the last beat."""
        return self._clock() - self._last_beat

    @property
    def stalled(self) -> bool:
        return self.silence() >= self.stall_seconds

    def check(self) -> bool:
        """Pet the watchdog if the engine beat recently. Returns whether WATCHDOG=1 was sent."""
        silence = self.silence()
        if silence >= self.stall_seconds:
            if not self._stalled:
                self._stalled = True
                log.error(
                    "engine loop has not run for %.1fs (limit %.1fs): no longer petting the systemd "
                    "watchdog, the service manager will restart traderd",
                    silence,
                    self.stall_seconds,
                )
                self.notifier.status(f"engine stalled for {silence:.0f}s")
            return False
        if self._stalled:
            self._stalled = False
            log.warning("engine loop is running again after a stall; petting the watchdog again")
        if self.notifier.watchdog():
            self.pets += 1
        return True

    async def run(self) -> None:
        """Pet every `interval` seconds until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(self.interval)


# --------------------------------------------------------------------------------------------- redaction
_KEYED_VALUE = re.compile(
    r"""(?ix)
    (\b[\w-]*(?:secret|token|passw(?:or)?d|api[_-]?key|apikey|private[_-]?key|signature)[\w-]*
       ["']?\s*[=:]\s*["']?)        # key, optional quote, = or :, optional quote
    ([^\s"'&,;}\]]+)                # the value, up to a delimiter
    """
)
_BEARER = re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/=-]+")
_AUTH_HEADER = re.compile(r"""(?i)(\b(?:proxy-)?authorization["']?\s*[:=]\s*["']?)[^"'\r\n,}]+""")
_TELEGRAM_TOKEN = re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}")
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
_DISCORD_WEBHOOK = re.compile(r"(?i)(discord(?:app)?\.com/api/webhooks/\d+/)[A-Za-z0-9_-]+")
# Dictionary keys whose value is replaced wholesale in Sentry events (headers, request bodies, locals).
_SENSITIVE_KEY = re.compile(r"(?i)secret|token|passw|api[_-]?key|apikey|authorization|cookie|signature|dsn")


class Redactor:
    """Replaces secrets in text: configured values plus patterns that look like credentials."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._values = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def redact(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(REDACTED, text)
        text = _TELEGRAM_TOKEN.sub(REDACTED, text)
        text = _DISCORD_WEBHOOK.sub(rf"\g<1>{REDACTED}", text)
        text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
        text = _AUTH_HEADER.sub(rf"\g<1>{REDACTED}", text)
        text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
        return _KEYED_VALUE.sub(rf"\g<1>{REDACTED}", text)

    def scrub(self, value: Any, key: str | None = None) -> Any:
        """Deep copy of JSON-like data with strings redacted and values under sensitive keys replaced."""
        if key is not None and _SENSITIVE_KEY.search(key) and value not in (None, "", [], {}):
            return REDACTED
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.scrub(v, k if isinstance(k, str) else None) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.scrub(v) for v in value)
        return value


def collect_secrets(model: BaseModel) -> list[str]:
    """Every `SecretStr` value set anywhere in a pydantic model tree (e.g. the loaded `Settings`)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name, None))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item)

    walk(model)
    return [s for s in found if s]


class RedactingFilter(logging.Filter):
    """Scrubs a log record's message, arguments, exception text and stack in place."""

    _plain = (int, float, bool, type(None))

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact
        try:
            message = record.getMessage()
        except Exception:  # a broken format call: logging reports it, so scrub the parts it will print
            record.msg = redact(record.msg) if isinstance(record.msg, str) else self._arg(record.msg)
            if isinstance(record.args, Mapping):
                record.args = {k: self._arg(v) for k, v in record.args.items()}
            elif isinstance(record.args, tuple):
                record.args = tuple(self._arg(a) for a in record.args)
        else:
            # Redact the merged text, not the template and the arguments apart: "token=%s" % value only
            # looks like a credential once formatted, and a redacted template could no longer be formatted.
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            # Render now so the redacted text is what every formatter (and handler) reuses.
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True

    def _arg(self, value: Any) -> Any:
        if isinstance(value, self._plain):
            return value
        if isinstance(value, str):
            return self.redactor.redact(value)
        text = str(value)
        cleaned = self.redactor.redact(text)
        return value if cleaned == text else cleaned  # keep the object unless it carried a secret


# --------------------------------------------------------------------------------------------- logging
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def _priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _SYSLOG_PRIORITY[level]
    return 7


def _stream_is_journal(stream: TextIO) -> bool:
    """True if `$JOURNAL_STREAM` says this stream is connected to journald (systemd.exec(5))."""
    value = os.environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return True  # no file descriptor to compare against: trust the environment
    dev, _, ino = value.partition(":")
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


class _TextFormatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        fmt = "%(name)s: %(message)s" if journal else "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
        super().__init__(fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        # journald reads the <N> prefix per line; tag traceback lines too so they keep the record's level.
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines())


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _JsonFormatter(logging.Formatter):
    def __init__(self, journal: bool, redactor: Redactor) -> None:
        super().__init__()
        self.journal = journal
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {}
        if not self.journal:
            entry["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry.update(level=record.levelname, logger=record.name, msg=record.getMessage())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in entry:
                plain = value if isinstance(value, str | int | float | bool) or value is None else str(value)
                entry[key] = self.redactor.scrub(plain, key)
        text = json.dumps(entry, ensure_ascii=False, default=str)
        return f"<{_priority(record.levelno)}>{text}" if self.journal else text


def configure_logging(
    level: str,
    fmt: Literal["text", "json"],
    secrets: Iterable[str],
    *,
    stream: TextIO | None = None,
) -> None:
    """Log to stderr (or `stream`) with secrets scrubbed. Calling again replaces the previous setup.

    Under systemd (`$JOURNAL_STREAM` matches stderr) lines carry no timestamp, because journald adds its
    own, and start with a `<N>` syslog priority so `journalctl -p err` works.
    """
    target = stream if stream is not None else sys.stderr
    journal = _stream_is_journal(target)
    redactor = Redactor(secrets)
    handler = logging.StreamHandler(target)
    handler.set_name("traderd")
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(_JsonFormatter(journal, redactor) if fmt == "json" else _TextFormatter(journal))

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "traderd"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if numeric <= logging.DEBUG else logging.WARNING)
    logging.captureWarnings(True)
    if stream is None and not faulthandler.is_enabled():
        # A watchdog kill is SIGABRT: dump every thread's stack first so the journal shows where it hung.
        try:
            faulthandler.enable(file=sys.stderr)
        except (AttributeError, OSError, ValueError):
            pass


# --------------------------------------------------------------------------------------------- Sentry
def make_before_send(secrets: Iterable[str]) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    """A Sentry `before_send` that scrubs secrets from the whole event.

    Messages, log entries, exception values, breadcrumbs, request data (URL, query, headers, body), extra
    and frame variables: every string is redacted, and values under credential-like keys are replaced.
    """
    redactor = Redactor(secrets)

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        scrubbed: dict[str, Any] = redactor.scrub(event)
        entry, original = scrubbed.get("logentry"), event.get("logentry")
        if isinstance(entry, dict) and isinstance(original, dict) and isinstance(entry.get("formatted"), str):
            if entry["formatted"] != original.get("formatted"):
                # "token=%s" + ["abc"]: only the formatted text shows the secret, so the template and
                # its parameters cannot be sent apart; send the redacted text alone.
                entry.update(message=entry["formatted"], params=[])
        return scrubbed

    return before_send


def init_sentry(dsn: str | None, environment: str, release: str, secrets: Iterable[str]) -> bool:
    """Start Sentry error reporting if a DSN is configured. Returns whether it was initialised."""
    if not dsn:
        return False
    import sentry_sdk  # imported lazily: most installs never configure it

    secrets = list(secrets)
    before_send = make_before_send([*secrets, dsn])
    redactor = Redactor(secrets)

    def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        cleaned: dict[str, Any] = redactor.scrub(crumb)
        return cleaned

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        # send_default_pii is left at its default, False (user IPs, cookies, headers, bodies are not sent):
        # passing it explicitly is deprecated from sentry-sdk 2.75 on, in favour of `data_collection`,
        # which older 2.x releases reject.
        include_local_variables=False,  # frame locals hold order and account data; keep them on the box
        before_send=before_send,  # type: ignore[arg-type]
        before_breadcrumb=before_breadcrumb,  # type: ignore[arg-type]
        max_breadcrumbs=50,
    )
    return True
