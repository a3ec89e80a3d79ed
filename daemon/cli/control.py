"""`traderd url | status | flatten | unlock`: ask the running daemon (admin socket, else the API), never guess.

`url` prints the webhook URL with its token: from the daemon, or from the secret the service keeps (its
configuration or credential, or the file the daemon generated in its state directory) when this user may
read it. Nothing here ever writes a secret. `flatten` with the daemon down runs the engine in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from typing import Any

from config.settings import Settings
from daemon.cli.loading import EXIT_FAILED, EXIT_USAGE, load
from daemon.cli.service import ServiceClient, ServiceError, ServiceUnreachable, credential, what_to_do


def cmd_url(args: argparse.Namespace) -> int:
    from daemon.identity import known_webhook_secret, public_webhook_url

    settings = load(args)
    if settings is None:
        return EXIT_USAGE
    client = ServiceClient(settings)
    url = client.webhook_url()
    if url is None:
        token = credential(known_webhook_secret(settings), "webhook.secret")
        if token is None:
            print(f"traderd: cannot tell the webhook URL: {'; '.join(client.notes)}, and no webhook secret is "
                  f"readable here (webhook.secret, {settings.daemon.state_dir}/webhook_secret). To fix: "
                  f"{what_to_do(client.socket_path)}. (The daemon makes the secret on its first start.)",
                  file=sys.stderr)
            return EXIT_FAILED
        url = public_webhook_url(settings, token)
    print(url)
    return 0


def status_lines(status: dict[str, Any]) -> list[str]:
    """The human form of /api/status: a headline, then one line per account."""
    cluster = status.get("cluster") or {}
    owners = cluster.get("owners") or {}
    shared = cluster.get("store") == "postgresql"
    lines = [f"traderd {status['version']} {'ready' if status['ready'] else 'NOT READY'}, "
             f"up {status['uptime_seconds']} s" + (f"; {cluster['node']} is {cluster['role']}" if shared else "")]
    for acc in status["accounts"]:
        owner = owners.get(acc["account"])
        mine = not shared or owner == cluster.get("node")
        flags = [f for f in ("paused", "locked") if acc.get(f)]
        flags += [] if acc.get("connected") or not mine else ["DISCONNECTED"]
        flags += [f"owner {owner or 'NONE'}"] if shared else []
        lines.append(f"  {acc['account']:<16} {acc['broker']:<10} equity {acc.get('equity', '?'):>14}  "
                     f"open P&L {acc.get('unrealized_pnl', '?'):>12}  {' '.join(flags)}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    settings = load(args)
    if settings is None:
        return EXIT_USAGE
    try:
        status = ServiceClient(settings).request("GET", "/api/status")
    except ServiceError as exc:
        print(f"traderd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for line in status_lines(status):
        print(line)
    return 0


def cmd_flatten(args: argparse.Namespace) -> int:
    settings = load(args)
    if settings is None:
        return EXIT_USAGE
    if not args.yes:
        if not sys.stdin.isatty():
            print("traderd: refusing to flatten without --yes when not interactive", file=sys.stderr)
            return EXIT_USAGE
        answer = input(f"Cancel all orders and close all positions on {args.account}? Type 'flatten': ")
        if answer.strip() != "flatten":
            print("not flattened")
            return EXIT_FAILED
    request_id = secrets.token_hex(8)
    try:
        result = ServiceClient(settings).request(
            "POST", "/api/flatten", {"account": args.account, "actor": "cli", "request_id": request_id})
    except ServiceUnreachable as exc:
        if exc.maybe_running:  # a daemon may be running that this user cannot reach: never trade beside it
            print(f"traderd: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print("daemon not running: flattening directly through the brokers", file=sys.stderr)
        return asyncio.run(_flatten_offline(settings, args.account, request_id))
    except ServiceError as exc:
        print(f"traderd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    failed = False
    for row in result["results"]:
        print(f"{row['signal_id']}: {row['status']} - {row['detail']}")
        failed |= row["status"] not in ("executed",)
    return EXIT_FAILED if failed else 0


async def _flatten_offline(settings: Settings, target: str, request_id: str) -> int:
    """The daemon is down: own the accounts (lock file or free leases) and run the same engine path
    in-process, without the webhook."""
    from daemon.app import Daemon
    from daemon.offline import flatten_offline
    from daemon.ownership.fence import NotOwner
    from daemon.ownership.lockfile import AlreadyRunning

    try:
        outcomes = await flatten_offline(Daemon(settings), target, request_id)
    except KeyError as exc:
        print(f"traderd: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    except (AlreadyRunning, NotOwner) as exc:
        print(f"traderd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    failed = False
    for outcome in outcomes:
        print(f"{outcome.signal_id}: {outcome.status.value} - {outcome.reason}")
        failed |= outcome.status.value != "executed"
    return EXIT_FAILED if failed else 0


def cmd_unlock(args: argparse.Namespace) -> int:
    """Operator reset of a prop-firm account locked by a hard breach (through the running daemon)."""
    settings = load(args)
    if settings is None:
        return EXIT_USAGE
    try:
        result = ServiceClient(settings).request(
            "POST", "/api/risk/reset", {"account": args.account, "actor": "cli", "clear_block": args.clear_block})
    except ServiceUnreachable as exc:
        print(f"traderd: {exc}; start it, then unlock", file=sys.stderr)
        return EXIT_FAILED
    except ServiceError as exc:
        print(f"traderd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.account} unlocked")
    print(json.dumps(result["funded"], indent=2))
    return 0
