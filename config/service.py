"""The daemon's own options (process, webhook, API, store, cluster) and where the installed service keeps its files."""

from __future__ import annotations

import ipaddress
import os
from decimal import Decimal
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator

from config.section import Section

# Where the shipped systemd unit puts things (systemd/traderd.service).
SERVICE_CONFIG = Path("/etc/traderd/traderd.toml")
SERVICE_CREDENTIALS_DIR = Path("/etc/traderd/credentials")
SERVICE_STATE_DIR = Path("/var/lib/traderd")
SERVICE_RUNTIME_DIR = Path("/run/traderd")
ADMIN_SOCKET = "admin.sock"  # in the runtime directory
WEBHOOK_SECRET_FILE = "webhook_secret"  # in the state directory, when the secret is generated


def _systemd_dir(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value.split(":")[0]) if value else None


def default_state_dir() -> Path:
    """systemd's StateDirectory= first, then XDG, then ~/.local/state."""
    if (given := _systemd_dir("STATE_DIRECTORY")) is not None:
        return given
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "traderd"


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


class DaemonSettings(Section):
    state_dir: Path = Field(default_factory=default_state_dir, description="Database, secrets, paper state")
    runtime_dir: Path | None = Field(
        None, description="Where the admin socket listens; default $RUNTIME_DIRECTORY, else the state directory"
    )
    admin_group: str | None = Field(
        None, description="Group whose members may use the admin socket (besides root and the service user)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    sentry_dsn: SecretStr | None = None
    sentry_environment: str = "production"
    shutdown_grace_seconds: float = Field(10.0, gt=0, le=300)
    watchdog_stall_seconds: float = Field(
        30.0, gt=0, description="A worker stuck on one signal this long stops petting the systemd watchdog"
    )
    reconcile_interval_seconds: float = Field(60.0, ge=5, description="Periodic reconciliation with brokers")
    exit_mark_seconds: float = Field(
        5.0, ge=0.2, le=300, description="How often the stops the daemon trails are marked at the broker's price"
    )
    timezone: str = Field("America/New_York", description="Time zone of trading days for P&L and reports")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)

    @property
    def admin_socket(self) -> Path:
        """The admin socket: in `runtime_dir`, systemd's RuntimeDirectory=, or else the state directory."""
        return (self.runtime_dir or _systemd_dir("RUNTIME_DIRECTORY") or self.state_dir) / ADMIN_SOCKET


class WebhookSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    secret: SecretStr | None = Field(
        None, description="Shared secret (body `secret` or URL path token). Generated and kept if unset."
    )
    public_url: str | None = Field(None, description="https://host as TradingView reaches it (reverse proxy)")
    allowed_ips: list[str] = Field(
        default_factory=list, description="Source IPs/CIDRs allowed to post signals; empty allows any"
    )
    trust_forwarded_for: bool = Field(
        False, description="Take the client IP from X-Forwarded-For (only behind your own reverse proxy)"
    )
    max_body_bytes: int = Field(16_384, ge=256, le=1_048_576)
    body_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="A body not fully arrived by then gets 408 (TradingView waits 3 s)"
    )
    max_quantity: Decimal = Field(
        Decimal(1_000_000), gt=0, le=Decimal("1e15"),
        description="Alerts with a larger quantity or |target_position| are refused as absurd",
    )
    max_price: Decimal = Field(
        Decimal(1_000_000_000), gt=0, le=Decimal("1e15"),
        description="Alerts with a larger price (any price field) are refused as absurd",
    )
    default_max_lag_seconds: float = Field(
        60.0, gt=0, description="Alerts older than this (by `time`, or by arrival on restart) are expired"
    )

    @field_validator("allowed_ips")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from exc
        return value


class ApiSettings(Section):
    token: SecretStr | None = Field(None, description="Bearer token for /api/*; unset disables auth")


class StoreSettings(Section):
    url: str | None = Field(None, description="SQLAlchemy URL; default sqlite under the state directory")

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("store.url must be a sqlite:/// or postgresql:// URL")
        return value


class ClusterSettings(Section):
    """Several daemons on one PostgreSQL store: each account is executed by whichever holds its lease."""

    name: str | None = Field(None, description="This daemon in leases, alerts and status; default the host name")
    lease_seconds: float = Field(10.0, ge=2, le=300, description="An owner that stops renewing loses its "
                                 "accounts after this long")
    renew_seconds: float | None = Field(None, gt=0, description="How often leases are renewed; default 1/3 of "
                                        "lease_seconds")
    margin_seconds: float | None = Field(None, gt=0, description="An owner stops sending orders this long "
                                         "before its lease could pass on (own monotonic clock); default 1/5 "
                                         "of lease_seconds")
    accounts: list[str] = Field(default_factory=list, description="Accounts this daemon may own; empty: any")
    capacity: int | None = Field(None, gt=0, description="Most accounts this daemon owns at once; unset: all")
    singleton: bool = Field(True, description="May run chat polling, the alert outbox and the daily summary")

    @property
    def renew_every(self) -> float:
        return self.renew_seconds or self.lease_seconds / 3

    @property
    def margin(self) -> float:
        return self.margin_seconds or self.lease_seconds / 5

    @model_validator(mode="after")
    def _timings(self) -> ClusterSettings:
        if self.renew_every + self.margin >= self.lease_seconds:
            raise ValueError(f"renew_seconds ({self.renew_every:g}) + margin_seconds ({self.margin:g}) must stay "
                             f"below lease_seconds ({self.lease_seconds:g}), or a healthy owner would lose its "
                             "leases between two renewals")
        return self
