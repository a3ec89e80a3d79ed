"""Load drivers for the floor bench: alert bodies, one alert per fresh connection, closed and open loops.

Every alert goes on its own connection with `Connection: close`, as TradingView sends them. Every loop stops
by itself (a deadline or a count) and every request has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMD", "TSLA", "META", "AMZN", "GOOG"]
REQUEST_TIMEOUT = 10.0


@dataclass
class Endpoint:
    """Where alerts are posted, and whether the receiver answers with signal ids (traderd does)."""

    port: int
    path: str
    answers_ids: bool = False


class Alerts:
    """Alert bodies with ids unique within the run; buys and sells alternate so positions stay small.
    With `account`, every alert names it (a group name fans each alert out to the group's accounts)."""

    def __init__(self, prefix: str, account: str | None = None) -> None:
        self.prefix, self.account, self.n = prefix, account, 0

    def next(self) -> bytes:
        n, self.n = self.n, self.n + 1
        body = {"ticker": SYMBOLS[n % len(SYMBOLS)], "action": "buy" if n % 2 == 0 else "sell",
                "quantity": "1", "price": f"{100 + n % 50}.25", "id": f"{self.prefix}-{n}"}
        if self.account:
            body["account"] = self.account
        return json.dumps(body).encode()


async def post(port: int, path: str, body: bytes) -> tuple[int, float, bytes]:
    """One alert on a fresh connection: (status, seconds from connect to the end of the answer, body)."""
    return await request(port, "POST", path, body)


async def request(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, float, bytes]:
    """One request on a fresh connection: (status, seconds from connect to the end of the answer, body)."""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    started = time.perf_counter()
    async with asyncio.timeout(REQUEST_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head + body)
            answer = await reader.read(-1)  # the server closes after its answer
        finally:
            writer.close()
    elapsed = time.perf_counter() - started
    status = int(answer[9:12]) if answer[:5] == b"HTTP/" else 0
    return status, elapsed, answer.partition(b"\r\n\r\n")[2]


@dataclass
class Tally:
    """What one load run saw: acknowledgement latencies, status codes, the ids traderd accepted."""

    latencies: list[float] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)  # wall clock, to compare with the store's timestamps
    last_sent_at: float = 0.0

    async def send(self, endpoint: Endpoint, body: bytes) -> None:
        self.last_sent_at = time.time()
        try:
            status, elapsed, answer = await post(endpoint.port, endpoint.path, body)
        except (OSError, TimeoutError):
            self.codes[0] += 1
            return
        self.latencies.append(elapsed)
        self.codes[status] += 1
        if status == 202 and endpoint.answers_ids:
            self.accepted.append(json.loads(answer)["signal_id"])


async def closed_loop(endpoint: Endpoint, alerts: Alerts, connections: int, seconds: float) -> tuple[Tally, float]:
    """`connections` senders, each posting its next alert as soon as the last is answered, for `seconds`."""
    tally = Tally()
    started = time.perf_counter()
    stop_at = started + seconds

    async def sender() -> None:
        while time.perf_counter() < stop_at:
            await tally.send(endpoint, alerts.next())

    await asyncio.gather(*(sender() for _ in range(connections)))
    return tally, time.perf_counter() - started


async def counted_loop(endpoint: Endpoint, alerts: Alerts, connections: int, count: int) -> Tally:
    """Like `closed_loop`, but `count` alerts in all (the soak's step)."""
    tally = Tally()
    left = [count]

    async def sender() -> None:
        while left[0] > 0:
            left[0] -= 1
            await tally.send(endpoint, alerts.next())

    await asyncio.gather(*(sender() for _ in range(connections)))
    return tally


async def open_loop(endpoint: Endpoint, alerts: Alerts, rate: float, seconds: float) -> tuple[Tally, float]:
    """Alerts sent on schedule whatever the answers: a slow receiver shows up as latency, not a lower rate."""
    tally = Tally()
    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for n in range(total):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(tally.send(endpoint, alerts.next())))
    await asyncio.wait_for(asyncio.gather(*tasks), REQUEST_TIMEOUT + 5)
    return tally, time.perf_counter() - started
