"""Lease rows on a shared PostgreSQL store: acquire, renew, release and check who executes each account.

A lease is free once `expires_at` has passed on the database's clock (`clock_timestamp()`, one clock for
every daemon); taking it raises its `token`, the fencing token a holder shows before every order it sends.
Every statement is a short transaction of its own; acquisition locks the row, so of two daemons racing for
a free lease exactly one gets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from daemon.store.database import Database

CHANNEL = "traderd"  # NOTIFY channel: "signal:<account>", "control:<account>", "lease:<name>"

_ENSURE = text("INSERT INTO leases (name, token, expires_at, released, release_requested) "
               "VALUES (:name, 0, 'epoch', false, false) ON CONFLICT (name) DO NOTHING")
_LOCK = text("SELECT holder, renewed_at, released, expires_at > clock_timestamp() AS live "
             "FROM leases WHERE name = :name FOR UPDATE")
_TAKE = text("UPDATE leases SET owner = :owner, holder = :holder, token = token + 1, "
             "acquired_at = clock_timestamp(), renewed_at = clock_timestamp(), "
             "expires_at = clock_timestamp() + make_interval(secs => :seconds), "
             "released = false, release_requested = false WHERE name = :name RETURNING token")
_RENEW = text("UPDATE leases SET renewed_at = clock_timestamp(), "
              "expires_at = clock_timestamp() + make_interval(secs => :seconds) "
              "WHERE owner = :owner AND expires_at > clock_timestamp() "
              "RETURNING name, token, release_requested")
_RELEASE = text("UPDATE leases SET expires_at = clock_timestamp(), released = true, release_requested = false "
                "WHERE name = :name AND owner = :owner AND token = :token")
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', 'lease:' || :name)")
_HOLDS = text("SELECT 1 FROM leases WHERE name = :name AND owner = :owner AND token = :token "
              "AND expires_at > clock_timestamp()")
_ALL = text("SELECT name, owner, holder, token, acquired_at, renewed_at, expires_at, released, release_requested, "
            "EXTRACT(EPOCH FROM expires_at - clock_timestamp()) AS left FROM leases ORDER BY name")
_REQUEST = text("UPDATE leases SET release_requested = true WHERE name = :name "
                "AND expires_at > clock_timestamp() RETURNING holder")


@dataclass(frozen=True)
class Grant:
    """A lease just taken: its new token and who held it before (None: nobody ever did)."""

    name: str
    token: int
    previous_holder: str | None
    previous_renewed_at: datetime | None
    previous_released: bool


@dataclass(frozen=True)
class LeaseView:
    name: str
    owner: str | None
    holder: str | None
    token: int
    acquired_at: datetime | None
    renewed_at: datetime | None
    expires_at: datetime
    released: bool
    release_requested: bool
    seconds_left: float

    @property
    def held(self) -> bool:
        return self.owner is not None and not self.released and self.seconds_left > 0


class Leases:
    """The `leases` table of a PostgreSQL store."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def acquire(self, name: str, owner: str, holder: str, seconds: float) -> Grant | None:
        """Take the lease if it is free (never held, released, or expired); None while another holds it."""
        with self.database.engine.begin() as conn:
            conn.execute(_ENSURE, {"name": name})
            row = conn.execute(_LOCK, {"name": name}).one()
            if row.live and not row.released:
                return None
            token = conn.execute(_TAKE, {"name": name, "owner": owner, "holder": holder,
                                         "seconds": seconds}).scalar_one()
        return Grant(name=name, token=int(token), previous_holder=row.holder, previous_renewed_at=row.renewed_at,
                     previous_released=bool(row.released))

    def renew(self, owner: str, seconds: float) -> dict[str, tuple[int, bool]]:
        """Extend every live lease `owner` holds, in one statement: name -> (token, release requested)."""
        with self.database.engine.begin() as conn:
            rows = conn.execute(_RENEW, {"owner": owner, "seconds": seconds}).all()
        return {row.name: (int(row.token), bool(row.release_requested)) for row in rows}

    def release(self, name: str, owner: str, token: int) -> bool:
        """Give the lease up at once (and tell the other daemons); False if it was no longer ours."""
        with self.database.engine.begin() as conn:
            done = conn.execute(_RELEASE, {"name": name, "owner": owner, "token": token}).rowcount > 0
            if done:
                conn.execute(_NOTIFY, {"name": name})
        return done

    def holds(self, name: str, owner: str, token: int) -> bool:
        """True only while `owner` holds the lease under `token` and it has not expired on the database's clock."""
        with self.database.engine.connect() as conn:
            return conn.execute(_HOLDS, {"name": name, "owner": owner, "token": token}).first() is not None

    def all(self) -> list[LeaseView]:
        with self.database.engine.connect() as conn:
            rows = conn.execute(_ALL).all()
        return [LeaseView(name=r.name, owner=r.owner, holder=r.holder, token=int(r.token), acquired_at=r.acquired_at,
                          renewed_at=r.renewed_at, expires_at=r.expires_at, released=bool(r.released),
                          release_requested=bool(r.release_requested), seconds_left=float(r.left))
                for r in rows]

    def request_release(self, name: str) -> str | None:
        """Ask the holder to hand the lease over (it does at its next renewal); the holder's name, or None."""
        with self.database.engine.begin() as conn:
            holder = conn.execute(_REQUEST, {"name": name}).scalar()
        return None if holder is None else str(holder)
