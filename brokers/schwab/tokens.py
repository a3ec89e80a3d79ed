"""Schwab OAuth tokens on disk: one 0600 JSON file per account in the state directory, written atomically.

`traderd auth schwab --account NAME` writes it after the browser login; the daemon reads it, replaces the
access token as it renews it (about every 30 minutes) and remembers which expiry warnings it already
gave, so a restart neither loses a login nor repeats a warning. The refresh token's lifetime is not in
Schwab's answers: it is counted from the login (`refresh_issued_at`), 7 days by Schwab's guides.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def token_path(state_dir: Path, account: str) -> Path:
    """Where the login of `account` lives: `state_dir/schwab/<account>.token.json`."""
    return state_dir / "schwab" / f"{account}.token.json"


@dataclass
class SchwabTokens:
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_issued_at: datetime  # the browser login; the refresh token dies `refresh_token_days` later
    token_type: str = "Bearer"
    scope: str = ""
    warned: list[float] = field(default_factory=list)  # hours-before-expiry thresholds already announced

    def refresh_expires_at(self, days: float) -> datetime:
        return self.refresh_issued_at + timedelta(days=days)

    @classmethod
    def from_answer(cls, answer: dict[str, Any], now: datetime, issued_at: datetime | None = None,
                    warned: list[float] | None = None) -> SchwabTokens:
        """From the token endpoint's JSON (`access_token`, `refresh_token`, `expires_in` seconds)."""
        try:
            return cls(
                access_token=str(answer["access_token"]), refresh_token=str(answer["refresh_token"]),
                access_expires_at=now + timedelta(seconds=float(answer.get("expires_in") or 1800)),
                refresh_issued_at=issued_at or now, token_type=str(answer.get("token_type") or "Bearer"),
                scope=str(answer.get("scope") or ""), warned=list(warned or []),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the token endpoint's answer lacks {exc}") from None


class TokenFile:
    """Reads and writes one account's `SchwabTokens`; notices when another process (the CLI) rewrote it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None

    def exists(self) -> bool:
        return self.path.is_file()

    def changed(self) -> bool:
        """True if the file was written by someone else since this object last read or wrote it."""
        try:
            return self.path.stat().st_mtime_ns != self._stamp
        except FileNotFoundError:
            return False

    def load(self) -> SchwabTokens | None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self._stamp = self.path.stat().st_mtime_ns
            return SchwabTokens(
                access_token=raw["access_token"], refresh_token=raw["refresh_token"],
                access_expires_at=_time(raw["access_expires_at"]), refresh_issued_at=_time(raw["refresh_issued_at"]),
                token_type=raw.get("token_type", "Bearer"), scope=raw.get("scope", ""),
                warned=[float(h) for h in raw.get("warned", [])],
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path} is not a Schwab token file ({type(exc).__name__}: {exc})") from None

    def save(self, tokens: SchwabTokens) -> None:
        """Atomically (temp file + rename), readable by the owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(tokens).items()}
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".token-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        self._stamp = self.path.stat().st_mtime_ns


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
