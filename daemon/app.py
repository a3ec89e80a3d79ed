"""Builds the daemon from Settings and runs its lifecycle: start-up, READY, SIGTERM drain, clean stop.

Start-up order matters: the state directory is locked (one daemon per state directory), the store opens,
and this daemon takes ownership of its accounts: on SQLite all of them, on PostgreSQL those whose leases it
gets (`daemon.ownership`). For each account it owns, the broker connects, the store is reconciled with it and
the signals accepted before the last stop are queued again (`daemon.handover`); only then does the webhook
listen and systemd hear READY=1. The chat transports, the alert outbox and the daily summary run where the
singleton lease is held. Stop is the reverse: no new webhooks, drain and hand over each account, close
brokers, close the store, unlock.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from brokers.base import Broker, BrokerError
from brokers.registry import build_broker
from config.settings import Settings
from daemon import cluster
from daemon.chat.backend import DaemonChatBackend
from daemon.chat.outbox import Outbox
from daemon.chat.runtime import ChatRuntime, alert_destinations
from daemon.chat.terms import ChatTerms
from daemon.copier import Copier
from daemon.domain import Event, utcnow
from daemon.engine import Engine
from daemon.events import EventBus, log_event
from daemon.fanout_report import FanoutReports
from daemon.handover import AccountHandover, takeover_text
from daemon.identity import known_webhook_secret, public_webhook_url, traderd_version, webhook_secret
from daemon.links import BrokerLinks
from daemon.metrics import Metrics
from daemon.metrics.live import LiveGauges
from daemon.ownership.fence import SINGLETON, account_lease, account_of
from daemon.ownership.lockfile import LockFile
from daemon.queries import Reader
from daemon.reconcile import Reconciler
from daemon.risk.engine import RiskEngine
from daemon.risk.wiring import build_monitor, build_risk_engine, schedule_risk_jobs
from daemon.scheduler import build_scheduler, every
from daemon.site import site, status_page
from daemon.store.leases import Grant
from daemon.store.repository import Store
from daemon.store.state import StateStore
from daemon.strategy.broker_bars import RoutedBarSource
from daemon.strategy.exit_controls import ExitControls, entry_exits
from daemon.strategy.runner import StrategyRunner
from daemon.supervision.notify import SystemdNotifier, Watchdog, watchdog_interval
from daemon.supervision.redaction import Redactor, collect_secrets
from daemon.web.admin import AdminSocket, url_route
from daemon.web.api import ControlApi
from daemon.web.page_view import Link
from daemon.web.webhook import TradingViewWebhook, health_routes, webhook_routes

log = logging.getLogger("traderd")


class Daemon:
    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow,
                 notifier: SystemdNotifier | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.notifier = notifier or SystemdNotifier()
        state_dir = settings.daemon.state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._secret: str | None = None
        self.stopped = asyncio.Event()  # set once stopping (or an offline run is over): chat stays down
        # The log redaction, for every text that leaves the daemon: API answers, chat, alerts, stored reasons.
        self.redactor = Redactor([*collect_secrets(settings), known_webhook_secret(settings) or ""])
        self.lock = LockFile.for_state_dir(state_dir)
        self.metrics = Metrics()
        self.events = EventBus()
        self.events.subscribe(log_event)
        self.store = Store(settings.database_url, redact=self.redactor.redact)
        self.shared = settings.shared_store
        self.node = cluster.node_name(settings)
        self.brokers: dict[str, Broker] = {
            name: build_broker(name, account, state_dir, clock, self._announcer(name))
            for name, account in settings.enabled_accounts().items()
        }
        self.eligible = cluster.eligible(settings, self.brokers)
        self.ownership, self._keeper = cluster.build_ownership(settings, self.store, self.brokers, self.node,
                                                               on_gain=self._gained, on_loss=self._lost)
        self.risk: RiskEngine = build_risk_engine(settings, self.store, clock)
        self.engine = Engine(store=self.store, brokers=self.brokers, risk=self.risk, events=self.events,
                             metrics=self.metrics, clock=clock,
                             stall_seconds=settings.daemon.watchdog_stall_seconds,
                             groups={name: group.members() for name, group in settings.groups.items()},
                             shared=self.shared, fence=self.ownership.fence, fenced=self._fenced,
                             shapes=entry_exits(settings, self.store, self.brokers))
        self.exits = ExitControls(settings=settings, store=self.store, brokers=self.brokers, engine=self.engine,
                                  events=self.events, clock=clock, fence=self.ownership.fence, owns=self.owns)
        self.fanout_reports = FanoutReports(store=self.store, wait_for=self.engine.wait_for,
                                            expect=self.engine.outcome_of_queued, publish=self.events.publish)
        self.events.subscribe(self.fanout_reports.publish)
        self.events.subscribe(Copier(groups=settings.groups, targets=settings.targets, position=self.store.held,
                                     accept=self.engine.accept_fanout, clock=clock).on_event)  # copy trading
        self.news = cluster.StoreNews(self.engine, self.brokers, self._keeper)
        self.reconciler = Reconciler(store=self.store, events=self.events, engine=self.engine, clock=clock)
        self.risk_monitor = build_monitor(self.risk, self.engine, self.store, self.events, self.brokers, clock,
                                          owns=self.owns)
        self.reader = Reader(store=self.store, brokers=self.brokers, engine=self.engine,
                             timezone=settings.daemon.timezone, clock=clock,
                             futures=[name for name, account in settings.accounts.items() if account.is_futures])
        self.links = BrokerLinks(brokers=self.brokers, reconciler=self.reconciler, events=self.events,
                                 metrics=self.metrics, clock=clock, owns=self.owns,
                                 announce=lambda: self.started_at is not None and self.ready)
        self.connected = self.links.connected
        self.handover = AccountHandover(
            engine=self.engine, brokers=self.brokers, reconciler=self.reconciler,
            connect=self.links.connect, reconcile=self.links.reconcile, connected=self.connected,
            forget=self.risk.funded.forget, publish=self.events.publish, name=self.node,
            timezone=settings.daemon.timezone, grace=settings.daemon.shutdown_grace_seconds)
        self.started_at: datetime | None = None
        self.ready = False
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self.admin: AdminSocket | None = None
        self._scheduler = build_scheduler()
        self.strategies = StrategyRunner(
            submit=self.engine.accept, publish=self.events.publish, brokers=self.brokers,
            scheduler=self._scheduler, state=StateStore(self.store),
            bars=RoutedBarSource.for_strategies(settings.strategies, self.brokers), strategies=settings.strategies,
            clock=clock, owns=self.owns if self.shared else None, symbol_maps=settings.symbol_maps)
        # The first runtime subscribes the alert outbox now; transports connect after READY, where the
        # singleton lease is held. A later term's runtime reuses the outbox, already subscribed.
        self.chat_terms = ChatTerms(self._chat_runtime(), lambda: self._chat_runtime(subscribe=lambda handler: None),
                                    self._scheduler, self.stopped.is_set)
        self.metrics.before_render(LiveGauges(
            self.metrics, brokers=self.brokers, connected=lambda name: name in self.connected, queues=self.engine,
            outbox=self.outbox, funded=self.risk_monitor, clock=clock,
            daily_loss_limits={name: rules.daily_loss_limit for name, rules in self.risk.funded.rules.items()},
        ).refresh)
        self._listener: Any = None  # daemon.ownership.listener.Listener on a shared store
        self._watchdog_task: asyncio.Task[None] | None = None

    @property
    def secret(self) -> str:
        """The webhook secret, generated on first use (an offline `traderd flatten` never needs one)."""
        if self._secret is None:
            self._secret = webhook_secret(self.settings)
            self.redactor.learn(self._secret)
        return self._secret

    @property
    def chat(self) -> ChatRuntime:
        """This term's chat runtime (see ChatTerms)."""
        return self.chat_terms.runtime

    @property
    def scheduler(self) -> AsyncIOScheduler:
        """The daemon's one scheduler (every periodic and wall-clock job)."""
        return self._scheduler

    # ---- wiring ----------------------------------------------------------------------------------

    def _announcer(self, account: str) -> Callable[[str], None]:
        """What an account's broker adapter says about its link (a login about to expire) as a broker event."""
        return lambda text: self.events.publish(Event(kind="broker", account=account, summary=text))

    def owns(self, account: str) -> bool:
        return self.ownership.holds(account_lease(account))

    def _chat_runtime(self, subscribe: Callable[[Callable[[Event], None]], object] | None = None) -> ChatRuntime:
        """The chat runtime; a later term (after the singleton lease came back) reuses the one outbox, which is
        subscribed to the events once (`subscribe` does nothing then)."""
        settings = self.settings
        if getattr(self, "outbox", None) is None:
            self.outbox = Outbox(self.store, alert_destinations(settings.telegram, settings.discord),
                                 settings.alerts, self.clock, redact=self.redactor.redact)
        outbox = self.outbox
        backend = DaemonChatBackend(
            reader=self.reader, engine=self.engine, risk=self.risk, store=self.store, readiness=self.readiness,
            version=traderd_version(), started_at=lambda: self.started_at, outbox_pending=self.outbox.pending_count,
            extra_health=lambda: self.chat.health(), clock=self.clock, strategies=self.strategies, exits=self.exits)
        return ChatRuntime(
            telegram=settings.telegram, discord=settings.discord, alerts=settings.alerts,
            timezone=settings.daemon.timezone, outbox=outbox, state=StateStore(self.store), backend=backend,
            reader=self.reader, subscribe=subscribe or self.fanout_reports.subscribe, clock=self.clock,
            redact=self.redactor.redact)

    def web_app(self) -> web.Application:
        api = self._control_api()
        page = status_page(reader=self.reader, store=self.store, risk=self.risk, monitor=self.risk_monitor,
                           strategies=self.strategies, events=self.events, links=self._links, status=self.status,
                           flatten=api.flatten, settings=self.settings, clock=self.clock)
        hook = TradingViewWebhook(settings=self.settings, engine=self.engine, metrics=self.metrics, secret=self.secret,
                                  clock=self.clock)
        routes = (webhook_routes(hook) + health_routes(readiness=self.readiness, metrics=self.metrics,
                                                       describe=self.role) + api.routes())
        return site(self.settings, routes, page, redact=self.redactor.redact_strings)

    def _links(self) -> list[Link]:
        brokers = [Link(f"broker {name}", name in self.connected and broker.healthy())
                   for name, broker in self.brokers.items()]
        return brokers + [Link(check.name, check.ok, check.detail) for check in self.chat.health()]

    def _control_api(self) -> ControlApi:
        return ControlApi(reader=self.reader, engine=self.engine, store=self.store, status=self.status,
                          risk=self.risk, monitor=self.risk_monitor, strategies=self.strategies)

    async def _start_admin_socket(self) -> None:
        """The admin socket (control API without a token, plus the full URL); the daemon runs on without it."""
        path = self.settings.daemon.admin_socket
        admin = AdminSocket(path, [*self._control_api().routes(), url_route(self.webhook_url)],
                            self.settings.daemon.admin_group)
        try:
            await admin.start()
        except (OSError, KeyError) as exc:
            log.error("admin socket unavailable (traderd status/url/flatten need the API token instead): %s", exc)
            return
        self.admin = admin

    def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {"started": self.ready, "store": self.store.ping(), "engine": self.engine.alive()}
        for name, broker in self.brokers.items():
            if self.owns(name):  # a standby does not need the brokers of accounts it does not execute
                checks[f"broker:{name}"] = name in self.connected and broker.healthy()
        return checks

    def role(self) -> dict[str, Any]:
        """active (executes every account it may), standby (none) or partial, with the accounts held."""
        return cluster.role(self.ownership, self.eligible)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {"version": traderd_version(), "ready": self.ready,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "uptime_seconds": round((now - self.started_at).total_seconds()) if self.started_at else 0,
                "webhook_url": self.webhook_url(masked=True),
                "cluster": cluster.view(self.ownership, self.brokers, self.eligible, self.shared)}

    def webhook_url(self, masked: bool = False) -> str:
        return public_webhook_url(self.settings, "<secret>" if masked else self.secret, self.port)

    # ---- ownership -------------------------------------------------------------------------------

    async def _gained(self, lease: str, grant: Grant) -> None:
        account = account_of(lease)
        if account is not None:
            await self.handover.gained(account, grant)
            await self.strategies.catch_up(account)  # a bar that closed during the failover
            return
        text = takeover_text("chat and alerts", grant, self.node, self.settings.daemon.timezone)
        if text is not None:
            self.events.publish(Event(kind="daemon", summary=text, data={"ownership": "taken_over",
                                                                         "by": self.node, "lease": SINGLETON}))
        if self.ready:  # at start-up chat connects after READY (see start)
            await self.chat_terms.up()

    async def _lost(self, lease: str, why: str, graceful: bool) -> None:
        account = account_of(lease)
        if account is not None:
            await self.handover.lost(account, why, graceful)
            return
        await self.chat_terms.down()

    def _fenced(self, account: str, why: str) -> None:
        """A send was refused: end this term of the account (a new one resumes its signals in order)."""
        self.ownership.drop(account_lease(account), why)

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.started_at = self.clock()
        self.lock.acquire()  # AlreadyRunning, naming the other daemon's pid
        self.store.open()
        await asyncio.to_thread(self.store.warm)
        await self.engine.start(accounts=())  # workers start as accounts are owned
        if self.shared:
            from daemon.ownership.listener import Listener  # psycopg: only with the postgres extra

            self._listener = Listener(self.store.url, on_batch=self.news.on_batch, on_reconnect=self.news.resync)
            await self._listener.start()
        await self.ownership.start()  # connect, reconcile and resume each account it gets
        await self.strategies.start()
        # auto_decompress=False: the webhook inflates bodies itself, bounded, and refuses unknown encodings.
        self._runner = web.AppRunner(self.web_app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=5, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.webhook.host, self.settings.webhook.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        await self._start_admin_socket()
        every(self._scheduler, self.settings.daemon.reconcile_interval_seconds, self.reconcile_all, "reconcile")
        every(self._scheduler, self.settings.daemon.reconcile_interval_seconds, self.read_accounts, "metrics")
        every(self._scheduler, self.settings.daemon.exit_mark_seconds, self.engine.mark_exits, "exit-marks")
        if self.shared:
            every(self._scheduler, self.settings.cluster.renew_every, self.news.sweep, "signal-sweep")
        schedule_risk_jobs(self._scheduler, self.risk_monitor, self.settings)
        every(self._scheduler, 1.0, self.exits.tick, "time-exits")
        self._scheduler.start()
        interval = watchdog_interval()
        if interval:
            watchdog = Watchdog(self.notifier, interval, self.settings.daemon.watchdog_stall_seconds)
            self._watchdog_task = asyncio.create_task(watchdog.pet_while(self.engine.alive), name="watchdog")
        try:
            await self.read_accounts()
        except Exception:  # the gauges wait for the next periodic read; start-up goes on
            log.exception("first account read for /metrics failed")
        self.ready = True
        role = self.role()
        self.notifier.ready(f"listening on {self.settings.webhook.host}:{self.port}, "
                            f"{len(role['accounts'])} of {len(self.brokers)} accounts ({role['role']})")
        self.events.publish(Event(kind="daemon", summary=f"traderd {traderd_version()} started"
                                  + (f" on {self.node} ({role['role']})" if self.shared else "")))
        log.info("traderd %s ready: webhook on %s:%s, accounts %s", traderd_version(),
                 self.settings.webhook.host, self.port, ", ".join(role["accounts"]) or "none (standby)")
        if self.ownership.holds(SINGLETON):
            await self.chat_terms.up()

    async def reconcile_all(self) -> None:
        await self.links.reconcile_all()

    async def read_accounts(self) -> None:
        """Equity and day P&L for /metrics (broker calls, so periodic rather than at every scrape)."""
        for view in await self.reader.accounts():
            if view.state is not None and not view.stale:
                self.metrics.equity.labels(view.account).set(float(view.state.equity))
        for pnl in (await self.reader.pnl("today")).accounts:
            self.metrics.day_pnl.labels(pnl.account).set(float(pnl.net))

    async def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.ready = False
        self.notifier.stopping()
        await self.chat_terms.down()
        log.info("stopping: no new webhooks, draining queued signals")
        if self._runner is not None:
            await self._runner.cleanup()
        if self.admin is not None:
            await self.admin.stop()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
        await self.strategies.stop()
        await self.fanout_reports.close()
        if self._listener is not None:
            await self._listener.stop()
        await self.ownership.stop()  # each account drains (shutdown_grace_seconds) and is handed over
        await self.engine.stop(self.settings.daemon.shutdown_grace_seconds)
        for name, broker in self.brokers.items():
            try:
                await broker.close()
            except BrokerError as exc:
                log.warning("closing broker of %s: %s", name, exc.reason)
        self.events.publish(Event(kind="daemon", summary="traderd stopped"))
        self.store.close()
        self.lock.release()
        log.info("stopped cleanly")

    async def run_forever(self, on_ready: Callable[[Daemon], None] | None = None) -> None:
        """Start, wait for SIGTERM/SIGINT, then stop."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        self.lock.acquire()  # refused before anything starts (or needs stopping)
        try:
            await self.start()
            if on_ready is not None:
                on_ready(self)
            await stop.wait()
        finally:
            await self.stop()
