"""Builds the daemon from Settings and runs its lifecycle: start-up, READY, SIGTERM drain, clean stop.

Start-up order matters: the store opens, brokers connect, the store is reconciled with each broker, the
engine re-queues signals accepted before the last stop, and only then does the webhook listen and systemd
hear READY=1. Stop is the reverse: no new webhooks, drain the workers, close brokers, close the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from brokers.base import Broker, BrokerError
from brokers.registry import build_broker
from config.settings import WEBHOOK_SECRET_FILE, Settings, read_secret_file
from daemon.chat.backend import DaemonChatBackend
from daemon.chat.outbox import Outbox
from daemon.chat.runtime import ChatRuntime, alert_destinations
from daemon.domain import Event, utcnow
from daemon.engine import Engine
from daemon.events import EventBus, log_event
from daemon.fanout_report import FanoutReports
from daemon.metrics import Metrics
from daemon.metrics.live import LiveGauges
from daemon.queries import Reader
from daemon.reconcile import Reconciler
from daemon.risk.engine import RiskEngine
from daemon.risk.wiring import build_monitor, build_risk_engine, schedule_risk_jobs
from daemon.scheduler import build_scheduler, every
from daemon.store.repository import Store
from daemon.store.state import StateStore
from daemon.strategy.broker_bars import RoutedBarSource
from daemon.strategy.runner import StrategyRunner
from daemon.supervision.notify import SystemdNotifier, Watchdog, watchdog_interval
from daemon.supervision.redaction import Redactor, collect_secrets
from daemon.web.admin import AdminSocket, url_route
from daemon.web.api import ControlApi, bearer_middleware, redacting_middleware
from daemon.web.page import StatusPage
from daemon.web.page_view import Link, PageView
from daemon.web.webhook import TradingViewWebhook, health_routes, webhook_routes

log = logging.getLogger("traderd")


def traderd_version() -> str:
    try:
        return version("traderd")
    except PackageNotFoundError:
        return "0+unknown"


def webhook_secret(settings: Settings) -> str:
    """The configured secret, or one generated once and kept in the state directory (0600).

    Only the daemon itself may generate it: CLI commands read it (`known_webhook_secret`) or ask the daemon.
    """
    known = known_webhook_secret(settings)
    if known is not None:
        return known
    path = settings.daemon.state_dir / WEBHOOK_SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    generated = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(generated + "\n")
    return generated


def known_webhook_secret(settings: Settings) -> str | None:
    """The configured secret, or the one the daemon generated earlier; None when there is neither."""
    if settings.webhook.secret is not None:
        return settings.webhook.secret.get_secret_value()
    return read_secret_file(settings.daemon.state_dir / WEBHOOK_SECRET_FILE)


def public_webhook_url(settings: Settings, token: str, port: int | None = None) -> str:
    """The TradingView webhook URL: `webhook.public_url`, else the listening address, with the path token."""
    base = settings.webhook.public_url
    if not base:
        host = settings.webhook.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        base = f"http://{host}:{port or settings.webhook.port}"
    return f"{base.rstrip('/')}/webhook/tradingview/{token}"


class Daemon:
    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow,
                 notifier: SystemdNotifier | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.notifier = notifier or SystemdNotifier()
        state_dir = settings.daemon.state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._secret: str | None = None
        # The log redaction, for every text that leaves the daemon: API answers, chat, alerts, stored reasons.
        self.redactor = Redactor([*collect_secrets(settings), known_webhook_secret(settings) or ""])
        self.metrics = Metrics()
        self.events = EventBus()
        self.events.subscribe(log_event)
        self.store = Store(settings.database_url, redact=self.redactor.redact)
        self.brokers: dict[str, Broker] = {
            name: build_broker(name, account, state_dir, clock, self._announcer(name))
            for name, account in settings.enabled_accounts().items()
        }
        self.risk: RiskEngine = build_risk_engine(settings, self.store, clock)
        self.engine = Engine(store=self.store, brokers=self.brokers, risk=self.risk, events=self.events,
                             metrics=self.metrics, clock=clock,
                             stall_seconds=settings.daemon.watchdog_stall_seconds,
                             groups={name: group.members() for name, group in settings.groups.items()})
        self.fanout_reports = FanoutReports(store=self.store, wait_for=self.engine.wait_for,
                                            publish=self.events.publish)
        self.events.subscribe(self.fanout_reports.publish)
        self.reconciler = Reconciler(store=self.store, events=self.events, engine=self.engine, clock=clock)
        self.risk_monitor = build_monitor(self.risk, self.engine, self.store, self.events, self.brokers, clock)
        self.reader = Reader(store=self.store, brokers=self.brokers, engine=self.engine,
                             timezone=settings.daemon.timezone, clock=clock,
                             futures=[name for name, account in settings.accounts.items() if account.is_futures])
        self.connected: set[str] = set()
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
            clock=clock,
        )
        self.chat = self._chat_runtime()  # subscribes the alert outbox now; transports connect after READY
        self.metrics.before_render(LiveGauges(
            self.metrics, brokers=self.brokers, connected=lambda name: name in self.connected, queues=self.engine,
            outbox=self.outbox, funded=self.risk_monitor, clock=clock,
            daily_loss_limits={name: rules.daily_loss_limit for name, rules in self.risk.funded.rules.items()},
        ).refresh)
        self._watchdog_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    @property
    def secret(self) -> str:
        """The webhook secret, generated on first use (an offline `traderd flatten` never needs one)."""
        if self._secret is None:
            self._secret = webhook_secret(self.settings)
            self.redactor.learn(self._secret)
        return self._secret

    @property
    def scheduler(self) -> AsyncIOScheduler:
        """The daemon's one scheduler (every periodic and wall-clock job)."""
        return self._scheduler

    # ---- wiring ----------------------------------------------------------------------------------

    def _announcer(self, account: str) -> Callable[[str], None]:
        """What an account's broker adapter says about its link (a login about to expire) as a broker event."""
        return lambda text: self.events.publish(Event(kind="broker", account=account, summary=text))

    def _chat_runtime(self) -> ChatRuntime:
        settings = self.settings
        outbox = self.outbox = Outbox(self.store, alert_destinations(settings.telegram, settings.discord),
                                      settings.alerts, self.clock, redact=self.redactor.redact)
        backend = DaemonChatBackend(
            reader=self.reader, engine=self.engine, risk=self.risk, store=self.store, readiness=self.readiness,
            version=traderd_version(), started_at=lambda: self.started_at, outbox_pending=outbox.pending_count,
            extra_health=lambda: self.chat.health(), clock=self.clock, strategies=self.strategies,
        )
        return ChatRuntime(
            telegram=settings.telegram, discord=settings.discord, alerts=settings.alerts,
            timezone=settings.daemon.timezone, outbox=outbox, state=StateStore(self.store), backend=backend,
            reader=self.reader, subscribe=self.fanout_reports.subscribe, clock=self.clock,
            redact=self.redactor.redact,
        )

    def web_app(self) -> web.Application:
        app = web.Application(middlewares=[bearer_middleware(self._api_token()),
                                           redacting_middleware(self.redactor.redact_strings)],
                              client_max_size=self.settings.webhook.max_body_bytes * 4)
        hook = TradingViewWebhook(settings=self.settings, engine=self.engine,
                                  metrics=self.metrics, secret=self.secret, clock=self.clock)
        api = self._control_api()
        app.add_routes(webhook_routes(hook) + health_routes(readiness=self.readiness, metrics=self.metrics)
                       + api.routes())
        self._status_page(api).install(app)
        return app

    def _status_page(self, api: ControlApi) -> StatusPage:
        view = PageView(reader=self.reader, store=self.store, risk=self.risk, monitor=self.risk_monitor,
                        strategies=self.strategies.status, recent_events=lambda: self.events.recent,
                        links=self._links, status=self.status, timezone=self.settings.daemon.timezone,
                        clock=self.clock)
        page = StatusPage(view=view, flatten=api.flatten, token=self._api_token(), host=self.settings.webhook.host,
                          timezone=self.settings.daemon.timezone)
        self.events.subscribe(page.streams.notify)
        return page

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

    def _api_token(self) -> str | None:
        token = self.settings.api.token
        return token.get_secret_value() if token else None

    def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {"started": self.ready, "store": self.store.ping(), "engine": self.engine.alive()}
        for name, broker in self.brokers.items():
            checks[f"broker:{name}"] = name in self.connected and broker.healthy()
        return checks

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "version": traderd_version(),
            "ready": self.ready,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "uptime_seconds": round((now - self.started_at).total_seconds()) if self.started_at else 0,
            "webhook_url": self.webhook_url(masked=True),
        }

    def webhook_url(self, masked: bool = False) -> str:
        return public_webhook_url(self.settings, "<secret>" if masked else self.secret, self.port)

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.started_at = self.clock()
        self.store.open()
        for name, broker in self.brokers.items():
            await self._connect(name, broker)
        for name in sorted(self.connected):
            try:
                await self.reconciler.account(name, self.brokers[name])
            except BrokerError as exc:
                log.error("start-up reconciliation of %s failed: %s", name, exc.reason)
            else:
                self.metrics.last_reconcile.labels(name).set(self.clock().timestamp())
        await self.engine.start()
        await self.strategies.start()
        # auto_decompress=False: the webhook inflates bodies itself, bounded, and refuses unknown encodings.
        self._runner = web.AppRunner(self.web_app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=5, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.webhook.host, self.settings.webhook.port,
                           reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        await self._start_admin_socket()
        every(self._scheduler, self.settings.daemon.reconcile_interval_seconds, self.reconcile_all, "reconcile")
        every(self._scheduler, self.settings.daemon.reconcile_interval_seconds, self.read_accounts, "metrics")
        schedule_risk_jobs(self._scheduler, self.risk_monitor, self.settings)
        self.chat.schedule(self._scheduler)  # the daily summary
        self._scheduler.start()
        interval = watchdog_interval()
        if interval:
            watchdog = Watchdog(self.notifier, interval, self.settings.daemon.watchdog_stall_seconds)
            self._watchdog_task = asyncio.create_task(self._pet(watchdog), name="watchdog")
        try:
            await self.read_accounts()
        except Exception:  # the gauges wait for the next periodic read; start-up goes on
            log.exception("first account read for /metrics failed")
        self.ready = True
        self.notifier.ready(f"listening on {self.settings.webhook.host}:{self.port}, "
                            f"{len(self.brokers)} accounts")
        self.events.publish(Event(kind="daemon", summary=f"traderd {traderd_version()} started"))
        log.info("traderd %s ready: webhook on %s:%s, accounts %s", traderd_version(),
                 self.settings.webhook.host, self.port, ", ".join(self.brokers))
        await self.chat.start()  # never raises: a chat outage must not keep the daemon down

    async def _pet(self, watchdog: Watchdog) -> None:
        """Beat only while the engine's workers make progress, so a stalled engine gets restarted."""
        async def beat_while_alive() -> None:
            while True:
                if self.engine.alive():
                    watchdog.beat()
                await asyncio.sleep(min(1.0, watchdog.interval / 4))

        await asyncio.gather(beat_while_alive(), watchdog.run())

    async def _connect(self, name: str, broker: Broker) -> None:
        try:
            await broker.connect()
        except BrokerError as exc:
            log.error("broker of account %s is unavailable: %s", name, exc.reason)
            self.events.publish(Event(kind="broker", account=name, summary=f"broker unavailable: {exc.reason}"))
            return
        if name not in self.connected and self.started_at and self.ready:
            self.events.publish(Event(kind="broker", account=name, summary="broker reconnected"))
        self.connected.add(name)

    async def reconcile_all(self) -> None:
        for name, broker in self.brokers.items():
            if name not in self.connected:
                await self._connect(name, broker)
                if name not in self.connected:
                    continue
            try:
                await self.reconciler.account(name, broker)
            except BrokerError as exc:
                log.warning("reconciliation of %s failed: %s", name, exc.reason)
            else:
                self.metrics.last_reconcile.labels(name).set(self.clock().timestamp())

    async def read_accounts(self) -> None:
        """Equity and day P&L for /metrics (broker calls, so periodic rather than at every scrape)."""
        for view in await self.reader.accounts():
            if view.state is not None and not view.stale:
                self.metrics.equity.labels(view.account).set(float(view.state.equity))
        for pnl in (await self.reader.pnl("today")).accounts:
            self.metrics.day_pnl.labels(pnl.account).set(float(pnl.net))

    async def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.ready = False
        self.notifier.stopping()
        await self.chat.stop()  # bounded by alerts.drain_seconds; undelivered alerts stay queued
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
        await self.engine.stop(self.settings.daemon.shutdown_grace_seconds)
        for name, broker in self.brokers.items():
            try:
                await broker.close()
            except BrokerError as exc:
                log.warning("closing broker of %s: %s", name, exc.reason)
        self.events.publish(Event(kind="daemon", summary="traderd stopped"))
        self.store.close()
        log.info("stopped cleanly")

    async def run_forever(self, on_ready: Callable[[Daemon], None] | None = None) -> None:
        """Start, wait for SIGTERM/SIGINT, then stop."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await self.start()
            if on_ready is not None:
                on_ready(self)
            await stop.wait()
        finally:
            await self.stop()
