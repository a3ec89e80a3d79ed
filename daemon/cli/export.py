"""`traderd export fills|trades`: the trade journal from the store, as CSV (journal tools import it) or JSON.

    traderd export fills --since 2026-11-01 --format csv > fills.csv      # TradeNote's generic template
    traderd export trades --since 2026-11-01 --account paper --format json

It reads the store the daemon writes (`daemon.database_url`, by default SQLite under the state directory),
so it works whether the daemon runs or not. `--since` is a date (midnight in `daemon.timezone`) or an
ISO 8601 time with its offset. The layouts are described in `daemon.store.journal` and the README.
Exit codes: 0 written, 1 the store could not be read, 2 bad configuration or command line.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from config.settings import ConfigFileError, load_settings
from daemon.store import journal
from daemon.store.repository import Store

EXIT_FAILED, EXIT_USAGE = 1, 2


def parse_since(text: str, tz: str) -> datetime:
    """A date means its midnight in `tz`; a time must carry its offset."""
    try:
        return datetime.combine(date.fromisoformat(text), time(), ZoneInfo(tz))
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: use a date (2026-11-01) or an ISO 8601 time with offset") from None
    if at.tzinfo is None:
        raise ValueError(f"--since {text!r}: give the offset (e.g. 2026-11-01T09:30:00-05:00) or only a date")
    return at


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except (ConfigFileError, ValidationError) as exc:
        print(f"traderd export: configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.account is not None and args.account not in settings.accounts:
        print(f"traderd export: --account {args.account!r}: not in the configuration "
              f"({', '.join(settings.accounts)})", file=sys.stderr)
        return EXIT_USAGE
    tz = settings.daemon.timezone
    try:
        since = parse_since(args.since, tz)
    except ValueError as exc:
        print(f"traderd export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    store = Store(settings.database_url)
    try:
        store.open()
        text = journal.export(store, args.what, args.format, since, args.account, tz)
    except SQLAlchemyError as exc:
        print(f"traderd export: could not read the store: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    sys.stdout.write(text)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `export fills|trades`; the subparser sets `func(args) -> exit code`."""
    p = subparsers.add_parser("export", help="the trade journal (fills or round trips) as CSV or JSON")
    p.add_argument("what", choices=["fills", "trades"], help="fills: one execution per line; trades: round trips")
    p.add_argument("--config", "-c", metavar="PATH", default=argparse.SUPPRESS,
                   help="TOML configuration (or $TRADERD_CONFIG)")
    p.add_argument("--since", required=True, help="date (midnight in daemon.timezone) or ISO time with offset")
    p.add_argument("--account", help="one account (default: all)")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.set_defaults(func=run)
