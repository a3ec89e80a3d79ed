"""stdlib logging for a supervised process: journald-friendly text or JSON, secrets scrubbed from every record.

`configure_logging` sends stdlib logging to stderr in a journald-friendly shape and scrubs secrets
(configured values, `token=...`, bearer tokens, Telegram bot tokens, URL passwords) from every record.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from daemon.supervision.redaction import Redactor

# Chatty libraries turned down to WARNING unless the level is DEBUG (httpx logs every Telegram long-poll).
QUIET_LOGGERS = ("httpx", "httpcore", "apscheduler", "alembic", "telegram.ext", "discord")


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


