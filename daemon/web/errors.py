"""The JSON error answer of every HTTP endpoint: `{"error": code, "detail": ...}` with a 4xx/5xx status."""

from __future__ import annotations

import json

from aiohttp import web


def error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


def http_error(kind: type[web.HTTPException], code: str, detail: str) -> web.HTTPException:
    """The same JSON error body, as an exception a helper deep in a handler can raise."""
    return kind(text=json.dumps({"error": code, "detail": detail}), content_type="application/json")
