"""Sentry's asyncio integration: an exception that ends a background task is reported, scrubbed."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from daemon.supervision.sentry import init_sentry
from tests.test_supervision import SECRET, _EnvelopeSink


async def test_an_error_that_ends_a_task_reaches_sentry() -> None:
    import sentry_sdk

    server = ThreadingHTTPServer(("127.0.0.1", 0), _EnvelopeSink)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    dsn = f"http://publickey@127.0.0.1:{server.server_address[1]}/42"

    async def worker() -> None:
        await asyncio.sleep(0)
        raise LookupError(f"worker lost its account while holding {SECRET}")

    try:
        assert init_sentry(dsn, "test", "traderd@0.0.0", [SECRET]) is True
        task = asyncio.create_task(worker(), name="account-worker")
        with pytest.raises(LookupError):
            await task
        sentry_sdk.flush(timeout=5)
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)  # no Sentry for the rest of the session
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    events = []
    for body in server.bodies:  # type: ignore[attr-defined]
        for line in body.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and "exception" in item:
                events.append(item)
    assert events, "no event was sent for the task's exception"
    exception = events[0]["exception"]["values"][-1]
    assert exception["type"] == "LookupError"
    assert exception["mechanism"]["type"] == "asyncio" and exception["mechanism"]["handled"] is False
    assert SECRET not in json.dumps(events)
