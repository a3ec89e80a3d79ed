"""Who may use chat-ops: a per-transport allowlist of user ids with a role, optionally restricted to chats."""

from __future__ import annotations

from pydantic import Field

from daemon.chat.replies import FrozenModel
from daemon.domain import ChatIdentity
from daemon.domain import ChatRole as Role


class TransportAuth(FrozenModel):
    users: dict[str, Role] = Field(default_factory=dict)  # user id -> role; empty denies everyone
    chats: list[str] = Field(default_factory=list)  # allowed chat/channel/guild ids; empty allows any


class ChatAuth(FrozenModel):
    telegram: TransportAuth = Field(default_factory=TransportAuth)
    discord: TransportAuth = Field(default_factory=TransportAuth)

    def role(self, who: ChatIdentity) -> Role | None:
        rules = self.telegram if who.transport == "telegram" else self.discord
        role = rules.users.get(who.user_id)
        if role is None:
            return None
        if rules.chats and who.chat_id not in rules.chats and (who.guild_id or "") not in rules.chats:
            return None
        return role
