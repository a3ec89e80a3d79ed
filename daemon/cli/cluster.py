"""`traderd release ACCOUNT`: ask the daemon executing an account to hand it over (on a shared store)."""

from __future__ import annotations

import argparse
import sys
import time

from daemon.cli.loading import EXIT_FAILED, EXIT_USAGE, load


def cmd_release(args: argparse.Namespace) -> int:
    """Ask the daemon executing an account to hand it over (explicit rebalancing on a shared store)."""
    from daemon.ownership.fence import account_lease
    from daemon.store.database import Database
    from daemon.store.leases import Leases

    settings = load(args)
    if settings is None:
        return EXIT_USAGE
    if args.account not in settings.accounts:
        print(f"traderd: unknown account {args.account!r}; accounts: {', '.join(settings.accounts)}",
              file=sys.stderr)
        return EXIT_USAGE
    if not settings.shared_store:
        print("traderd: nothing to release: on SQLite one daemon executes every account", file=sys.stderr)
        return EXIT_FAILED
    database = Database(settings.database_url)
    database.open()
    try:
        leases = Leases(database)
        lease = account_lease(args.account)
        holder = leases.request_release(lease)
        if holder is None:
            print(f"{args.account} is not held by any daemon; the next one with room takes it")
            return 0
        print(f"asked {holder} to hand {args.account} over", flush=True)
        deadline = time.monotonic() + args.wait
        released = False
        while time.monotonic() < deadline:
            row = next((v for v in leases.all() if v.name == lease), None)
            if row is not None and not row.release_requested:
                released = released or row.holder != holder or not row.held
                if released and row.held:
                    print(f"{args.account}: released by {holder}, now executed by {row.holder}")
                    return 0
            time.sleep(0.2)
        if released:
            print(f"{args.account}: released by {holder}; no other daemon has taken it yet "
                  "(they may be at cluster.capacity)")
            return 0
        print(f"traderd: {holder} has not handed {args.account} over within {args.wait:g} s", file=sys.stderr)
        return EXIT_FAILED
    finally:
        database.close()
