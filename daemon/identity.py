"""Who the daemon is to the outside: its version, its webhook secret (generated once, kept 0600) and URL."""

from __future__ import annotations

import os
import secrets
from importlib.metadata import PackageNotFoundError, version

from config.service import WEBHOOK_SECRET_FILE
from config.settings import Settings, read_secret_file


def traderd_version() -> str:
    try:
        return version("traderd")
    except PackageNotFoundError:
        return "0+unknown"


def webhook_secret(settings: Settings) -> str:
    """The configured secret, or one generated once and kept in the state directory (0600).

    Only the daemon itself may generate it: CLI commands read it (`known_webhook_secret`) or ask the daemon.
    """
    known = known_webhook_secret(settings)
    if known is not None:
        return known
    path = settings.daemon.state_dir / WEBHOOK_SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    generated = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(generated + "\n")
    return generated


def known_webhook_secret(settings: Settings) -> str | None:
    """The configured secret, or the one the daemon generated earlier; None when there is neither."""
    if settings.webhook.secret is not None:
        return settings.webhook.secret.get_secret_value()
    return read_secret_file(settings.daemon.state_dir / WEBHOOK_SECRET_FILE)


def public_webhook_url(settings: Settings, token: str, port: int | None = None) -> str:
    """The TradingView webhook URL: `webhook.public_url`, else the listening address, with the path token."""
    base = settings.webhook.public_url
    if not base:
        host = settings.webhook.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        base = f"http://{host}:{port or settings.webhook.port}"
    return f"{base.rstrip('/')}/webhook/tradingview/{token}"
