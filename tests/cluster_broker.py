"""The Alpaca stand-in every cluster node trades on, run in a process of its own and read over a control port.

Under a steady load of hundreds of webhooks a second, validating every exchange against Alpaca's contract
costs the stand-in about as much CPU as the load generator: sharing one event loop, each would hold the other
up. `AlpacaProcess` starts `python -m tests.cluster_broker` (a `RecordingAlpaca`, every request and response
still contract-checked) and reads what it saw (order POSTs with their arrival time, client order ids,
contract violations) from a small control app on a port of its own, which is not part of the contract.
Arrival times are `time.monotonic()`, the system-wide monotonic clock, so they compare with the test's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from tests.standins.alpaca_api import AlpacaStandIn

ROOT = Path(__file__).resolve().parent.parent
KEY_ID, SECRET_KEY = "cluster-key-id", "cluster-secret-key"
Post = tuple[float, str, int]  # (monotonic time, client order id, stand-in port)


class _Unchecked:
    def check_request(self, *args: Any) -> None: ...

    def check_response(self, *args: Any) -> None: ...


class RecordingAlpaca(AlpacaStandIn):
    """The Alpaca stand-in, noting when each order POST arrived, its client order id and the port it came in
    on: `listen_again()` opens one more port on the same stand-in, so each daemon can get its own."""

    def __init__(self, checked: bool = True) -> None:
        super().__init__(KEY_ID, SECRET_KEY, cash=Decimal("1000000000"))
        self.posts: list[Post] = []
        if not checked:  # a benchmark times the daemons, not the stand-in's contract validation
            self.contract = _Unchecked()  # type: ignore[assignment]

    async def listen_again(self) -> str:
        assert self._runner is not None
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[-1][1]}"

    async def _post_order(self, request: web.Request) -> web.Response:
        body = await request.json()
        port = request.transport.get_extra_info("sockname")[1] if request.transport else 0
        self.posts.append((time.monotonic(), str(body.get("client_order_id")), int(port)))
        return await super()._post_order(request)

    def first_post_after(self, at: float, port: int) -> float | None:
        return min((t for t, _, p in self.posts if t > at and p == port), default=None)


def control_app(stand: RecordingAlpaca) -> web.Application:
    """What the test asks of the stand-in in the other process."""

    async def listen(request: web.Request) -> web.Response:
        return web.json_response({"url": await stand.listen_again()})

    async def posts(request: web.Request) -> web.Response:
        return web.json_response(stand.posts)

    async def first_after(request: web.Request) -> web.Response:
        at, port = float(request.query["at"]), int(request.query["port"])
        return web.json_response({"at": stand.first_post_after(at, port)})

    async def orders(request: web.Request) -> web.Response:
        return web.json_response(sorted(stand.by_client))

    async def violations(request: web.Request) -> web.Response:
        return web.json_response(stand.violations)

    async def inject(request: web.Request) -> web.Response:
        spec = await request.json()
        stand.inject(spec.pop("kind"), **spec)
        return web.json_response({"faults": len(stand.faults)})

    app = web.Application()
    app.router.add_post("/listen", listen)
    app.router.add_get("/posts", posts)
    app.router.add_get("/first-post-after", first_after)
    app.router.add_get("/orders", orders)
    app.router.add_get("/violations", violations)
    app.router.add_post("/inject", inject)
    return app


async def serve(checked: bool) -> None:
    stand = RecordingAlpaca(checked)
    await stand.start()
    runner = web.AppRunner(control_app(stand), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    control = f"http://127.0.0.1:{runner.addresses[0][1]}"
    print(json.dumps({"base_url": stand.base_url, "control": control}), flush=True)
    await stop.wait()
    await runner.cleanup()
    await stand.stop()


class AlpacaProcess:
    """The recording stand-in in its own process: `await start()`, then ask it what it saw."""

    def __init__(self, checked: bool = True) -> None:
        self.key_id, self.secret_key = KEY_ID, SECRET_KEY
        self.checked = checked
        self.base_url = ""
        self._control = ""
        self._log = tempfile.TemporaryFile()
        self._process: subprocess.Popen[bytes] | None = None
        self._client: httpx.AsyncClient | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "tests.cluster_broker"] + ([] if self.checked else ["--unchecked"])
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, cwd=ROOT)

    async def start(self, within: float = 30) -> AlpacaProcess:
        self._process = self._spawn()
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self._process.stdout.readline), within)
            ready = json.loads(line)
        except (TimeoutError, ValueError):
            await self.stop()
            raise AssertionError(f"the Alpaca stand-in did not start: {self.tail()}") from None
        self.base_url, self._control = ready["base_url"], ready["control"]
        self._client = httpx.AsyncClient(base_url=self._control, timeout=30)
        return self

    async def _get(self, path: str, **params: Any) -> Any:
        assert self._client is not None
        response = await self._client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    async def listen_again(self) -> str:
        assert self._client is not None
        return str((await self._client.post("/listen")).json()["url"])

    async def inject(self, kind: str, count: int = 1, **kw: Any) -> None:
        assert self._client is not None
        (await self._client.post("/inject", json={"kind": kind, "count": count, **kw})).raise_for_status()

    async def posts(self) -> list[Post]:
        """Every order POST so far, in arrival order."""
        return [(float(t), str(coid), int(port)) for t, coid, port in await self._get("/posts")]

    async def client_order_ids(self) -> set[str]:
        """The client order ids of every order the stand-in holds."""
        return set(await self._get("/orders"))

    async def violations(self) -> list[str]:
        return list(await self._get("/violations"))

    async def first_post_after(self, at: float, base_url: str) -> float | None:
        """When the first order came in after `at` through `base_url` (one daemon's own port)."""
        found = (await self._get("/first-post-after", at=repr(at), port=base_url.rsplit(":", 1)[1]))["at"]
        return None if found is None else float(found)

    def tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-3000:]

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                await asyncio.to_thread(self._process.wait, 15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                await asyncio.to_thread(self._process.wait, 5)
        self._log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="the recording Alpaca stand-in, for the cluster tests")
    parser.add_argument("--unchecked", action="store_true", help="skip the contract checks (benchmarks)")
    asyncio.run(serve(checked=not parser.parse_args().unchecked))


if __name__ == "__main__":
    main()
