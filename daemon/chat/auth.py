"""Who may use chat-ops: per transport, allowed user ids with a role and a name, optionally restricted to chats."""

from __future__ import annotations

from pydantic import Field

from daemon.chat.replies import FrozenModel
from daemon.domain import ChatIdentity
from daemon.domain import ChatRole as Role


class TransportAuth(FrozenModel):
    users: dict[str, Role] = Field(default_factory=dict)  # user id -> role; empty denies everyone
    chats: list[str] = Field(default_factory=list)  # allowed chat/channel/guild ids; empty allows any
    names: dict[str, str] = Field(default_factory=dict)  # user id -> the name people know them by

    @classmethod
    def of(cls, users: dict[str, tuple[Role, str | None]], chats: list[str]) -> TransportAuth:
        """From configured users: id -> (role, name or None)."""
        return cls(users={uid: role for uid, (role, _) in users.items()}, chats=chats,
                   names={uid: name for uid, (_, name) in users.items() if name})


class ChatAuth(FrozenModel):
    telegram: TransportAuth = Field(default_factory=TransportAuth)
    discord: TransportAuth = Field(default_factory=TransportAuth)

    def _rules(self, who: ChatIdentity) -> TransportAuth:
        return self.telegram if who.transport == "telegram" else self.discord

    def role(self, who: ChatIdentity) -> Role | None:
        rules = self._rules(who)
        role = rules.users.get(who.user_id)
        if role is None:
            return None
        if rules.chats and who.chat_id not in rules.chats and (who.guild_id or "") not in rules.chats:
            return None
        return role

    def actor(self, who: ChatIdentity) -> str:
        """How actions are attributed (audit log, alerts): "Alice (telegram:111)" when a name is configured,
        else "telegram:111". The id stays in it, so the audit log still says exactly who."""
        name = self._rules(who).names.get(who.user_id)
        return f"{name} ({who.actor})" if name else who.actor
