"""How the CLI reaches the running daemon: its admin socket first, then the HTTP API with a token it can read.

No command ever makes a secret up. `traderd status | url | flatten | unlock` first ask the daemon over its
admin socket (`daemon.runtime_dir`/admin.sock, /run/traderd under the shipped unit), which checks who is
asking instead of wanting a token. Without the socket they use the control API over HTTP with the token the
configuration, `$CREDENTIALS_DIRECTORY` or the unit's credential file (/etc/traderd/credentials/api.token)
gives them, when this user may read it. When neither works, the error says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from config.service import SERVICE_CREDENTIALS_DIR
from config.settings import Settings, read_secret_file

TIMEOUT = 20.0


class ServiceError(Exception):
    """The daemon could not be asked, or refused; the message says why and what to do."""


class ServiceUnreachable(ServiceError):
    """Nothing answers. `maybe_running` when a socket exists that this user may not use."""

    def __init__(self, message: str, maybe_running: bool) -> None:
        super().__init__(message)
        self.maybe_running = maybe_running


def credential(settings_value: str | None, name: str, directory: Path = SERVICE_CREDENTIALS_DIR) -> str | None:
    """A secret from the configuration, else from the unit's credential file `name`, if readable."""
    return settings_value or read_secret_file(directory / name)


def api_token(settings: Settings) -> str | None:
    token = settings.api.token
    return credential(token.get_secret_value() if token else None, "api.token")


def what_to_do(socket_path: Path) -> str:
    return (f"run it as root (`sudo traderd ...`), as the service user, or as a member of daemon.admin_group, so "
            f"it can use the admin socket {socket_path}; or give it the API token "
            f"(TRADERD_API__TOKEN, or a readable {SERVICE_CREDENTIALS_DIR / 'api.token'})")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("detail", response.text)) if isinstance(body, dict) else response.text


class ServiceClient:
    """One request at a time to the daemon, over the admin socket when it can be used, else over HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.socket_path = settings.daemon.admin_socket
        self.notes: list[str] = []  # why the admin socket was not used

    def _socket_usable(self) -> bool:
        path = self.socket_path
        if not path.exists():
            self.notes.append(f"no admin socket at {path}")
            return False
        if not os.access(path, os.R_OK | os.W_OK):
            self.notes.append(f"no permission to use the admin socket {path}")
            return False
        return True

    def _via_socket(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response | None:
        if not self._socket_usable():
            return None
        transport = httpx.HTTPTransport(uds=str(self.socket_path))
        try:
            with httpx.Client(transport=transport, base_url="http://traderd", timeout=TIMEOUT) as client:
                response = client.request(method, path, json=body)
        except httpx.TransportError:
            self.notes.append(f"nothing listens on the admin socket {self.socket_path} (left by a stopped daemon?)")
            return None
        if response.status_code == 403:
            self.notes.append(f"the admin socket {self.socket_path} refused this user")
            return None
        return response

    def _via_http(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        host = self.settings.webhook.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        token = api_token(self.settings)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        base = f"http://{host}:{self.settings.webhook.port}"
        try:
            with httpx.Client(base_url=base, timeout=TIMEOUT, headers=headers) as client:
                response = client.request(method, path, json=body)
        except httpx.TransportError as exc:
            denied = any("permission" in note or "refused" in note for note in self.notes)
            where = f"{host}:{self.settings.webhook.port}"
            if denied:
                raise ServiceUnreachable(f"cannot reach traderd: {'; '.join(self.notes)}, and nothing answers on "
                                         f"{where}; {what_to_do(self.socket_path)}", maybe_running=True) from exc
            raise ServiceUnreachable(f"traderd is not running (nothing answers on {where} or on the admin "
                                     f"socket {self.socket_path})", maybe_running=False) from exc
        if response.status_code == 401:
            why = "no API token found" if token is None else "the API token this command found is not the daemon's"
            raise ServiceError(f"the daemon answered 401: {_detail(response)} ({why}; "
                               f"{'; '.join(self.notes)}). To fix: {what_to_do(self.socket_path)}")
        return response

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer; ServiceUnreachable when nothing answers, ServiceError for a refusal."""
        response = self._via_socket(method, path, body) or self._via_http(method, path, body)
        if response.status_code >= 400:
            raise ServiceError(f"the daemon answered {response.status_code}: {_detail(response)}")
        return response.json()

    def webhook_url(self) -> str | None:
        """The full webhook URL from the daemon's admin socket, or None when the socket cannot be used."""
        response = self._via_socket("GET", "/admin/url", None)
        if response is None or response.status_code != 200:
            return None
        return str(response.json()["url"])
