"""Receivers under test for the floor bench: a fresh store for each, the process started, ready, stopped.

A receiver is a floor (`bench/floor_receivers.py`) or a real `traderd run` (paper accounts, a config file
written here). Each gets a fresh store: a new state directory, and on PostgreSQL a new database created for
it (optionally as a copy of a seeded template) and dropped after. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789"
GROUP = "fan"  # the group a fan-out alert names
START_TIMEOUT = 60.0


@dataclass
class Target:
    """A receiver under test, in its own process: where to post, and (traderd) where its store is."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    path: str
    store_url: str | None = None
    ready_seconds: float = 0.0  # process start to ready (traderd: migrations, reconciliation, READY)

    @property
    def is_traderd(self) -> bool:
        return self.name == "traderd"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def group_accounts(size: int) -> list[str]:
    return [f"{GROUP}{i}" for i in range(1, size + 1)]


def traderd_config(state: Path, port: int, store_url: str | None, group_size: int) -> str:
    """One paper account (the default for alerts naming none) and, with `group_size`, a group of that many
    more; every other option is the daemon's default, as with `traderd run` and no file."""
    text = f'default_account = "paper"\n\n[daemon]\nstate_dir = "{state}"\nlog_level = "WARNING"\n\n'
    text += f'[webhook]\nhost = "127.0.0.1"\nport = {port}\nsecret = "{SECRET}"\n\n'
    if store_url:
        text += f'[store]\nurl = "{store_url}"\n\n'
    text += '[accounts.paper]\nbroker = "paper"\n\n'
    members = group_accounts(group_size)
    text += "".join(f'[accounts.{name}]\nbroker = "paper"\n\n' for name in members)
    if members:
        text += f"[groups.{GROUP}]\naccounts = {{ " + ", ".join(f"{n} = 1" for n in members) + " }\n"
    return text


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADERD_")}
    return env | {"PYTHONUNBUFFERED": "1"}


def start_traderd(state: Path, store_url: str | None, group_size: int = 0) -> Target:
    port = free_port()
    config = state / "traderd.toml"
    config.write_text(traderd_config(state, port, store_url, group_size))
    begun = time.monotonic()
    with open(state / "traderd.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "--config", str(config)],
                                   env=_clean_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
                                   stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    url = store_url or f"sqlite:///{state / 'traderd.db'}"
                    return Target("traderd", process, port, f"/webhook/tradingview/{SECRET}", url,
                                  round(time.monotonic() - begun, 2))
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    process.kill()
    process.wait(timeout=10)
    tail = (state / "traderd.log").read_text(errors="replace")[-2000:]
    raise SystemExit(f"traderd did not become ready:\n{tail}")


def start_floor(name: str, state: Path, database_url: str | None) -> Target:
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "floor_receivers.py"), name, "--port", str(port),
               "--state", str(state)]
    if database_url:
        command += ["--database-url", database_url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:  # the receiver prints one line when it listens, or exits
        readable, _, _ = select.select([process.stdout], [], [], left)
        if readable and b"listening" in process.stdout.readline():
            return Target(name, process, port, "/webhook")
        if process.poll() is not None:
            break
    process.kill()
    process.wait(timeout=10)
    raise SystemExit(f"the {name} floor did not start")


# ---- PostgreSQL: a database per receiver -------------------------------------------------------------

def redact(url: str) -> str:
    """The URL without its password, for the results."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (query string kept)."""
    head, sep, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{name}" + (sep + query if sep else "")


def _admin(url: str) -> object:
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=10)


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    from psycopg import sql

    with _admin(admin_url) as conn:  # type: ignore[attr-defined]
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            if conn.info.server_version >= 150000:  # a file copy, not the whole seeded store through the WAL
                create += sql.SQL(" STRATEGY FILE_COPY")
        conn.execute(create)
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    from psycopg import sql

    with _admin(admin_url) as conn:  # type: ignore[attr-defined]
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_name(tag: str) -> str:
    """A database name unique to this run and tag, within PostgreSQL's 63 characters."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", tag.lower())
    return f"traderd_bench_{os.getpid()}_{cleaned}"[:63]


@contextmanager
def fresh_postgres(admin_url: str, tag: str, template: str | None = None) -> Iterator[str]:
    """A new database for one receiver (a copy of `template` when given), dropped afterwards."""
    name = database_name(tag)
    url = create_database(admin_url, name, template)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


@contextmanager
def started(name: str, state: Path, *, admin_url: str | None, tag: str, group_size: int = 0,
            sqlite_template: Path | None = None, pg_template: str | None = None) -> Iterator[Target]:
    """Receiver `name` on a fresh store in `state` (traderd on PostgreSQL when `admin_url` is given), stopped
    and its database dropped on the way out. A template is a seeded store the fresh one starts as a copy of."""
    on_pg = admin_url is not None and (name == "traderd" or name.startswith("pg-"))
    if on_pg:
        assert admin_url is not None
        with fresh_postgres(admin_url, tag, pg_template) as url:
            target = start_traderd(state, url, group_size) if name == "traderd" else start_floor(name, state, url)
            try:
                yield target
            finally:
                target.stop()
        return
    if name.startswith("pg-"):
        raise SystemExit(f"{name} needs --database-url")
    if name == "traderd":
        if sqlite_template is not None:
            for suffix in ("", "-wal"):  # the seeder closed its connections, so the log is normally empty
                if Path(f"{sqlite_template}{suffix}").exists():
                    shutil.copyfile(f"{sqlite_template}{suffix}", state / f"traderd.db{suffix}")
        target = start_traderd(state, None, group_size)
    else:
        target = start_floor(name, state, None)
    try:
        yield target
    finally:
        target.stop()
