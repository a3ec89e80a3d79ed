"""The brokers' settings sections (one model each) and the table of them by broker name.

`BROKER_SECTIONS` is the one list of broker names an account may name (`broker = "..."`) and of the model
its `[accounts.<name>.<broker>]` section is validated with; `config.settings.AccountSettings` takes both from
it, and `brokers.registry.ADAPTERS` maps the same names to their adapters. A section whose model needs no
input (paper) defaults when left out; the others are required for an account on that broker. Secrets are
`SecretStr` so they never appear in reprs, logs or `traderd check` output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator


class PaperSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    starting_cash: Decimal = Field(Decimal("100000"), gt=0)
    slippage_bps: Decimal = Field(Decimal("0"), ge=0, le=1000, description="Against the trader, per fill")
    commission_per_unit: Decimal = Field(Decimal("0"), ge=0, description="Per share or contract")
    commission_minimum: Decimal = Field(Decimal("0"), ge=0)
    multipliers: dict[str, Decimal] = Field(
        default_factory=dict, description="Point value per symbol root for futures, e.g. {ES = 50}"
    )


class _BrokerSection(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)
    # A broker that only trades futures makes its accounts futures accounts (the CME day, the futures summary).
    futures_only: ClassVar[bool] = False

    timeout_seconds: float = Field(10.0, gt=0, le=120, description="Per-request timeout")
    max_retries: int = Field(3, ge=0, le=10, description="Retries of safe requests (GETs, lookups)")
    rate_limit_per_minute: int = Field(180, ge=1, description="Client-side request budget")
    poll_interval_seconds: float = Field(2.0, gt=0, le=300, description="Order/fill polling interval")

    @field_validator("base_url", check_fields=False)
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")


class _Streaming(BaseModel):
    stream: bool = Field(True, description="Order/fill updates over the broker's websocket (polling stays on)")
    stream_url: str | None = Field(None, description="Websocket URL; derived from base_url if unset")
    stream_poll_factor: float = Field(
        10, ge=1, le=100, description="While the stream is up, poll this many times less often"
    )

    @field_validator("stream_url")
    @classmethod
    def _ws_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("stream_url must start with ws:// or wss://")
        return value


class AlpacaSettings(_Streaming, _BrokerSection):
    key_id: SecretStr
    secret_key: SecretStr
    base_url: str = Field("https://paper-api.alpaca.markets", description="paper-api or api.alpaca.markets")
    rate_limit_per_minute: int = Field(190, ge=1, description="Alpaca allows 200 requests per minute")
    data_url: str = Field("https://data.alpaca.markets", description="Market-data host (bars for strategies)")
    data_feed: Literal["iex", "sip", "delayed_sip"] = Field(
        "iex", description="Stock bars feed: iex (free plan), sip (paid plan) or delayed_sip (15 min late)"
    )
    data_adjustment: Literal["raw", "split", "dividend", "all"] = Field(
        "raw", description="Corporate-action adjustment of bars; raw matches the prices orders trade at"
    )

    @field_validator("data_url")
    @classmethod
    def _data_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("data_url must start with http:// or https://")
        return value.rstrip("/")


class ProjectXSettings(_BrokerSection):
    futures_only: ClassVar[bool] = True
    username: str
    api_key: SecretStr
    base_url: str = Field("https://api.topstepx.com", description="The firm's ProjectX gateway")
    account_id: int | None = Field(None, description="Numeric account id; the first active account if unset")
    account_name: str | None = Field(None, description="Pick the account by name instead of id")
    rate_limit_per_minute: int = Field(190, ge=1, description="ProjectX allows 200 requests per 60 s")
    token_renew_seconds: float = Field(
        20 * 3600, gt=60, description="Renew the 24 h session token after this"
    )
    stream: bool = Field(True, description="Hear fills and orders from the real-time user hub (SignalR)")
    stream_url: str | None = Field(
        None, description="User hub URL; derived from base_url if unset (api.topstepx.com -> rtc.topstepx.com)"
    )
    reconcile_interval_seconds: float = Field(
        30.0, gt=0, le=3600, description="Polling interval while the user hub is connected (reconciliation)"
    )

    def user_hub_url(self) -> str:
        """`stream_url`, else the gateway's `api` host turned into its `rtc` host, with `/hubs/user`."""
        if self.stream_url:
            return self.stream_url.rstrip("/")
        scheme, _, rest = self.base_url.partition("://")
        host, slash, path = rest.partition("/")
        if host.startswith("api."):
            host = "rtc." + host[4:]
        elif "-api" in host:
            host = host.replace("-api", "-rtc", 1)
        return f"{scheme}://{host}{slash}{path}".rstrip("/") + "/hubs/user"


class TradovateSettings(_Streaming, _BrokerSection):
    futures_only: ClassVar[bool] = True
    username: str
    password: SecretStr
    app_id: str = "traderd"
    app_version: str = "0.1.0"
    cid: int = Field(..., description="API key client id")
    sec: SecretStr = Field(..., description="API key secret")
    device_id: str = Field(..., min_length=1, description="Stable per-install UUID")
    base_url: str = Field(
        "https://demo.tradovateapi.com/v1", description="demo.… or live.tradovateapi.com/v1"
    )
    account_spec: str | None = Field(None, description="Account name; the first account if unset")
    account_id: int | None = None
    token_renew_seconds: float = Field(60 * 60, gt=60, description="Renew the ~80-90 min token after this")


class SchwabSettings(_Streaming, _BrokerSection):
    app_key: SecretStr = Field(..., description="The app's key (OAuth client id) from developer.schwab.com")
    app_secret: SecretStr = Field(..., description="The app's secret")
    callback_url: str = Field("https://127.0.0.1:8182", description="The app's registered callback URL")
    account_number: str | None = Field(
        None, description="Plain account number, only to pick its hashValue; the only account if unset"
    )
    base_url: str = Field("https://api.schwabapi.com/trader/v1", description="Trader API (no sandbox exists)")
    oauth_url: str = Field("https://api.schwabapi.com/v1/oauth", description="Where /authorize and /token are")
    marketdata_url: str = Field(
        "https://api.schwabapi.com/marketdata/v1", description="Market Data API (price history for strategies)"
    )
    rate_limit_per_minute: int = Field(110, ge=1, description="Schwab allows 120 non-order requests per minute")
    order_rate_limit_per_minute: int = Field(
        110, ge=1, description="Order requests per minute (0-120, as set at the app's registration)"
    )
    poll_interval_seconds: float = Field(5.0, gt=0, le=300, description="Order/fill polling interval")
    refresh_token_days: float = Field(7, gt=0, le=7, description="Lifetime of a login's refresh token")
    warn_before_hours: list[float] = Field(
        [48, 6], description="Warn on chat this many hours before the login (refresh token) expires"
    )
    order_lookback_days: int = Field(7, ge=1, le=60, description="Orders polled by entered time (plus known open)")
    lookup_skew_seconds: float = Field(
        120, ge=0, le=3600, description="Clock tolerance when a lost placement is looked up by entered time"
    )

    @field_validator("oauth_url", "callback_url", "marketdata_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class CcxtSettings(_Streaming, _BrokerSection):
    """A crypto exchange account through ccxt's unified API (spot markets); `stream` is ccxt.pro's user
    data stream (Binance: the WebSocket API at `stream_url`, ccxt's own URL if unset), other exchanges poll."""

    exchange: str = Field(..., min_length=2, description="ccxt exchange id: binance, bybit, kraken, ...")
    api_key: SecretStr
    secret: SecretStr
    password: SecretStr | None = Field(None, description="API passphrase, for exchanges that have one (okx, kucoin)")
    sandbox: bool = Field(True, description="The exchange's testnet / sandbox (Binance: testnet.binance.vision)")
    quote_currency: str = Field("USDT", min_length=1, description="Cash of the account; positions are priced in it")
    symbols: list[str] = Field(
        default_factory=list, description="Markets whose fills are read besides those held or traded (BTCUSDT)"
    )
    api_urls: dict[str, str] = Field(
        default_factory=dict, description="Overrides of ccxt's `urls['api']` entries, e.g. {public = \"https://...\"}"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Extra ccxt exchange options")
    recv_window_ms: int = Field(5000, ge=1, le=60000, description="Binance recvWindow of signed requests")
    rate_limit_per_minute: int = Field(600, ge=1, description="Client-side request budget (ccxt also throttles)")
    poll_interval_seconds: float = Field(
        5.0, gt=0, le=300, description="Order/fill polling (each round reads the balance and every market's trades)"
    )
    weight_throttle: bool = Field(
        True, description="ccxt's own pacing by endpoint weight (enableRateLimit); keep it on against an exchange"
    )

    @field_validator("exchange", "quote_currency")
    @classmethod
    def _lower_id(cls, value: str, info: Any) -> str:
        value = value.strip()
        return value.lower() if info.field_name == "exchange" else value.upper()

    @field_validator("symbols")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [s.strip().upper() for s in value]

    @field_validator("api_urls")
    @classmethod
    def _urls(cls, value: dict[str, str]) -> dict[str, str]:
        for key, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"api_urls.{key} must start with http:// or https://")
        return {key: url.rstrip("/") for key, url in value.items()}


STREAMERS = {  # tastytrade's account streamer for each API host (as the tastytrade SDK names them)
    "api.cert.tastyworks.com": "wss://streamer.cert.tastyworks.com",
    "api.tastyworks.com": "wss://streamer.tastyworks.com",
}


class TastytradeSettings(_Streaming, _BrokerSection):
    base_url: str = Field(
        "https://api.cert.tastyworks.com", description="api.cert.tastyworks.com (sandbox) or api.tastyworks.com"
    )
    client_secret: SecretStr | None = Field(None, description="OAuth app's client secret (with refresh_token)")
    refresh_token: SecretStr | None = Field(None, description="OAuth refresh token of the user's grant")
    username: str | None = Field(None, description="Legacy session login (POST /sessions), with password")
    password: SecretStr | None = None
    account_number: str | None = Field(None, description="The account to trade; the only one if unset")
    user_agent: str | None = Field(None, description="User-Agent sent on every request; traderd/<version> if unset")
    rate_limit_per_minute: int = Field(120, ge=1, description="Client-side budget (tastytrade publishes none)")
    poll_interval_seconds: float = Field(2.0, gt=0, le=300, description="Order/fill polling interval")
    order_lookback_days: int = Field(3, ge=1, le=60, description="Orders read by received time for fills")
    lookup_skew_seconds: float = Field(
        300, ge=0, le=3600, description="Clock tolerance when a lost placement is looked up by received time"
    )
    check_symbol: str = Field("SPY", description="`traderd check --online` dry-runs buying 1 of this")

    def streamer_url(self) -> str | None:
        """`stream_url`, else the account streamer of tastytrade's sandbox or production host; None for any
        other `base_url` (a proxy, a stand-in): its streamer cannot be guessed, so the account is polled."""
        host = self.base_url.partition("://")[2].partition("/")[0]
        return self.stream_url or STREAMERS.get(host)

    @model_validator(mode="after")
    def _one_login(self) -> TastytradeSettings:
        oauth = self.client_secret is not None and self.refresh_token is not None
        legacy = self.username is not None and self.password is not None
        if not (oauth or legacy):
            raise ValueError("set client_secret + refresh_token (OAuth) or username + password (session login)")
        return self


BROKER_SECTIONS: dict[str, type[BaseModel]] = {
    "paper": PaperSettings,
    "alpaca": AlpacaSettings,
    "projectx": ProjectXSettings,
    "tradovate": TradovateSettings,
    "schwab": SchwabSettings,
    "ccxt": CcxtSettings,
    "tastytrade": TastytradeSettings,
}


def trades_only_futures(broker: str) -> bool:
    """Whether every account on this broker is a futures account."""
    return bool(getattr(BROKER_SECTIONS.get(broker), "futures_only", False))


def read_sections(account: Mapping[str, Any]) -> tuple[dict[str, BaseModel], list[Any]]:
    """The broker sections in an account's table, each validated with its model (one that needs no input
    defaults when left out), and every problem found, located under its broker's key (`alpaca.key_id`)."""
    sections: dict[str, BaseModel] = {}
    errors: list[Any] = []
    for name, model in BROKER_SECTIONS.items():
        raw = account.get(name)
        try:
            if raw is not None:
                sections[name] = model.model_validate(raw)
            elif not any(field.is_required() for field in model.model_fields.values()):
                with contextlib.suppress(ValidationError):  # a rule across its fields may still need input
                    sections[name] = model()
        except ValidationError as exc:
            errors += [{**error, "loc": (name, *error["loc"])} for error in exc.errors()]
    return sections, errors
