"""The `traderd` command: run | check | init | status | release | flatten | url | version (and `risk` tools).

Every subcommand takes `--config PATH` (or `$TRADERD_CONFIG`). Exit codes: 0 success, 1 the operation
failed, 2 the configuration or the command line is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from config.settings import ConfigFileError, Settings, load_settings

EXIT_FAILED = 1
EXIT_USAGE = 2


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "configuration"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown option (check the spelling against `traderd init`)"
        lines.append(f"{where}: {message}")
    return lines


def _load(args: argparse.Namespace) -> Settings | None:
    try:
        return load_settings(args.config)
    except ConfigFileError as exc:
        print(f"traderd: {exc}", file=sys.stderr)
    except ValidationError as exc:
        print("traderd: the configuration has problems:", file=sys.stderr)
        for line in _problems(exc):
            print(f"  - {line}", file=sys.stderr)
    return None


def warnings_for(settings: Settings) -> list[str]:
    """Legal but risky choices that an operator should hear about."""
    found = []
    if settings.webhook.host not in ("127.0.0.1", "::1", "localhost") and not settings.webhook.allowed_ips:
        found.append("webhook listens beyond localhost with no webhook.allowed_ips: anyone who learns the "
                     "URL can post signals")
    if settings.webhook.host not in ("127.0.0.1", "::1", "localhost") and settings.api.token is None:
        found.append("the control API (/api/) is reachable beyond localhost without api.token")
    if settings.webhook.trust_forwarded_for and not settings.webhook.allowed_ips:
        found.append("webhook.trust_forwarded_for has no effect without webhook.allowed_ips")
    if not settings.shared_store and (settings.cluster.accounts or settings.cluster.capacity):
        found.append("cluster.accounts and cluster.capacity have no effect on SQLite: one daemon executes "
                     "every account (set store.url to PostgreSQL to run several)")
    if settings.shared_store and settings.webhook.secret is None:
        found.append("on a shared store set webhook.secret: the generated one differs per state directory, "
                     "so each daemon would expect another webhook URL")
    return found


def cmd_check(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_USAGE
    for line in warnings_for(settings):
        print(f"warning: {line}")
    accounts = ", ".join(f"{name} ({acc.broker}{'' if acc.enabled else ', disabled'})"
                         for name, acc in settings.accounts.items())
    print(f"configuration OK: accounts {accounts}; webhook {settings.webhook.host}:{settings.webhook.port}; "
          f"store {settings.database_url.split('://')[0]}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.path)
    if target.exists() and not args.force:
        print(f"traderd: {target} exists; use --force to overwrite", file=sys.stderr)
        return EXIT_FAILED
    text = resources.files("config").joinpath("traderd.example.toml").read_text()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}; edit it, then: traderd check --config {target}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.app import Daemon, traderd_version, webhook_secret
    from daemon.ownership.lockfile import AlreadyRunning
    from daemon.supervision.logs import configure_logging
    from daemon.supervision.redaction import collect_secrets
    from daemon.supervision.sentry import init_sentry

    settings = _load(args)
    if settings is None:
        return EXIT_USAGE
    if args.host or args.port is not None:
        update = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        settings = settings.model_copy(update={"webhook": settings.webhook.model_copy(update=update)})
    hidden = [*collect_secrets(settings), webhook_secret(settings)]
    configure_logging(settings.daemon.log_level, settings.daemon.log_format, hidden)
    dsn = settings.daemon.sentry_dsn
    init_sentry(dsn.get_secret_value() if dsn else None, settings.daemon.sentry_environment, traderd_version(),
                hidden)
    daemon = Daemon(settings)

    def announce(running: Daemon) -> None:
        # Printed, not logged: the URL holds the secret. Under journald only the masked form is shown.
        full = not os.environ.get("JOURNAL_STREAM") or sys.stdout.isatty()
        print(f"traderd is running. TradingView webhook URL:\n  {running.webhook_url(masked=not full)}",
              flush=True)
        if not full:
            print("  (run `traderd url` to see it with its token)", flush=True)

    try:
        asyncio.run(daemon.run_forever(on_ready=announce))
    except (OSError, AlreadyRunning) as exc:
        print(f"traderd: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_url(args: argparse.Namespace) -> int:
    from daemon.app import webhook_secret

    settings = _load(args)
    if settings is None:
        return EXIT_USAGE
    token = webhook_secret(settings)
    base = settings.webhook.public_url or f"http://{settings.webhook.host}:{settings.webhook.port}"
    print(f"{base.rstrip('/')}/webhook/tradingview/{token}")
    return 0


def _api(settings: Settings, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    host = settings.webhook.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    headers = {}
    if settings.api.token is not None:
        headers["Authorization"] = f"Bearer {settings.api.token.get_secret_value()}"
    with httpx.Client(base_url=f"http://{host}:{settings.webhook.port}", timeout=20, headers=headers) as client:
        response = client.request(method, path, json=body)
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise RuntimeError(f"the daemon answered {response.status_code}: {detail}")
    return response.json()


def cmd_status(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_USAGE
    try:
        status = _api(settings, "GET", "/api/status")
    except httpx.TransportError:
        print(f"traderd is not running (nothing answers on {settings.webhook.host}:{settings.webhook.port})",
              file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as exc:
        print(f"traderd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    cluster = status.get("cluster") or {}
    owners = cluster.get("owners") or {}
    print(f"traderd {status['version']} {'ready' if status['ready'] else 'NOT READY'}, "
          f"up {status['uptime_seconds']} s"
          + (f"; {cluster['node']} is {cluster['role']}" if cluster.get("store") == "postgresql" else ""))
    for acc in status["accounts"]:
        owner = owners.get(acc["account"])
        mine = owner == cluster.get("node")
        flags = [f for f in ("paused", "locked") if acc.get(f)]
        flags += [] if acc.get("connected") or not mine else ["DISCONNECTED"]
        flags += [] if cluster.get("store") != "postgresql" else [f"owner {owner or 'NONE'}"]
        print(f"  {acc['account']:<16} {acc['broker']:<10} equity {acc.get('equity', '?'):>14}  "
              f"open P&L {acc.get('unrealized_pnl', '?'):>12}  {' '.join(flags)}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """Ask the daemon executing an account to hand it over (explicit rebalancing on a shared store)."""
    from daemon.ownership.fence import account_lease
    from daemon.store.database import Database
    from daemon.store.leases import Leases

    settings = _load(args)
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


def cmd_flatten(args: argparse.Namespace) -> int:
    settings = _load(args)
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
        result = _api(settings, "POST", "/api/flatten",
                      {"account": args.account, "actor": "cli", "request_id": request_id})
    except httpx.TransportError:
        print("daemon not running: flattening directly through the brokers", file=sys.stderr)
        return asyncio.run(_flatten_offline(settings, args.account, request_id))
    except RuntimeError as exc:
        print(f"traderd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    failed = False
    for row in result["results"]:
        print(f"{row['signal_id']}: {row['status']} - {row['detail']}")
        failed |= row["status"] not in ("executed",)
    return EXIT_FAILED if failed else 0


async def _flatten_offline(settings: Settings, target: str, request_id: str) -> int:
    """The daemon is down: run the same engine path in-process, without the webhook."""
    from daemon.app import Daemon
    from daemon.ownership.fence import NotOwner
    from daemon.ownership.lockfile import AlreadyRunning

    try:
        outcomes = await Daemon(settings).flatten_offline(target, request_id)
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
    settings = _load(args)
    if settings is None:
        return EXIT_USAGE
    try:
        result = _api(settings, "POST", "/api/risk/reset",
                      {"account": args.account, "actor": "cli", "clear_block": args.clear_block})
    except httpx.TransportError:
        print("traderd is not running; start it, then unlock", file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as exc:
        print(f"traderd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.account} unlocked")
    print(json.dumps(result["funded"], indent=2))
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from daemon.app import traderd_version

    print(f"traderd {traderd_version()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", metavar="PATH", help="TOML configuration file (or $TRADERD_CONFIG)")
    parser = argparse.ArgumentParser(prog="traderd", parents=[common],
                                     description="Headless trading daemon with chat-ops control.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    run.add_argument("--host", help="override webhook.host")
    run.add_argument("--port", type=int, help="override webhook.port")
    run.set_defaults(func=cmd_run)
    sub.add_parser("check", parents=[common], help="validate the configuration").set_defaults(func=cmd_check)
    init = sub.add_parser("init", parents=[common], help="write a commented example configuration")
    init.add_argument("path", nargs="?", default="traderd.toml")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init)
    status = sub.add_parser("status", parents=[common], help="ask the running daemon how things stand")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    release = sub.add_parser("release", parents=[common],
                             help="hand an account over to another daemon (several daemons on PostgreSQL)")
    release.add_argument("account")
    release.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the handover (default 30)")
    release.set_defaults(func=cmd_release)
    flatten = sub.add_parser("flatten", parents=[common], help="cancel all orders and close all positions")
    flatten.add_argument("account", nargs="?", default="all", help="account name or 'all' (default)")
    flatten.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    flatten.set_defaults(func=cmd_flatten)
    sub.add_parser("url", parents=[common], help="print the TradingView webhook URL with its token"
                   ).set_defaults(func=cmd_url)
    unlock = sub.add_parser("unlock", parents=[common], help="reset a prop-firm lock after a hard breach")
    unlock.add_argument("account")
    unlock.add_argument("--clear-block", action="store_true", help="also lift today's session block")
    unlock.set_defaults(func=cmd_unlock)
    sub.add_parser("version", parents=[common], help="print the version").set_defaults(func=cmd_version)
    from daemon.cli import replay as replay_cli
    from daemon.cli import risk as tools

    tools.add_parser(sub)
    replay_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
