"""The floor receivers bench/floor.py measures traderd against, each run as its own process by this script.

- `bare`: aiohttp, JSON parse, no store;
- `commit`: plus one SQLite WAL insert and fsync commit (`synchronous=FULL`) per request, on the event loop;
- `group`: the same insert, but concurrent requests share one fsync: a writer thread commits whatever is
  queued in one transaction, and each 202 waits for its batch's commit;
- `pg-commit` / `pg-group`: the same two on PostgreSQL (psycopg, `synchronous_commit=on`, so every commit
  waits for the WAL flush), on the database named by `--database-url`.

    python bench/floor_receivers.py group --port 8123 --state /tmp/x
    python bench/floor_receivers.py pg-group --port 8123 --state /tmp/x --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import signal
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FLOORS = ("bare", "commit", "group")
PG_FLOORS = ("pg-commit", "pg-group")
Row = tuple[str, str, datetime]
_SQLITE_INSERT = "INSERT OR IGNORE INTO signals (dedup_key, body, received_at) VALUES (?, ?, ?)"
_PG_INSERT = "INSERT INTO signals (dedup_key, body, received_at) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"


def sqlite_store(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS signals (seq INTEGER PRIMARY KEY, dedup_key TEXT UNIQUE, "
                 "body TEXT NOT NULL, received_at TEXT NOT NULL)")
    return conn


def pg_store(url: str) -> Any:
    import psycopg

    conn = psycopg.connect(url, connect_timeout=10)
    conn.execute("SET synchronous_commit TO on")  # the server default, said out loud: each commit is durable
    conn.execute("CREATE TABLE IF NOT EXISTS signals (seq BIGSERIAL PRIMARY KEY, dedup_key TEXT UNIQUE, "
                 "body TEXT NOT NULL, received_at TIMESTAMPTZ NOT NULL)")
    conn.commit()
    return conn


def sqlite_commit(conn: sqlite3.Connection) -> Callable[[list[Row]], None]:
    def write(rows: list[Row]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_SQLITE_INSERT, [(k, b, t.isoformat()) for k, b, t in rows])
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return write


def pg_commit(conn: Any) -> Callable[[list[Row]], None]:
    def write(rows: list[Row]) -> None:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(_PG_INSERT, rows)
    return write


class GroupCommit:
    """The smallest group commit: one thread writes everything queued in one transaction, one fsync."""

    def __init__(self, write: Callable[[list[Row]], None]) -> None:
        self.write = write
        self.queue: queue.SimpleQueue[tuple[Row, asyncio.Future[None]]] = queue.SimpleQueue()
        self.batches: Counter[int] = Counter()
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, row: Row) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put((row, future))
        return future

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self.batches[len(batch)] += 1
            error: BaseException | None = None
            try:
                self.write([row for row, _ in batch])
            except Exception as exc:
                error = exc
            for _, future in batch:
                future.get_loop().call_soon_threadsafe(_resolve, future, error)


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if not future.done():
        future.set_exception(error) if error else future.set_result(None)


def writer_for(kind: str, state: Path, database_url: str | None) -> Callable[[list[Row]], None] | None:
    """How this receiver stores a batch of rows (None: it stores nothing)."""
    if kind == "bare":
        return None
    if kind in PG_FLOORS:
        if not database_url:
            raise SystemExit(f"{kind} needs --database-url")
        return pg_commit(pg_store(database_url))
    return sqlite_commit(sqlite_store(state / "floor.db"))


def serve(kind: str, port: int, state: Path, database_url: str | None) -> None:
    from aiohttp import web

    write = writer_for(kind, state, database_url)
    group = GroupCommit(write) if write is not None and kind.endswith("group") else None

    async def handle(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        if write is not None:
            row = (str(data["id"]), json.dumps(data), datetime.now(UTC))
            if group is not None:
                await group.submit(row)
            else:
                write([row])  # on the event loop, as a naive receiver does
        return web.json_response({"status": "accepted"}, status=202)

    async def batches(request: web.Request) -> web.Response:
        return web.json_response(dict(group.batches) if group else {})

    app = web.Application()
    app.router.add_post("/webhook", handle)
    app.router.add_get("/batches", batches)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(f"floor {kind} listening on http://127.0.0.1:{port}/webhook", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=FLOORS + PG_FLOORS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--database-url", help="PostgreSQL database for the pg-* receivers")
    args = parser.parse_args()
    serve(args.kind, args.port, args.state, args.database_url)


if __name__ == "__main__":
    main()
