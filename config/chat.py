"""Chat-ops settings: Telegram and Discord transports, who may use them, and which alerts go where.

The command core is `daemon/chat/commands.py`; the transports are `notifiers/*`; alerts are delivered through the
durable outbox (`daemon/chat/outbox.py`). Tokens and webhook URLs are `SecretStr`.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Role = Literal["viewer", "operator"]
Level = Literal["on", "silent", "off"]

# Alert types and their default level. `order` is an order accepted by the broker (the fill says more);
# `order_rejected` a risk rule refusing an order (with the rule and its numbers); `order_failed` the broker
# refusing it, being unreachable, or the signal expiring; `violation` a risk breach not tied to one order.
ALERT_DEFAULTS: dict[str, Level] = {
    "fill": "on",
    "fanout": "on",
    "order": "off",
    "order_rejected": "on",
    "order_failed": "on",
    "violation": "on",
    "flatten": "on",
    "paused": "silent",
    "daemon": "on",
    "broker": "on",
    "daily_summary": "silent",
    "chat": "on",
}
_ID = re.compile(r"^-?[0-9]{1,25}$")
DISCORD_API = "https://discord.com/api/v10"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ChatUser(_Section):
    """One allowed user: the role, and the name alerts and the audit log call them by."""

    role: Role
    name: str | None = Field(None, min_length=1, max_length=64, description="e.g. Alice; unset: the id")


Users = dict[str, ChatUser]


def _ids(values: list[str] | Users, what: str) -> None:
    for value in values:
        if not _ID.match(value):
            raise ValueError(f"{what} {value!r} must be a numeric id (ask the bot /whoami)")


def _user_entries(value: object) -> object:
    """`{"123" = "operator"}` is short for `{"123" = {role = "operator"}}`."""
    if isinstance(value, dict):
        return {key: {"role": entry} if isinstance(entry, str) else entry for key, entry in value.items()}
    return value


class TelegramSettings(_Section):
    token: SecretStr
    base_url: str = Field("https://api.telegram.org/bot", description="Bot API server (self-hosted allowed)")
    users: Users = Field(default_factory=dict, description='user id -> role, or {role = ..., name = "Alice"}; '
                         "everyone else is denied")
    chats: list[str] = Field(default_factory=list, description="Allowed chat ids; empty allows any chat")
    alert_chats: list[str] = Field(
        default_factory=list, description="Chat ids that receive alerts; empty: every configured user's chat"
    )
    polling: bool = Field(True, description="Take commands by long polling getUpdates; false: alerts only")
    poll_timeout: float = Field(10.0, gt=0, le=60)

    @field_validator("users", mode="before")
    @classmethod
    def _short_users(cls, value: object) -> object:
        return _user_entries(value)

    @field_validator("users", "chats", "alert_chats")
    @classmethod
    def _numeric(cls, value: list[str] | Users) -> list[str] | Users:
        _ids(value, "Telegram id")
        return value


class DiscordSettings(_Section):
    token: SecretStr | None = Field(None, description="Bot token; unset with webhook_url = push-only mode")
    webhook_url: SecretStr | None = Field(None, description="Channel webhook for push-only alerts")
    users: Users = Field(default_factory=dict, description="user id -> role, or {role = ..., name = ...}")
    chats: list[str] = Field(default_factory=list, description="Allowed channel or guild ids; empty allows any")
    alert_channel_id: str | None = Field(None, description="Channel the bot posts alerts to")
    command_guild_id: str | None = Field(None, description="Register slash commands in this guild (instant)")
    api_base: str = Field(DISCORD_API, description="REST API base (a compatible server, or a test stand-in)")
    gateway_url: str | None = Field(
        None, description="Gateway websocket; unset: Discord's own, or what api_base's GET /gateway/bot names"
    )

    @field_validator("users", mode="before")
    @classmethod
    def _short_users(cls, value: object) -> object:
        return _user_entries(value)

    @field_validator("users", "chats")
    @classmethod
    def _numeric(cls, value: list[str] | Users) -> list[str] | Users:
        _ids(value, "Discord id")
        return value

    @field_validator("api_base", "gateway_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?|wss?)://[^/\s]+", value):
            raise ValueError(f"{value!r} must be an absolute http(s):// or ws(s):// URL")
        return value.rstrip("/") if value is not None else None

    @model_validator(mode="after")
    def _one_way_in(self) -> DiscordSettings:
        if self.token is None and self.webhook_url is None:
            raise ValueError("discord needs a bot `token`, a push-only `webhook_url`, or both")
        for name in ("alert_channel_id", "command_guild_id"):
            value = getattr(self, name)
            if value is not None and not _ID.match(value):
                raise ValueError(f"discord.{name} {value!r} must be a numeric id")
        return self


class AlertSettings(_Section):
    """Which alerts each transport gets: `on`, `silent` (no notification sound) or `off`, per type."""

    levels: dict[str, Level] = Field(default_factory=dict, description="alert type -> level, every transport")
    telegram: dict[str, Level] = Field(default_factory=dict, description="overrides of `levels` for Telegram")
    discord: dict[str, Level] = Field(default_factory=dict, description="overrides of `levels` for Discord")
    confirm_seconds: float = Field(30.0, gt=0, le=600, description="Confirmation buttons expire after this")
    daily_summary_at: time | None = Field(
        time(16, 5), description="Local time (daemon.timezone) of the daily summary, Mon-Fri; unset: none"
    )
    drain_seconds: float = Field(5.0, ge=0, le=60, description="At shutdown, time to deliver queued alerts")
    max_backoff_seconds: float = Field(10.0, ge=1, le=3600, description="Retry delay cap while a chat is down")
    probe_seconds: float = Field(
        2.0, gt=0, le=60, description="While a chat is down, ask it this often whether it is back (getMe, gateway)"
    )

    @field_validator("levels", "telegram", "discord")
    @classmethod
    def _known_types(cls, value: dict[str, Level]) -> dict[str, Level]:
        unknown = sorted(set(value) - set(ALERT_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown alert type(s) {', '.join(unknown)}; known: {', '.join(ALERT_DEFAULTS)}")
        return value

    def level(self, transport: str, kind: str) -> Level:
        per_transport: dict[str, Level] = getattr(self, transport, {}) if transport in ("telegram", "discord") else {}
        return per_transport.get(kind) or self.levels.get(kind) or ALERT_DEFAULTS.get(kind, "on")
