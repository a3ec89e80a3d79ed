"""The `traderd` command: run | check | init | status | release | flatten | url | auth | version, `risk`,
`replay`, `bars`, `export`.

Every subcommand takes `--config PATH`; without it the file is `$TRADERD_CONFIG`, ./traderd.toml,
$XDG_CONFIG_HOME/traderd/traderd.toml or /etc/traderd/traderd.toml, the first that exists, and each command
says on stderr which one it used. Exit codes: 0 success, 1 the operation
failed, 2 the configuration or the command line is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from importlib import resources
from pathlib import Path

from config.settings import Settings
from daemon.cli.cluster import cmd_release
from daemon.cli.control import cmd_flatten, cmd_status, cmd_unlock, cmd_url
from daemon.cli.loading import EXIT_FAILED, EXIT_USAGE, load


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
    settings = load(args)
    if settings is None:
        return EXIT_USAGE
    for line in warnings_for(settings):
        print(f"warning: {line}")
    accounts = ", ".join(f"{name} ({acc.broker}{'' if acc.enabled else ', disabled'})"
                         for name, acc in settings.accounts.items())
    print(f"configuration OK: accounts {accounts}; webhook {settings.webhook.host}:{settings.webhook.port}; "
          f"store {settings.database_url.split('://')[0]}")
    if not args.online:
        return 0
    from daemon.cli.online import run_checks

    results = asyncio.run(run_checks(settings))
    for result in results:
        print(result.line())
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} online checks passed")
    return EXIT_FAILED if failed else 0


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
    from daemon.app import Daemon
    from daemon.identity import traderd_version, webhook_secret
    from daemon.ownership.lockfile import AlreadyRunning
    from daemon.supervision.logs import configure_logging
    from daemon.supervision.redaction import collect_secrets
    from daemon.supervision.sentry import init_sentry

    settings = load(args)
    if settings is None:
        return EXIT_USAGE
    if args.host or args.port is not None:
        update = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        settings = settings.model_copy(update={"webhook": settings.webhook.model_copy(update=update)})
    hidden = [*collect_secrets(settings), webhook_secret(settings)]
    configure_logging(settings.daemon.log_level, settings.daemon.log_format, hidden)
    dsn = settings.daemon.sentry_dsn
    daemon = Daemon(settings)

    def announce(running: Daemon) -> None:
        # What the start built (modules, schemas, settings) lives as long as the process: kept out of the
        # collector's full passes, which otherwise walk all of it (about 100 ms on the event loop) for nothing.
        gc.collect()
        gc.freeze()
        # Printed, not logged: the URL holds the secret. Under journald only the masked form is shown.
        full = not os.environ.get("JOURNAL_STREAM") or sys.stdout.isatty()
        print(f"traderd is running. TradingView webhook URL:\n  {running.webhook_url(masked=not full)}",
              flush=True)
        if not full:
            print("  (`sudo traderd url` shows it with its token, through the admin socket)", flush=True)

    async def serve() -> None:
        # Inside the loop, so that Sentry's asyncio integration sees errors that end background tasks.
        init_sentry(dsn.get_secret_value() if dsn else None, settings.daemon.sentry_environment, traderd_version(),
                    hidden)
        await daemon.run_forever(on_ready=announce)

    try:
        asyncio.run(serve())
    except (OSError, AlreadyRunning) as exc:
        print(f"traderd: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from daemon.identity import traderd_version

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
    check = sub.add_parser("check", parents=[common], help="validate the configuration")
    check.add_argument("--online", action="store_true",
                       help="also log in to every broker, Telegram and Discord (read-only) and reach the database")
    check.set_defaults(func=cmd_check)
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
    from daemon.cli import auth as auth_cli
    from daemon.cli import bars as bars_cli
    from daemon.cli import export as export_cli
    from daemon.cli import replay as replay_cli
    from daemon.cli import risk as tools

    tools.add_parser(sub)
    replay_cli.add_parser(sub)
    bars_cli.add_parser(sub)
    auth_cli.add_parser(sub, common, load)
    export_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
