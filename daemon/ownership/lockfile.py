"""One daemon per state directory (and per SQLite file): an exclusive `flock` on a lock file holding our pid.

The kernel drops the lock when the process dies, however it dies, so a crashed daemon never leaves a stale
lock behind; the pid written into the file is only there to name the running daemon in the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = "traderd.lock"


class AlreadyRunning(RuntimeError):
    """Another traderd holds the lock; the message names its pid and the locked path."""


class LockFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> LockFile:
        return cls(state_dir / LOCK_NAME)

    def acquire(self) -> None:
        """Raises `AlreadyRunning` at once (no waiting) when another process holds the lock."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise AlreadyRunning(f"another traderd ({who}) is running on {self.path.parent} "
                                 f"(lock {self.path}); stop it first, or give this one its own "
                                 "daemon.state_dir and a PostgreSQL store.url") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
