"""The configuration tree: every option traderd reads, from TOML, environment and systemd credentials.

Precedence, highest first: environment variables (`TRADERD_` prefix, `__` between levels, e.g.
`TRADERD_WEBHOOK__PORT=9000`), credential files in `$CREDENTIALS_DIRECTORY` (file name is the dotted or
`__`-joined path, e.g. `webhook.secret` or `api__token`), the TOML file, then the embedded defaults.
With no file at all the defaults describe one paper account, SQLite under the state directory and the
webhook on 127.0.0.1:8080.

Which file (`config/discovery.py`): `discover_config()` looks at `--config`, `$TRADERD_CONFIG`, `./traderd.toml`,
`$XDG_CONFIG_HOME/traderd/traderd.toml` and `/etc/traderd/traderd.toml`, in that order. The service's own
file (`/etc/traderd/traderd.toml`) also makes the service's directories the defaults (`/var/lib/traderd`,
`/run/traderd`), so an administrator's `traderd status` finds the installed service, not a private one.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticKnownError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.brokers import BROKER_SECTIONS, read_sections, trades_only_futures
from config.chat import AlertSettings, DiscordSettings, TelegramSettings
from config.groups import GroupSettings, SymbolMapping, Targets, check_groups, targets
from config.risk import CashSettings, FundedSettings, PdtSettings
from config.service import (
    ApiSettings,
    ClusterSettings,
    DaemonSettings,
    StoreSettings,
    WebhookSettings,
    _zone,
)
from config.strategies import StrategySettings

ENV_PREFIX = "TRADERD_"
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class TradingHours(_Section):
    start: time = time(9, 30)
    end: time = time(16, 0)
    timezone: str = "America/New_York"
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS[:5]))

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


class AccountSettings(_Section):
    """One trading account. Its broker's section is written `[accounts.<name>.<broker>]` (e.g.
    `[accounts.main.alpaca]`) and validated with that broker's model from `config.brokers.BROKER_SECTIONS`;
    `section(broker)` reads it."""

    broker: str = Field(default="paper", description="A name from config.brokers.BROKER_SECTIONS")
    enabled: bool = True
    market: Literal["stocks", "futures"] | None = Field(
        None, description="What the account trades; default futures for projectx, tradovate and funded accounts"
    )
    symbols: list[str] = Field(
        default_factory=list, description="TradingView tickers routed to this account when the alert names none"
    )
    bar_files: dict[str, Path] = Field(
        default_factory=dict, description="symbol -> CSV of bars for ATR exits where the broker serves no bars")
    risk: RiskLimits = Field(default_factory=RiskLimits)
    pdt: PdtSettings = Field(default_factory=PdtSettings)
    cash: CashSettings = Field(default_factory=CashSettings)
    funded: FundedSettings | None = None
    sections: dict[str, SerializeAsAny[BaseModel]] = Field(
        default_factory=dict, description="Broker sections by broker name; set as `<broker>` keys, never directly"
    )

    def section(self, broker: str) -> BaseModel | None:
        """The `[accounts.<name>.<broker>]` section as validated (defaults for a broker that needs no input)."""
        return self.sections.get(broker)

    @field_validator("broker")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if value not in BROKER_SECTIONS:
            names = [repr(name) for name in BROKER_SECTIONS]
            expected = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
            raise PydanticKnownError("literal_error", {"expected": expected})
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _broker_sections(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> AccountSettings:
        """Validate each `<broker>` key with its model from the table; report every problem at once, located
        where it was written (`accounts.main.alpaca.key_id`)."""
        if not isinstance(data, dict):
            built: AccountSettings = handler(data)
            return built
        own = {key: value for key, value in data.items() if key not in BROKER_SECTIONS and key != "sections"}
        sections, errors = read_sections(data)
        if "sections" in data:
            errors.append({"type": "extra_forbidden", "loc": ("sections",), "input": data["sections"]})
        try:
            account: AccountSettings = handler({**own, "sections": sections})
        except ValidationError as exc:  # the account's own options first, unknown keys last, as written
            found = exc.errors()
            errors = [e for e in found if e["type"] != "extra_forbidden"] + errors + [
                e for e in found if e["type"] == "extra_forbidden"]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        if account.broker not in account.sections:
            raise ValueError(f"broker {account.broker!r} needs a [{account.broker}] section with its credentials")
        return account

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        """Dumped in the shape it is written: one key per broker section (None where there is none)."""
        data: dict[str, Any] = handler(self)
        sections = data.pop("sections", None) or {}
        return data | {name: sections.get(name) for name in BROKER_SECTIONS}

    @field_validator("symbols")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [s.strip().upper() for s in value]

    @property
    def is_futures(self) -> bool:
        """Futures accounts count their day from the 17:00 CT roll and get their summary after the CME close."""
        if self.market is not None:
            return self.market == "futures"
        return trades_only_futures(self.broker) or self.funded is not None


class EnvSource(EnvSettingsSource):
    """`TRADERD_...` environment variables, with an account's broker sections known by their models, so a
    section's options are read like any other (`..._PAPER__MULTIPLIERS='{"ES": 50}'` is JSON)."""

    def next_field(self, field: FieldInfo | Any | None, key: str, case_sensitive: bool | None = None
                   ) -> FieldInfo | None:
        annotation = field.annotation if isinstance(field, FieldInfo) else field
        if annotation is AccountSettings and key.lower() in BROKER_SECTIONS:
            return FieldInfo(annotation=BROKER_SECTIONS[key.lower()])
        return super().next_field(field, key, case_sensitive)


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
    groups: dict[str, GroupSettings] = Field(
        default_factory=dict, description="Account groups one alert fans out to; see config/groups.py"
    )
    symbol_maps: dict[str, dict[str, SymbolMapping]] = Field(
        default_factory=dict, description="By account or group name: root -> {to, ratio} traded instead"
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
            EnvSource(settings_cls),
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
        check_groups(self.groups, self.symbol_maps, list(self.accounts),
                     {name: acc.symbols for name, acc in self.accounts.items()})
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

    def targets(self, ticker: str, account: str | None, accounts: list[str] | None = None) -> Targets | None:
        """Every account an alert goes to (a group, a list, or the one `route` picks), with sizes and maps."""
        single = None if accounts or (account in self.groups) else self.route(ticker, account)
        return targets(self.groups, self.symbol_maps, list(self.enabled_accounts()), ticker=ticker,
                       account=account, accounts=accounts, single=single)


def config_path_from_env(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("TRADERD_CONFIG")
    return Path(env) if env else None


def read_secret_file(path: Path) -> str | None:
    """The stripped content of a secret file, or None when it is absent, empty or not readable by this user."""
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


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
