"""Every daemon answer the tests receive is checked against the daemon's OpenAPI description (openapi-core).

`validating_hook()` is an httpx response hook: `client_for` installs it, so every API test validates each
response it sees (status code documented, body matching the schema). Paths under /api/, /healthz and
/webhook/ must be described; other paths (pages, /metrics) are not API answers and pass through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from urllib.parse import parse_qs

import httpx
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from daemon.web.openapi import document

CHECKED = ("/api/", "/healthz", "/webhook/")


@cache
def spec() -> OpenAPI:
    # CSV answers are text: checked as a string (openapi-core passes unknown media types on as bytes).
    text = {"text/csv": lambda data: data.decode() if isinstance(data, bytes) else data}
    return OpenAPI.from_dict(document("test"), config=Config(extra_media_type_deserializers=text))


class _Request:
    def __init__(self, request: httpx.Request) -> None:
        self.method = request.method.lower()
        self.host_url = f"{request.url.scheme}://{request.url.netloc.decode()}"
        self.path = request.url.path
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "application/json").split(";")[0]
        query = parse_qs(request.url.query.decode(), keep_blank_values=True)
        self.parameters = RequestParameters(query=ImmutableMultiDict(query), header=Headers(dict(request.headers)),
                                            cookie=ImmutableMultiDict({}))


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "").split(";")[0]
        self.headers = Headers(dict(response.headers))
        self.data = response.content


def check(response: httpx.Response) -> None:
    """Raise (openapi-core's error, with the path) if `response` does not match the description."""
    if not response.request.url.path.startswith(CHECKED):
        return
    try:
        spec().validate_response(_Request(response.request), _Response(response))
    except Exception as exc:
        raise AssertionError(f"{response.request.method} {response.request.url} answered {response.status_code} "
                             f"outside the OpenAPI description: {exc!r} {getattr(exc, '__cause__', '')!r}"
                             ) from exc


def validating_hook() -> Callable[[httpx.Response], Awaitable[None]]:
    async def hook(response: httpx.Response) -> None:
        await response.aread()
        check(response)

    return hook
