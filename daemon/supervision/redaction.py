"""Secret redaction for every text that leaves the daemon: configured values and credential-shaped patterns."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

REDACTED = "***"
# Configured secrets shorter than this are not redacted by value: "a" or "1" would mangle every line.
MIN_SECRET_LENGTH = 4
# A run of this many characters of a configured secret is redacted wherever it appears (a broker that
# echoes the first 20 characters of a key, a message cut short in the middle of one), together with the
# word it sits in. Only runs that mix letters and digits or cases count, so "webhooks" in a secret URL
# does not redact every "webhooks" in the text.
PARTIAL_LENGTH = 8
_WORD = re.compile(rf"[A-Za-z0-9+/=_.~-]{{{PARTIAL_LENGTH},}}")
_SECRET_RUN = re.compile(rf"[A-Za-z0-9]{{{PARTIAL_LENGTH},}}")


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
        self._known: set[str] = set()
        self.learn(*secrets)

    def learn(self, *secrets: str) -> None:
        """Redact these values too from now on (a secret the daemon generates after start-up)."""
        self._known.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)
        values = sorted(self._known, key=len, reverse=True)
        self._values = re.compile("|".join(re.escape(v) for v in values)) if values else None
        self._pieces = frozenset(
            run[i : i + PARTIAL_LENGTH]
            for value in values for run in _SECRET_RUN.findall(value)
            for i in range(len(run) - PARTIAL_LENGTH + 1)
            if _mixed(run[i : i + PARTIAL_LENGTH])
        )

    def redact(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(REDACTED, text)
        if self._pieces:
            text = _WORD.sub(self._partial, text)
        text = _TELEGRAM_TOKEN.sub(REDACTED, text)
        text = _DISCORD_WEBHOOK.sub(rf"\g<1>{REDACTED}", text)
        text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
        text = _AUTH_HEADER.sub(rf"\g<1>{REDACTED}", text)
        text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
        return _KEYED_VALUE.sub(rf"\g<1>{REDACTED}", text)

    def _partial(self, match: re.Match[str]) -> str:
        word = match.group()
        pieces = self._pieces
        for i in range(len(word) - PARTIAL_LENGTH + 1):
            if word[i : i + PARTIAL_LENGTH] in pieces:
                return REDACTED
        return word

    def redact_strings(self, value: Any) -> Any:
        """Deep copy of JSON-like data with every string redacted (keys and structure kept)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.redact_strings(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_strings(v) for v in value]
        return value

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


def _mixed(piece: str) -> bool:
    """Two of lower case, upper case, digits: how a key looks, unlike an ordinary word or number."""
    return sum((any(c.islower() for c in piece), any(c.isupper() for c in piece),
                any(c.isdigit() for c in piece))) >= 2


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


