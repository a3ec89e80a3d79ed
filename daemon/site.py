"""The one aiohttp application the daemon serves: webhook, health, control API and status page, behind the
bearer token and the redaction of every answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from config.settings import Settings
from daemon.domain import StrategyControls
from daemon.events import EventBus
from daemon.queries import Reader
from daemon.risk.engine import RiskEngine
from daemon.risk.monitor import RiskMonitor
from daemon.store.repository import Store
from daemon.web.api import bearer_middleware, redacting_middleware
from daemon.web.page import StatusPage
from daemon.web.page_view import Link, PageView


def api_token(settings: Settings) -> str | None:
    token = settings.api.token
    return token.get_secret_value() if token else None


def status_page(*, reader: Reader, store: Store, risk: RiskEngine, monitor: RiskMonitor, strategies: StrategyControls,
                events: EventBus, links: Callable[[], list[Link]], status: Callable[[], dict[str, Any]],
                flatten: Callable[[web.Request], Awaitable[web.StreamResponse]], settings: Settings,
                clock: Callable[[], datetime]) -> StatusPage:
    """The status page, fed live by the event bus."""
    view = PageView(reader=reader, store=store, risk=risk, monitor=monitor, strategies=strategies.status,
                    recent_events=lambda: events.recent, links=links, status=status,
                    timezone=settings.daemon.timezone, clock=clock)
    page = StatusPage(view=view, flatten=flatten, token=api_token(settings), host=settings.webhook.host,
                      timezone=settings.daemon.timezone)
    events.subscribe(page.streams.notify)
    return page


def site(settings: Settings, routes: Sequence[web.RouteDef], page: StatusPage,
         redact: Callable[[Any], Any]) -> web.Application:
    app = web.Application(middlewares=[bearer_middleware(api_token(settings)), redacting_middleware(redact)],
                          client_max_size=settings.webhook.max_body_bytes * 4)
    app.add_routes(list(routes))
    page.install(app)
    return app
