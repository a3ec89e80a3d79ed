"""systemd's notify protocol (READY/STATUS/WATCHDOG/STOPPING) and the engine-driven watchdog.

- `SystemdNotifier` speaks systemd's notify protocol; it does nothing when `$NOTIFY_SOCKET` is unset
  (launchd, a terminal, tests), so callers never branch on "am I under systemd".
- `Watchdog` pets systemd's watchdog only while the engine loop keeps calling `beat()`: a hung engine
  stops the petting and systemd kills and restarts the process (`WatchdogSec=` + `Restart=on-failure`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


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

    async def pet_while(self, alive: Callable[[], bool]) -> None:
        """Beat only while `alive()` says the engine's workers make progress, so a stalled engine is
        restarted; runs until cancelled."""
        async def beat_while_alive() -> None:
            while True:
                if alive():
                    self.beat()
                await asyncio.sleep(min(1.0, self.interval / 4))

        await asyncio.gather(beat_while_alive(), self.run())
