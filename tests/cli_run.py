"""`traderd` as a subprocess for the tests, as a user runs it: exit code, stdout and stderr, bounded in time.

The environment is the test's own without any `TRADERD_*` variable, so only the arguments configure it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def traderd(*args: str, within: float = 90) -> tuple[int, str, str]:
    """Run `python -m daemon.cli ARGS` from the repository root; killed (and the wait fails) after `within` s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADERD_")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "daemon.cli", *args, cwd=ROOT, env=env,
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
