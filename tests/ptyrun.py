"""Run a command with its stderr on a pseudo-terminal (so it believes a person watches) and collect what it wrote."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from pathlib import Path


def stderr_on_a_terminal(command: Sequence[str], cwd: Path, timeout: float = 120) -> tuple[int, bytes]:
    """(exit code, bytes written to the terminal) of `command`, stdout piped away, a 100-column terminal."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(list(command), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=secondary)
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1)
        if ready:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    assert proc.stdout is not None
    proc.stdout.close()
    os.close(primary)
    return proc.returncode, seen
