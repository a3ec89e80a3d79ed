"""Transport-neutral chat commands: parse, authorize, confirm, execute and render, for Telegram and Discord.

`ChatOps.handle(request)` answers one command; `ChatOps.confirm(token, who)` executes a confirmed destructive
command. The daemon is reached only through the `ChatBackend` protocol, so this module needs no engine or
store. Authorization is deny-by-default: a per-transport allowlist of user ids with a role (`viewer` may
read, `operator` may also pause/resume/cancel/flatten accounts, close a position and pause/resume
strategies), optionally restricted to chats (or Discord guilds). Anything else is ignored (`None`) and
audited, except `/whoami`, which always answers. Actions are attributed by `ChatAuth.actor` (the configured
name with the id).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from daemon.chat import exit_commands
from daemon.chat import render as r
from daemon.chat.auth import ChatAuth, TransportAuth
from daemon.chat.confirm import Action, Confirmations, Pending
from daemon.chat.replies import ALL, ChatBackend, StrategyAction
from daemon.command_table import COMMANDS, EXIT_COMMANDS, CommandSpec, commands_for
from daemon.domain import PERIODS, ChatHandler, ChatIdentity, ChatReply, ChatRequest, Period, utcnow
from daemon.domain import ChatRole as Role
from daemon.domain import ChatTransport as Transport

__all__ = [
    "COMMANDS", "SPECS", "BadInput", "ChatAuth", "ChatHandler", "ChatIdentity", "ChatOps", "ChatReply",
    "ChatRequest", "CommandSpec", "Role", "Transport", "TransportAuth",
]

SPECS = {spec.name: spec for spec in COMMANDS}
TRADE_LIMIT = 50
DAILY_DEFAULT, DAILY_LIMIT = 7, 31


class BadInput(Exception):
    """Chat text the core cannot act on; the message is shown to the user."""


Clock = Callable[[], datetime]


class ChatOps:
    """The command core. One instance serves every transport."""

    def __init__(
        self,
        backend: ChatBackend,
        auth: ChatAuth,
        clock: Clock = utcnow,
        confirm_ttl: timedelta = timedelta(seconds=30),
        redact: Callable[[str], str] = str,
    ) -> None:
        self.backend = backend
        self.redact = redact  # the log redaction: a reply may quote a broker's error text
        self.auth = auth
        self.clock = clock
        self.confirm_ttl = confirm_ttl
        self._questions = Confirmations(clock, confirm_ttl)
        self._handlers: dict[str, Callable[[ChatRequest], Awaitable[ChatReply]]] = {
            spec.name: getattr(self, "_" + spec.name) for spec in COMMANDS
            if spec.name not in ("whoami", *EXIT_COMMANDS)
        } | {
            "stop": lambda rq: exit_commands.stop(self.backend, rq),
            "exit_after": lambda rq: exit_commands.exit_after(self.backend, rq),
        }

    # ------------------------------------------------------------------ entry points

    async def handle(self, request: ChatRequest) -> ChatReply | None:
        """Answer one command; None means "say nothing" (unauthorized: ignored, but audited)."""
        return self._redacted(await self._handle(request))

    async def confirm(self, token: str, who: ChatIdentity) -> ChatReply | None:
        """A confirmation button was pressed. Works once, only for its requester, only before it expires."""
        return self._redacted(await self._confirm(token, who))

    def _redacted(self, reply: ChatReply | None) -> ChatReply | None:
        if reply is None:
            return None
        text = self.redact(reply.text)
        return reply if text == reply.text else reply.model_copy(update={"text": text})

    async def _handle(self, request: ChatRequest) -> ChatReply | None:
        request = request.model_copy(update={"command": request.command.replace("-", "_")})  # /exit-after
        if request.command == "whoami":
            return self._whoami(request)
        role = self.auth.role(request)
        if role is None:
            await self._audit(request, request.command, "", False, "denied: unknown user or chat")
            return None
        handler = self._handlers.get(request.command)
        if handler is None:
            return ChatReply(text=f"Unknown command /{request.command}. Send /help for the list.")
        if SPECS[request.command].role == "operator" and role != "operator":
            await self._audit(request, request.command, " ".join(request.args), False, "denied: viewer")
            return ChatReply(text=f"/{request.command} needs the operator role; you are a viewer.")
        try:
            return await handler(request)
        except (BadInput, exit_commands.ExitInput) as exc:
            return ChatReply(text=str(exc))
        except Exception as exc:  # a backend failure must not kill the transport
            await self._audit(request, request.command, " ".join(request.args), False, f"error: {exc!r}")
            return ChatReply(text=f"/{request.command} failed: {exc}")

    async def _confirm(self, token: str, who: ChatIdentity) -> ChatReply | None:
        role = self.auth.role(who)
        if role is None:
            await self._audit(who, "confirm", token, False, "denied: unknown user or chat")
            return None
        decision, _, key = token.partition(":")
        pending = self._questions.peek(key)
        if pending is None or decision not in ("ok", "no"):
            # A pop-up for the presser only: the message keeps what the first press did (e.g. "done").
            return ChatReply(text="This confirmation has expired or was already used. Nothing was done.",
                             ephemeral=True)
        if pending.who.transport != who.transport or pending.who.user_id != who.user_id:
            await self._audit(who, f"confirm {pending.action}", pending.target, False, "not the requester")
            return ChatReply(text="Only the person who asked can confirm this.", ephemeral=True)
        self._questions.take(key)  # consumed before anything is awaited: a double press finds nothing
        what = f"{pending.symbol} on {pending.target}" if pending.symbol else pending.target
        if decision == "no":
            await self._audit(who, pending.action, what, True, "cancelled at confirmation")
            return ChatReply(text=f"/{pending.action} {what} cancelled. Nothing was done.")
        return await self._execute(pending)

    def pending_count(self) -> int:
        return self._questions.count()

    # ------------------------------------------------------------------ helpers

    def _whoami(self, who: ChatRequest) -> ChatReply:
        role = self.auth.role(who)
        lines = [
            f"transport: {who.transport}",
            f"user id: {who.user_id}" + (f" ({who.user_name})" if who.user_name else ""),
            f"chat id: {who.chat_id}",
        ]
        if who.guild_id:
            lines.append(f"guild id: {who.guild_id}")
        lines.append(f"role: {role or 'none (not authorized)'}")
        return ChatReply(text="\n".join(lines))

    async def _audit(self, who: ChatIdentity, action: str, target: str, ok: bool, detail: str) -> None:
        await self.backend.audit(self.auth.actor(who), action, target, ok, detail)

    async def _account_arg(self, value: str | None, *, allow_all: bool) -> str | None:
        """Resolve an account argument (case-insensitive) to its configured name; "all" -> "all"."""
        if value is None:
            return None
        if allow_all and value.lower() == ALL:
            return ALL
        names = [a.name for a in await self.backend.accounts()]
        groups = list(await self.backend.groups())
        for name in names + groups:
            if name.lower() == value.lower():
                return name
        known = f" Groups: {', '.join(groups)}." if groups else ""
        raise BadInput(f"Unknown account {value!r}. Accounts: {', '.join(names) or 'none'}.{known}")

    async def _many(self, target: str | None) -> bool:
        """Whether a target covers several accounts: every account (None, "all") or a group."""
        return target in (None, ALL) or target in await self.backend.groups()

    def _no_extra(self, request: ChatRequest, allowed: int) -> None:
        if len(request.args) > allowed:
            raise BadInput(f"Too many arguments. Usage: {SPECS[request.command].usage}")

    async def _target(self, request: ChatRequest) -> str:
        """The account (or "all") a control command acts on; omitted is fine with a single account."""
        self._no_extra(request, 1)
        if request.args:
            target = await self._account_arg(request.args[0], allow_all=True)
            assert target is not None
            return target
        names = [a.name for a in await self.backend.accounts()]
        if len(names) == 1:
            return names[0]
        raise BadInput(f"Say which account: {SPECS[request.command].usage} (accounts: {', '.join(names)}).")

    def _ask(self, request: ChatRequest, action: Action, target: str, question: str) -> ChatReply:
        return self._questions.ask(request, action, target, question, label=f"{action} {target}")

    async def _execute(self, pending: Pending) -> ChatReply:
        who, action, target = pending.who, pending.action, pending.target
        actor = self.auth.actor(who)
        if action == "close":
            return await self._execute_close(pending, actor)
        try:
            if action == "pause":
                results = await self.backend.pause(target, actor)
                text = r.control_text("paused", "already paused", results)
            else:
                reports = await (self.backend.flatten if action == "flatten" else self.backend.cancel)(
                    target, actor, pending.key
                )
                done = "Flatten" if action == "flatten" else "Cancel"
                body = "\n".join(r.flatten_report(rep, verb=action) for rep in reports) or "no accounts"
                failed = any(rep.errors for rep in reports)
                text = f"{done} {target}: {'done with ERRORS' if failed else 'done'}.\n{body}"
        except Exception as exc:
            await self._audit(who, action, target, False, f"error: {exc!r}")
            return ChatReply(text=f"/{action} {target} FAILED: {exc}")
        await self._audit(who, action, target, True, "confirmed and executed")
        return ChatReply(text=r.clip(text))

    # ------------------------------------------------------------------ read-only commands

    async def _execute_close(self, pending: Pending, actor: str) -> ChatReply:
        what = f"{pending.symbol} on {pending.target}"
        try:
            result = await self.backend.close(pending.target, pending.symbol, actor, pending.key)
        except Exception as exc:
            await self._audit(pending.who, "close", what, False, f"error: {exc!r}")
            return ChatReply(text=f"/close {what} FAILED: {exc}")
        await self._audit(pending.who, "close", what, result.ok, "confirmed and executed" if result.ok
                          else result.detail)
        return ChatReply(text=r.close_text(result))

    async def _help(self, request: ChatRequest) -> ChatReply:
        shown = commands_for(self.auth.role(request))
        lines = [f"{spec.usage} - {spec.summary}" for spec in shown]
        return ChatReply(text="Commands:\n" + "\n".join(lines))

    async def _status(self, request: ChatRequest) -> ChatReply:
        self._no_extra(request, 0)
        return ChatReply(text=r.status_text(await self.backend.status(), self.clock()))

    async def _accounts(self, request: ChatRequest) -> ChatReply:
        self._no_extra(request, 0)
        return ChatReply(text=r.accounts_text(await self.backend.accounts()))

    async def _period_and_account(self, request: ChatRequest) -> tuple[Period, str | None]:
        """`[today|week|month] [account]`, in either order."""
        self._no_extra(request, 2)
        period: Period = "today"
        rest = []
        for arg in request.args:
            named = [p for p in PERIODS if arg.lower() == p]
            if named:
                period = named[0]
            else:
                rest.append(arg)
        if len(rest) > 1:
            raise BadInput(f"Unknown period {rest[0]!r}: use today, week or month.")
        return period, await self._account_arg(rest[0], allow_all=False) if rest else None

    async def _pnl(self, request: ChatRequest) -> ChatReply:
        period, account = await self._period_and_account(request)
        return ChatReply(text=r.pnl_text(period, account, await self.backend.pnl(period, account)))

    async def _chart(self, request: ChatRequest) -> ChatReply:
        period, account = await self._period_and_account(request)
        image = await self.backend.chart(account, period)
        return ChatReply(text=f"Equity {period}{f' [{account}]' if account else ''}", image=image)

    async def _positions(self, request: ChatRequest) -> ChatReply:
        self._no_extra(request, 1)
        account = await self._account_arg(request.args[0], allow_all=False) if request.args else None
        positions = [p for p in await self.backend.positions(account) if p.quantity != 0]
        where = f" on {account}" if account else ""
        if not positions:
            return ChatReply(text=f"No open positions{where}.")
        table = r.positions_table(positions, with_account=await self._many(account))
        timed = r.time_exit_lines([(p, t) for p in positions for t in self.backend.time_exits(p)],
                                  with_account=await self._many(account))
        return ChatReply(text=r.clip(f"Positions{where}\n" + table + (f"\n\n{timed}" if timed else "")))

    async def _orders(self, request: ChatRequest) -> ChatReply:
        self._no_extra(request, 1)
        account = await self._account_arg(request.args[0], allow_all=False) if request.args else None
        orders = [o for o in await self.backend.open_orders(account) if o.status.is_open]
        where = f" on {account}" if account else ""
        if not orders:
            return ChatReply(text=f"No open orders{where}.")
        return ChatReply(text=r.clip(f"Open orders{where}\n" + r.orders_table(orders, with_account=not account)))

    def _count(self, request: ChatRequest, default: int, limit: int, what: str) -> int:
        """The optional number argument of /trades and /daily, from 1 to `limit`."""
        self._no_extra(request, 1)
        if not request.args:
            return default
        try:
            n = int(request.args[0])
        except ValueError:
            bad = request.args[0]
            raise BadInput(f"/{request.command} takes a number of {what} (1-{limit}), not {bad!r}.") from None
        if not 1 <= n <= limit:
            raise BadInput(f"/{request.command} takes a number of {what} from 1 to {limit}, not {n}.")
        return n

    async def _trades(self, request: ChatRequest) -> ChatReply:
        n = self._count(request, 10, TRADE_LIMIT, "fills")
        fills = await self.backend.recent_fills(n)
        if not fills:
            return ChatReply(text="No fills yet.")
        return ChatReply(text=r.clip(f"Last {len(fills)} fills\n" + r.fills_table(fills[:n])))

    async def _daily(self, request: ChatRequest) -> ChatReply:
        n = self._count(request, DAILY_DEFAULT, DAILY_LIMIT, "days")
        return ChatReply(text=r.clip(r.daily_text(n, await self.backend.daily(n))))

    async def _risk(self, request: ChatRequest) -> ChatReply:
        self._no_extra(request, 1)
        account = await self._account_arg(request.args[0], allow_all=False) if request.args else None
        return ChatReply(text=r.risk_text(account, await self.backend.risk(account)))

    async def _health(self, request: ChatRequest) -> ChatReply:
        self._no_extra(request, 0)
        return ChatReply(text=r.health_text(await self.backend.health()))

    async def _strategies(self, request: ChatRequest) -> ChatReply:
        self._no_extra(request, 0)
        return ChatReply(text=r.strategies_text(await self.backend.strategies()))

    # ------------------------------------------------------------------ control commands

    async def _strategy(self, request: ChatRequest) -> ChatReply:
        """`/strategy pause|resume NAME`: NAME must be a configured strategy (any case); nothing changes otherwise."""
        verb = request.args[0].lower() if request.args else ""
        if len(request.args) != 2 or verb not in ("pause", "resume"):
            raise BadInput(f"Usage: {SPECS['strategy'].usage}")
        action: StrategyAction = "pause" if verb == "pause" else "resume"
        known = await self.backend.strategies()
        before = next((s for s in known if s.name.lower() == request.args[1].lower()), None)
        if before is None:
            names = ", ".join(s.name for s in known) or "none configured"
            raise BadInput(f"Unknown strategy {request.args[1]!r}. Strategies: {names}.")
        after = await self.backend.strategy_control(before.name, action, self.auth.actor(request))
        text, ok = r.strategy_control_text(action, before, after)
        await self._audit(request, f"strategy_{action}", before.name, ok, "executed" if ok else text)
        return ChatReply(text=text)
    async def _pause(self, request: ChatRequest) -> ChatReply:
        target = await self._target(request)
        if await self._many(target):
            question = f"Pause {'ALL accounts' if target == ALL else target}? No new entries; exits still allowed."
            return self._ask(request, "pause", target, question)
        results = await self.backend.pause(target, self.auth.actor(request))
        await self._audit(request, "pause", target, True, "executed")
        return ChatReply(text=r.control_text("paused", "already paused", results))

    async def _resume(self, request: ChatRequest) -> ChatReply:
        target = await self._target(request)
        results = await self.backend.resume(target, self.auth.actor(request))
        await self._audit(request, "resume", target, True, "executed")
        return ChatReply(text=r.control_text("resumed", "was not paused", results))

    async def _cancel(self, request: ChatRequest) -> ChatReply:
        target = await self._target(request)
        orders = await self.backend.open_orders(None if target == ALL else target)
        open_orders = [o for o in orders if o.status.is_open]
        question = f"Cancel {len(open_orders)} open order(s) on {target}?"
        if open_orders:
            question += "\n" + r.orders_table(open_orders, with_account=target == ALL)
        await self._audit(request, "cancel", target, True, "asked to confirm")
        return self._ask(request, "cancel", target, r.clip(question, 1500))

    async def _flatten(self, request: ChatRequest) -> ChatReply:
        target = await self._target(request)
        account = None if target == ALL else target
        positions = [p for p in await self.backend.positions(account) if p.quantity != 0]
        orders = [o for o in await self.backend.open_orders(account) if o.status.is_open]
        question = (
            f"FLATTEN {target}: cancel {len(orders)} open order(s) and close {len(positions)} position(s) at market?"
        )
        if positions:
            question += "\n" + r.positions_table(positions, with_account=await self._many(account))
        await self._audit(request, "flatten", target, True, "asked to confirm")
        return self._ask(request, "flatten", target, r.clip(question, 1500))

    async def _close(self, request: ChatRequest) -> ChatReply:
        """`/close SYMBOL [account]`: one position, at market, after a confirmation."""
        if not 1 <= len(request.args) <= 2:
            raise BadInput(f"Usage: {SPECS['close'].usage}")
        account = await self._account_arg(request.args[1], allow_all=False) if len(request.args) == 2 else None
        if account is not None and account in await self.backend.groups():
            raise BadInput(f"/close closes one account's position; {account!r} is a group. Name one account.")
        symbol = request.args[0].upper()
        held = [p for p in await self.backend.positions(account) if p.quantity != 0]
        matching = [p for p in held if p.symbol.upper() == symbol]
        where = f" on {account}" if account else ""
        if not matching:
            open_ = ", ".join(sorted({f"{p.symbol} ({p.account})" for p in held})) or "none"
            raise BadInput(f"No open {symbol} position{where}. Open positions: {open_}.")
        if len({p.account for p in matching}) > 1:
            names = sorted(p.account for p in matching)
            raise BadInput(f"{symbol} is held on {', '.join(names)}: say which, e.g. /close {symbol} {names[0]}.")
        position = matching[0]
        side = "sell" if position.quantity > 0 else "buy"
        question = (f"CLOSE {position.symbol} on {position.account}: {side} {r.num(abs(position.quantity))} at market "
                    f"and cancel its working orders?\n" + r.positions_table([position], with_account=False))
        await self._audit(request, "close", f"{position.symbol} on {position.account}", True, "asked to confirm")
        return self._questions.ask(request, "close", position.account, r.clip(question, 1500),
                                   label=f"close {position.symbol} on {position.account}", symbol=position.symbol)
