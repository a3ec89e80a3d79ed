"""The configuration tree: every option traderd reads, from TOML, environment and systemd credentials.

Precedence, highest first: environment variables (`TRADERD_` prefix, `__` between levels, e.g.
`TRADERD_WEBHOOK__PORT=9000`), credential files in `$CREDENTIALS_DIRECTORY` (file name is the dotted or
`__`-joined path, e.g. `webhook.secret` or `api__token`), the TOML file, then the embedded defaults.
With no file at all the defaults describe one paper account, SQLite under the state directory and the
webhook on 127.0.0.1:8080.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.brokers import AlpacaSettings, ProjectXSettings, TradovateSettings
from config.chat import AlertSettings, DiscordSettings, TelegramSettings
from config.risk import CashSettings, FundedSettings, PdtSettings
from config.strategies import StrategySettings

ENV_PREFIX = "TRADERD_"
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def default_state_dir() -> Path:
    """systemd's StateDirectory= first, then XDG, then ~/.local/state."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "traderd"


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DaemonSettings(_Section):
    state_dir: Path = Field(default_factory=default_state_dir, description="Database, secrets, paper state")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    sentry_dsn: SecretStr | None = None
    sentry_environment: str = "production"
    shutdown_grace_seconds: float = Field(10.0, gt=0, le=300)
    watchdog_stall_seconds: float = Field(
        30.0, gt=0, description="A worker stuck on one signal this long stops petting the systemd watchdog"
    )
    reconcile_interval_seconds: float = Field(60.0, ge=5, description="Periodic reconciliation with brokers")
    timezone: str = Field("America/New_York", description="Time zone of trading days for P&L and reports")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)


class WebhookSettings(_Section):
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


class ApiSettings(_Section):
    token: SecretStr | None = Field(None, description="Bearer token for /api/*; unset disables auth")


class StoreSettings(_Section):
    url: str | None = Field(None, description="SQLAlchemy URL; default sqlite under the state directory")

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("store.url must be a sqlite:/// or postgresql:// URL")
        return value


class ClusterSettings(_Section):
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


class TradingHours(_Section):
    start: time = time(9, 30)
    end: time = time(16, 0)
    timezone: str = "America/New_York"
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"]
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)


class RiskLimits(_Section):
    """Basic limits checked before every order. Unset means no limit."""

    max_order_quantity: Decimal | None = Field(None, gt=0)
    max_position: Decimal | None = Field(None, gt=0, description="Largest absolute position per symbol")
    max_open_positions: int | None = Field(None, gt=0)
    max_notional: Decimal | None = Field(None, gt=0, description="Largest quantity x price per order")
    allowed_symbols: list[str] = Field(default_factory=list, description="Empty allows every symbol")
    trading_hours: TradingHours | None = None
    max_orders_per_minute: int | None = Field(None, gt=0)

    @field_validator("allowed_symbols")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [s.strip().upper() for s in value]


class PaperSettings(_Section):
    starting_cash: Decimal = Field(Decimal("100000"), gt=0)
    slippage_bps: Decimal = Field(Decimal("0"), ge=0, le=1000, description="Against the trader, per fill")
    commission_per_unit: Decimal = Field(Decimal("0"), ge=0, description="Per share or contract")
    commission_minimum: Decimal = Field(Decimal("0"), ge=0)
    multipliers: dict[str, Decimal] = Field(
        default_factory=dict, description="Point value per symbol root for futures, e.g. {ES = 50}"
    )


class AccountSettings(_Section):
    broker: Literal["paper", "alpaca", "projectx", "tradovate"] = "paper"
    enabled: bool = True
    symbols: list[str] = Field(
        default_factory=list, description="TradingView tickers routed to this account when the alert names none"
    )
    risk: RiskLimits = Field(default_factory=RiskLimits)
    pdt: PdtSettings = Field(default_factory=PdtSettings)
    cash: CashSettings = Field(default_factory=CashSettings)
    funded: FundedSettings | None = None
    paper: PaperSettings = Field(default_factory=PaperSettings)
    alpaca: AlpacaSettings | None = None
    projectx: ProjectXSettings | None = None
    tradovate: TradovateSettings | None = None

    @model_validator(mode="after")
    def _broker_section(self) -> AccountSettings:
        if self.broker != "paper" and getattr(self, self.broker) is None:
            raise ValueError(f"broker {self.broker!r} needs a [{self.broker}] section with its credentials")
        return self

    @field_validator("symbols")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [s.strip().upper() for s in value]


class CredentialsSource(PydanticBaseSettingsSource):
    """Secrets from systemd's `LoadCredential=`: one file per value in `$CREDENTIALS_DIRECTORY`."""

    def __init__(self, settings_cls: type[BaseSettings], directory: str | None) -> None:
        super().__init__(settings_cls)
        self.directory = Path(directory) if directory else None

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is produced by __call__

    def __call__(self) -> dict[str, Any]:
        if self.directory is None or not self.directory.is_dir():
            return {}
        tree: dict[str, Any] = {}
        for path in sorted(self.directory.iterdir()):
            name = path.name.removeprefix("traderd.")
            parts = [p for p in re.split(r"\.|__", name) if p]
            if not parts or not path.is_file():
                continue
            node = tree
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = path.read_text().strip()
        return tree


class Settings(BaseSettings):
    """The whole configuration. Load it with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    accounts: dict[str, AccountSettings] = Field(default_factory=lambda: {"paper": AccountSettings()})
    default_account: str | None = Field(
        None, description="Account for alerts that name none and whose ticker no account lists"
    )
    strategies: dict[str, StrategySettings] = Field(
        default_factory=dict, description="Scheduled strategies by name; see docs/strategies.md"
    )
    telegram: TelegramSettings | None = None
    discord: DiscordSettings | None = None
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            CredentialsSource(settings_cls, os.environ.get("CREDENTIALS_DIRECTORY")),
            TomlConfigSettingsSource(settings_cls, deep_merge=True),
        )

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not self.accounts:
            raise ValueError("at least one account must be configured")
        for name in self.accounts:
            if not ACCOUNT_NAME.match(name):
                raise ValueError(f"account name {name!r} may only hold letters, digits, '-' and '_'")
        if self.default_account is not None and self.default_account not in self.accounts:
            raise ValueError(f"default_account {self.default_account!r} is not one of the accounts")
        for name, strategy in self.strategies.items():
            if strategy.account not in self.accounts:
                raise ValueError(f"strategy {name!r} trades account {strategy.account!r}, which is not configured")
        unknown = [name for name in self.cluster.accounts if name not in self.accounts]
        if unknown:
            raise ValueError(f"cluster.accounts names unconfigured account(s): {', '.join(unknown)}")
        owner: dict[str, str] = {}
        for name, account in self.accounts.items():
            for symbol in account.symbols:
                if symbol in owner:
                    raise ValueError(
                        f"ticker {symbol} is routed to both {owner[symbol]!r} and {name!r}; list it in one"
                    )
                owner[symbol] = name
        return self

    @property
    def database_url(self) -> str:
        return self.store.url or f"sqlite:///{self.daemon.state_dir / 'traderd.db'}"

    @property
    def shared_store(self) -> bool:
        """True when several daemons may share the store (PostgreSQL): accounts are owned through leases."""
        return self.database_url.startswith("postgres")

    def enabled_accounts(self) -> dict[str, AccountSettings]:
        return {name: acc for name, acc in self.accounts.items() if acc.enabled}

    def route(self, ticker: str, account: str | None) -> str | None:
        """The account an alert goes to: the one it names, the one listing its ticker, or the default."""
        if account:
            return account if account in self.enabled_accounts() else None
        for name, acc in self.enabled_accounts().items():
            if ticker.upper() in acc.symbols:
                return name
        if self.default_account:
            return self.default_account if self.accounts[self.default_account].enabled else None
        enabled = list(self.enabled_accounts())
        return enabled[0] if len(enabled) == 1 else None


def config_path_from_env(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("TRADERD_CONFIG")
    return Path(env) if env else None


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the configuration. `path` (or `$TRADERD_CONFIG`) names the TOML file; it must exist if given.

    Raises `pydantic.ValidationError` (every problem at once) or `ConfigFileError`.
    """
    toml_path = config_path_from_env(path)
    if toml_path is not None and not toml_path.is_file():
        raise ConfigFileError(f"configuration file {toml_path} does not exist")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=toml_path)

    try:
        loaded = _FromFile(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{toml_path} is not valid TOML: {exc}") from exc
    return Settings.model_construct(**{name: getattr(loaded, name) for name in Settings.model_fields})


class ConfigFileError(Exception):
    """The configuration file is missing or is not valid TOML."""
