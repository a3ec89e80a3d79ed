"""`traderd auth schwab --account NAME`: the browser login a broker's OAuth needs, done from a headless server.

It prints Schwab's authorize URL; the operator opens it in any browser, logs in, approves the app, and
pastes back the URL the browser was sent to (the callback page need not load: only its address matters).
The code in it is exchanged for tokens (authlib, HTTP Basic with the app key and secret, the `state`
checked), which are written to `state_dir/schwab/<account>.token.json`, readable by the owner only. A
running daemon picks the new login up on its next call. Exit codes as in `daemon.cli.main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from config.brokers import SchwabSettings
from config.settings import Settings

EXIT_FAILED, EXIT_USAGE = 1, 2


Loader = Callable[[argparse.Namespace], Settings | None]  # `daemon.cli.loading.load`: settings, or None (told why)


def add_parser(sub: Any, common: argparse.ArgumentParser, load: Loader) -> None:
    auth = sub.add_parser("auth", parents=[common], help="log a broker account in (OAuth in a browser)")
    brokers = auth.add_subparsers(dest="broker", required=True, metavar="BROKER")
    schwab = brokers.add_parser("schwab", parents=[common], help="Charles Schwab: authorize the app for an account")
    schwab.add_argument("--account", required=True, help="the account's name in the configuration")
    schwab.add_argument("--redirect-url", help="the URL the browser landed on (else it is asked for)")
    schwab.set_defaults(func=lambda args: cmd_auth_schwab(args, load))


def cmd_auth_schwab(args: argparse.Namespace, load: Loader) -> int:
    # Imported here: the OAuth library is only needed by this command, not by every `traderd` invocation.
    from authlib.common.errors import AuthlibBaseError
    from authlib.integrations.httpx_client import OAuth2Client

    from brokers.schwab.tokens import SchwabTokens, TokenFile, token_path

    settings = load(args)
    if settings is None:
        return EXIT_USAGE
    account = settings.accounts.get(args.account)
    if account is None or account.broker != "schwab":
        schwab = [name for name, acc in settings.accounts.items() if acc.broker == "schwab"]
        print(f"traderd: {args.account!r} is not a Schwab account here (Schwab accounts: "
              f"{', '.join(schwab) or 'none'})", file=sys.stderr)
        return EXIT_USAGE
    section = account.section("schwab")
    assert isinstance(section, SchwabSettings)
    client = OAuth2Client(client_id=section.app_key.get_secret_value(),
                          client_secret=section.app_secret.get_secret_value(), redirect_uri=section.callback_url,
                          token_endpoint_auth_method="client_secret_basic", timeout=section.timeout_seconds)
    with client:
        url, _state = client.create_authorization_url(f"{section.oauth_url}/authorize")
        print(f"1. Open this URL in a browser and log in to Schwab with the login that holds account {args.account}:"
              f"\n\n  {url}\n\n2. Approve the app. The browser then goes to {section.callback_url}/?code=... (the page "
              "may not load; that is fine).\n3. Copy that whole address from the address bar and paste it here.",
              flush=True)
        redirect = args.redirect_url or _ask("Redirect URL> ")
        if not redirect:
            print("traderd: no redirect URL given; nothing changed", file=sys.stderr)
            return EXIT_FAILED
        try:
            answer = dict(client.fetch_token(f"{section.oauth_url}/token", authorization_response=redirect.strip()))
            tokens = SchwabTokens.from_answer(answer, datetime.now(UTC))
        except AuthlibBaseError as exc:
            print(f"traderd: Schwab refused the login: {exc.error} ({exc.description or 'no detail'}); nothing changed"
                  " (an authorization code works once and for about 30 seconds: log in again)", file=sys.stderr)
            return EXIT_FAILED
        except (httpx.HTTPError, ValueError) as exc:
            print(f"traderd: the login failed: {type(exc).__name__}: {_safe(exc)}; nothing changed", file=sys.stderr)
            return EXIT_FAILED
    path = token_path(settings.daemon.state_dir, args.account)
    TokenFile(path).save(tokens)
    ends = tokens.refresh_expires_at(section.refresh_token_days)
    print(f"Logged in: account {args.account}'s tokens are in {path} (owner-only). The login lasts until "
          f"{ends:%Y-%m-%d %H:%M} UTC; traderd warns on chat 48 h and 6 h before. A running daemon uses it at once.")
    return 0


def _ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        return ""


def _safe(exc: Exception) -> str:
    """An error's words without the URL's query (it holds the one-time code)."""
    return str(exc).split("?", 1)[0][:200]
