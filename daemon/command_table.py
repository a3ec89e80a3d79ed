"""The chat-ops command table: each command's name, usage, one-line summary and the role it needs.

The command core answers `/help` from it and the transports build their menus from it (Telegram's per-user
command lists, Discord's slash commands), so a command is added in one place.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from daemon.domain import ChatRole


class CommandSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    usage: str
    summary: str
    role: ChatRole


COMMANDS: tuple[CommandSpec, ...] = tuple(
    CommandSpec(name=n, usage=u, summary=s, role=r)
    for n, u, s, r in (
        ("status", "/status", "daemon, brokers and accounts at a glance", "viewer"),
        ("pnl", "/pnl [today|week|month] [account]", "realized, unrealized and fees", "viewer"),
        ("daily", "/daily [n]", "P&L per day and account, last n days (default 7)", "viewer"),
        ("positions", "/positions [account]", "open positions", "viewer"),
        ("orders", "/orders [account]", "open orders", "viewer"),
        ("trades", "/trades [n]", "recent fills (default 10, max 50)", "viewer"),
        ("accounts", "/accounts", "accounts, brokers, paused or not", "viewer"),
        ("risk", "/risk [account]", "each limit: used, limit, left", "viewer"),
        ("chart", "/chart [account] [today|week|month]", "equity curve picture with fills marked", "viewer"),
        ("health", "/health", "daemon self-checks", "viewer"),
        ("strategies", "/strategies", "scheduled strategies: state, last bar and signal", "viewer"),
        ("pause", "/pause [account|all]", "stop new entries (exits still allowed)", "operator"),
        ("resume", "/resume [account|all]", "allow new entries again", "operator"),
        ("cancel", "/cancel [account|all]", "cancel open orders (asks to confirm)", "operator"),
        ("close", "/close SYMBOL [account]", "close one position at market (asks to confirm)", "operator"),
        ("flatten", "/flatten [account|all]", "cancel orders, close all (asks to confirm)", "operator"),
        ("strategy", "/strategy pause|resume NAME", "pause a strategy, or resume (re-enable) it", "operator"),
        ("stop", "/stop SYMBOL atr K [account]", "move the position's stop to K x ATR from its entry", "operator"),
        ("exit_after", "/exit-after SYMBOL 30m [account]", "close the position at market after a time", "operator"),
        ("whoami", "/whoami", "your user and chat id", "viewer"),
        ("help", "/help", "this list", "viewer"),
    )
)
PUBLIC = ("whoami",)  # answered for anyone, so a new user can find their id
EXIT_COMMANDS = ("stop", "exit_after")  # answered by daemon.chat.exit_commands


def commands_for(role: ChatRole | None) -> list[CommandSpec]:
    """The commands a role may use (None: someone not configured, who may only ask /whoami)."""
    if role is None:
        return [spec for spec in COMMANDS if spec.name in PUBLIC]
    return [spec for spec in COMMANDS if role == "operator" or spec.role == "viewer"]
