"""The read-only status page at `/`: login, the server-rendered page, its live stream and its one control.

Access follows the control API: with `api.token` set, a request needs `Authorization: Bearer <token>` or the
login cookie (`/page/login` sets it: an HMAC of the token, HttpOnly, SameSite=Strict, so changing the token
signs everyone out); without a token the page is open on a loopback listener and off (404) on any other.
The only control is flatten (one account or all), posted by the page's confirmation dialog to
`/page/flatten`, which hands the request to the same handler as `POST /api/flatten` (same request id, same
idempotent path); a custom header that a cross-site form cannot send guards it against forged posts.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from daemon.money import money
from daemon.web.errors import error
from daemon.web.page_view import PageView
from daemon.web.sse import EventStreams

COOKIE = "traderd_page"
CSRF_HEADER = "X-Traderd-Page"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"traderd status page session", hashlib.sha256).hexdigest()


def dollars(value: Decimal | None, signed: bool = False) -> str:
    return money(value, signed=signed, symbol="$")


def templates(timezone: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("daemon.web", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    tz = ZoneInfo(timezone)
    env.filters["money"] = dollars
    env.filters["qty"] = lambda v: f"{v.normalize():f}" if isinstance(v, Decimal) else str(v)
    env.filters["price"] = lambda v: "-" if v is None else f"{v:,.2f}" if v >= 1 else f"{v.normalize():f}"
    env.filters["tone"] = lambda v: "" if v is None or v == 0 else ("up" if v > 0 else "down")
    env.filters["localtime"] = lambda at, fmt="%H:%M": at.astimezone(tz).strftime(fmt) \
        if isinstance(at, datetime) else "-"
    return env


class StatusPage:
    def __init__(self, *, view: PageView, flatten: Handler, token: str | None, host: str, timezone: str) -> None:
        self.view = view
        self.flatten_handler = flatten
        self.token = token
        self.enabled = token is not None or is_loopback(host)
        self.env = templates(timezone)
        self.streams = EventStreams(self.render_body)

    def install(self, app: web.Application) -> None:
        """Add the page's routes and end its live streams at shutdown (so stopping never waits on a viewer)."""
        static = jinja2.PackageLoader("daemon.web", "static")
        self._static = {name: static.get_source(self.env, name)[0] for name in ("page.css", "page.js")}
        app.add_routes([
            web.get("/", self.page), web.post("/page/login", self.login), web.post("/page/logout", self.logout),
            web.get("/page/events", self.events), web.post("/page/flatten", self.flatten),
            web.get("/page/static/{name}", self.static),
        ])
        app.on_shutdown.append(self.streams.close)

    # ---- access ----------------------------------------------------------------------------------

    def allowed(self, request: web.Request) -> bool:
        if self.token is None:
            return self.enabled
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), self.token.encode()):
            return True
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), session_value(self.token).encode())

    def _off(self) -> web.Response:
        return web.Response(status=404, text="The status page is off: set api.token to serve it beyond localhost.")

    # ---- handlers --------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        if not self.enabled:
            return self._off()
        if not self.allowed(request):
            return self._html(self.env.get_template("login.html").render(error=None), 401)
        data = await self.view.gather()
        return self._html(self.env.get_template("page.html").render(data=data, can_flatten=True))

    async def render_body(self) -> str:
        data = await self.view.gather()
        return self.env.get_template("body.html").render(data=data, can_flatten=True)

    async def login(self, request: web.Request) -> web.Response:
        if not self.enabled:
            return self._off()
        if self.token is None:
            raise web.HTTPSeeOther("/")
        form = await request.post()
        presented = str(form.get("token", ""))
        if not hmac.compare_digest(presented.encode(), self.token.encode()):
            return self._html(self.env.get_template("login.html").render(error="Wrong token."), 401)
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, session_value(self.token), httponly=True, samesite="Strict", path="/",
                            secure=request.secure, max_age=30 * 86400)
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def events(self, request: web.Request) -> web.StreamResponse:
        if not self.enabled:
            return self._off()
        if not self.allowed(request):
            return error(401, "unauthorized", "sign in at / or send the bearer token")
        if request.method == "HEAD":
            return web.Response(status=204)
        return await self.streams.handle(request)

    async def flatten(self, request: web.Request) -> web.StreamResponse:
        if not self.enabled:
            return self._off()
        if not self.allowed(request):
            return error(401, "unauthorized", "sign in at / or send the bearer token")
        if request.headers.get(CSRF_HEADER) != "flatten":
            return error(403, "forbidden", f"the {CSRF_HEADER} header is required")
        return await self.flatten_handler(request)

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._static:
            raise web.HTTPNotFound()
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return web.Response(text=self._static[name], content_type=kind, headers={"Cache-Control": "max-age=300"})

    @staticmethod
    def _html(text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="text/html",
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                     "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'"})

