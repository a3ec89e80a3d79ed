"""The local admin socket: the control API and the full webhook URL over a unix socket, for trusted local users only.

`traderd status | url | flatten | unlock` ask the running daemon here instead of needing its secrets. The
socket lives in the runtime directory (`$RUNTIME_DIRECTORY`, /run/traderd under the shipped unit) with mode
0600, or 0660 owned by `daemon.admin_group` when one is configured; on top of the file mode every request is
checked against the peer's credentials (SO_PEERCRED on Linux): root, the service's own user, and members of
the admin group are let in, anyone else gets 403. The socket is bound under a temporary name, restricted,
then renamed into place, so it is never reachable with looser permissions.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from daemon.web.errors import error

log = logging.getLogger("traderd.admin")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_PATH = 107  # sun_path holds 108 bytes including the terminating NUL


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer | None:
    """The connecting process's credentials, or None where the OS cannot tell (no SO_PEERCRED)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid=pid, uid=uid, gid=gid)


def group_id(name: str) -> int:
    """The gid of `name`; KeyError with a readable message when the group does not exist."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise KeyError(f"daemon.admin_group {name!r} is not a group on this system") from None


class AdminAccess:
    """Who may use the socket: root, the service's own user, and the admin group's members."""

    def __init__(self, admin_gid: int | None, service_uid: int | None = None) -> None:
        self.admin_gid = admin_gid
        self.service_uid = os.getuid() if service_uid is None else service_uid

    def allows(self, peer: Peer) -> bool:
        if peer.uid in (0, self.service_uid):
            return True
        if self.admin_gid is None:
            return False
        if peer.gid == self.admin_gid:
            return True
        try:
            return pwd.getpwuid(peer.uid).pw_name in grp.getgrgid(self.admin_gid).gr_mem
        except KeyError:
            return False


def access_middleware(access: AdminAccess) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        peer = peer_of(sock) if sock is not None else None
        if peer is not None and not access.allows(peer):
            log.warning("admin socket: refused uid %s (pid %s)", peer.uid, peer.pid)
            return error(403, "forbidden", "only root, the service user and daemon.admin_group may use this socket")
        return await handler(request)

    return check


def bind_admin_socket(path: Path, admin_gid: int | None) -> socket.socket:
    """A listening unix socket at `path`: 0600, or 0660 with group `admin_gid`. Replaces a stale one."""
    if len(os.fsencode(path)) > MAX_PATH:
        raise OSError(f"admin socket path {path} is longer than {MAX_PATH} bytes; set daemon.runtime_dir")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755 if admin_gid is not None else 0o700)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(str(staging))
        finally:
            os.umask(old)
        if admin_gid is not None:
            os.chown(staging, -1, admin_gid)
            os.chmod(staging, 0o660)
        os.replace(staging, path)
        sock.listen(16)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        raise
    return sock


class AdminSocket:
    """The admin app on its unix socket; `start()` binds, `stop()` closes and removes the socket file."""

    def __init__(self, path: Path, routes: list[web.RouteDef], admin_group: str | None) -> None:
        self.path = path
        self.routes = routes
        self.admin_gid = group_id(admin_group) if admin_group else None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(middlewares=[access_middleware(AdminAccess(self.admin_gid))])
        app.add_routes(self.routes)
        sock = bind_admin_socket(self.path, self.admin_gid)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        log.info("admin socket listening on %s", self.path)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def url_route(full_url: Callable[[], str]) -> web.RouteDef:
    """GET /admin/url: the webhook URL with its token (only ever served on the admin socket)."""

    async def url(request: web.Request) -> web.Response:
        return web.json_response({"url": full_url()})

    return web.get("/admin/url", url)
