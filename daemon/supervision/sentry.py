"""Sentry error reporting, on only when a DSN is configured, with every event scrubbed of secrets first.

Call `init_sentry` inside the running event loop: its asyncio integration wraps the loop's task factory, so
an exception that ends a background task (a worker, a dispatcher, a stream) is reported too, not only the
errors that are logged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from daemon.supervision.redaction import Redactor


# --------------------------------------------------------------------------------------------- Sentry
def make_before_send(secrets: Iterable[str]) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    """A Sentry `before_send` that scrubs secrets from the whole event.

    Messages, log entries, exception values, breadcrumbs, request data (URL, query, headers, body), extra
    and frame variables: every string is redacted, and values under credential-like keys are replaced.
    """
    redactor = Redactor(secrets)

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        scrubbed: dict[str, Any] = redactor.scrub(event)
        entry, original = scrubbed.get("logentry"), event.get("logentry")
        if isinstance(entry, dict) and isinstance(original, dict) and isinstance(entry.get("formatted"), str):
            if entry["formatted"] != original.get("formatted"):
                # "token=%s" + ["abc"]: only the formatted text shows the secret, so the template and
                # its parameters cannot be sent apart; send the redacted text alone.
                entry.update(message=entry["formatted"], params=[])
        return scrubbed

    return before_send


def init_sentry(dsn: str | None, environment: str, release: str, secrets: Iterable[str]) -> bool:
    """Start Sentry error reporting if a DSN is configured. Returns whether it was initialised."""
    if not dsn:
        return False
    import sentry_sdk  # imported lazily: most installs never configure it
    from sentry_sdk.integrations.asyncio import AsyncioIntegration

    secrets = list(secrets)
    before_send = make_before_send([*secrets, dsn])
    redactor = Redactor(secrets)

    def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        cleaned: dict[str, Any] = redactor.scrub(crumb)
        return cleaned

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        # send_default_pii is left at its default, False (user IPs, cookies, headers, bodies are not sent):
        # passing it explicitly is deprecated from sentry-sdk 2.75 on, in favour of `data_collection`,
        # which older 2.x releases reject.
        include_local_variables=False,  # frame locals hold order and account data; keep them on the box
        before_send=before_send,  # type: ignore[arg-type]
        before_breadcrumb=before_breadcrumb,
        max_breadcrumbs=50,
        integrations=[AsyncioIntegration()],  # patches the running loop's task factory
    )
    return True
