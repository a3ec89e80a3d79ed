"""Chat-ops settings: Telegram and Discord transports, who may use them, and which alerts go where.

The command core is `daemon/chatops.py`; the transports are `notifiers/*`. Tokens are `SecretStr`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

Role = Literal["viewer", "operator"]
Level = Literal["on", "silent", "off"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class TelegramSettings(_Section):
    token: SecretStr
    base_url: str = Field("https://api.telegram.org/bot", description="Bot API server (self-hosted allowed)")
    users: dict[str, Role] = Field(default_factory=dict, description="user id -> role; everyone else is denied")
    chats: list[str] = Field(default_factory=list, description="Allowed chat ids; empty allows any chat")
    alert_chats: list[str] = Field(default_factory=list, description="Chat ids that receive alerts")


class DiscordSettings(_Section):
    token: SecretStr | None = Field(None, description="Bot token; unset with webhook_url = push-only mode")
    webhook_url: SecretStr | None = Field(None, description="Channel webhook for push-only alerts")
    users: dict[str, Role] = Field(default_factory=dict)
    chats: list[str] = Field(default_factory=list, description="Allowed channel or guild ids; empty allows any")
    alert_channel_id: str | None = None
    command_guild_id: str | None = Field(None, description="Register slash commands in this guild (instant)")


class AlertSettings(_Section):
    levels: dict[str, Level] = Field(default_factory=dict, description="alert type -> on/silent/off")
    confirm_seconds: float = Field(30.0, gt=0, le=600)
