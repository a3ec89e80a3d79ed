"""`traderd bars fetch`: an account's broker market data as a CSV of bars, the same bars a live strategy sees.

    traderd bars fetch --account topstep --symbol MES1! --timeframe 5m --days 30 > mes_5m.csv
    traderd replay --strategy opening_range --data mes_5m.csv --timeframe 5m --calendar cme --symbol MES1!

The bars come from the account's broker (`Broker.bars`) through `daemon.strategy.broker_bars.BrokerBarSource`,
the source a live strategy without a `data` file uses: the same base bars, aggregated on the same calendar
(default `cme` for futures tickers, else `nyse`), complete bars only, in [end - days, end]. Rows are
`time,open,high,low,close,volume` with the bar's start in UTC (ISO 8601), or the session date for `1d`.
Exit codes: 0 written, 1 the broker failed or has no market data, 2 bad configuration or command line.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TextIO, cast

from pydantic import ValidationError

from brokers.base import BrokerError
from brokers.registry import build_broker
from brokers.symbols import futures_root
from config.settings import ConfigFileError, load_settings
from daemon.domain import utcnow
from daemon.strategy.bars import TIMEFRAMES, BarDataError, CalendarName, session_of
from daemon.strategy.broker_bars import BarsBroker, BrokerBarSource
from strategies.base import Bar

EXIT_FAILED, EXIT_USAGE = 1, 2


def write_csv(bars: Sequence[Bar], timeframe: str, calendar: CalendarName, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "open", "high", "low", "close", "volume"])
    for bar in bars:
        session = session_of(calendar, bar.start) if timeframe == "1d" else None
        when = session.day.isoformat() if session is not None else bar.start.isoformat()
        writer.writerow([when, bar.open, bar.high, bar.low, bar.close, bar.volume])


def _end(text: str | None) -> datetime:
    if text is None:
        return utcnow()
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--end {text!r}: use an ISO 8601 time with its offset") from None
    if at.tzinfo is None:
        raise ValueError(f"--end {text!r}: give the offset (e.g. 2026-11-30T21:00:00Z)")
    return at


async def fetch(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except (ConfigFileError, ValidationError) as exc:
        print(f"traderd bars: configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.account not in settings.accounts:
        print(f"traderd bars: --account {args.account!r}: not in the configuration "
              f"({', '.join(settings.accounts)})", file=sys.stderr)
        return EXIT_USAGE
    try:
        end = _end(args.end)
    except ValueError as exc:
        print(f"traderd bars: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.days <= 0:
        print("traderd bars: --days must be positive", file=sys.stderr)
        return EXIT_USAGE
    calendar = cast(CalendarName, args.calendar or ("cme" if futures_root(args.symbol) else "nyse"))
    broker = build_broker(args.account, settings.accounts[args.account], settings.daemon.state_dir)
    try:
        await broker.connect()
        source = BrokerBarSource(cast(BarsBroker, broker))
        bars = await source.window(args.symbol, args.timeframe, calendar, end - timedelta(days=args.days), end)
    except (BarDataError, BrokerError) as exc:
        print(f"traderd bars: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await broker.close()
    write_csv(bars, args.timeframe, calendar, sys.stdout)
    print(f"{len(bars)} bars of {args.symbol} {args.timeframe} ({calendar}) from {args.account}", file=sys.stderr)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `bars fetch`; the subparser sets `func(args) -> exit code`."""
    bars = subparsers.add_parser("bars", help="market data from an account's broker")
    sub = bars.add_subparsers(dest="bars_command", required=True, metavar="COMMAND")
    p = sub.add_parser("fetch", help="write the broker's bars as CSV on stdout")
    p.add_argument("--config", "-c", metavar="PATH", default=argparse.SUPPRESS,
                   help="TOML configuration (or $TRADERD_CONFIG)")
    p.add_argument("--account", required=True, help="account whose broker serves the bars")
    p.add_argument("--symbol", required=True, help="ticker as the strategy names it, e.g. MES1! or AAPL")
    p.add_argument("--timeframe", default="5m", choices=list(TIMEFRAMES))
    p.add_argument("--days", type=int, default=30, help="calendar days back from --end (default 30)")
    p.add_argument("--end", help="end of the window, ISO 8601 with offset (default: now)")
    p.add_argument("--calendar", choices=["nyse", "cme", "24x7"], help="default: cme for futures, else nyse")
    p.set_defaults(func=lambda args: asyncio.run(fetch(args)))
