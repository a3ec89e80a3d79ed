"""Builds the ccxt async exchange object for an account's settings: keys, sandbox, URL overrides, spot-only options.

`sandbox = true` switches ccxt to the exchange's testnet (`set_sandbox_mode`; Binance: testnet.binance.vision,
which has no `/sapi`), then `api_urls` overrides single `urls['api']` entries (a private gateway, or the
test stand-in). The options keep ccxt on spot: Binance's `load_markets` would otherwise also read the
futures exchangeInfo (fapi, dapi) and, with keys, margin pairs and `/sapi/v1/capital/config/getall`.
With `stream` on, an exchange in `STREAMED` is built from ccxt.pro (the same REST methods, plus
`watch_orders` / `watch_my_trades`), and `stream_url` replaces its WebSocket API URL.
"""

from __future__ import annotations

from typing import Any

import ccxt.async_support as ccxt
import ccxt.pro as ccxtpro

from config.brokers import CcxtSettings

STREAMED = frozenset({"binance"})  # exchanges whose account stream this adapter uses (tested against Binance's)
SPOT_OPTIONS: dict[str, Any] = {"defaultType": "spot", "warnOnFetchOpenOrdersWithoutSymbol": False}
EXCHANGE_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "fetchMarkets": {"types": ["spot"]},  # exchangeInfo of /api only (not fapi/dapi)
        "fetchMargins": False,  # no /sapi margin pairs
        "fetchCurrencies": False,  # no /sapi capital/config/getall; currencies come from the markets
        "newOrderRespType": {"market": "FULL", "limit": "FULL"},
    },
}


def make_exchange(settings: CcxtSettings, session: Any = None) -> Any:
    """The ccxt exchange for `settings`; `ValueError` naming the problem for an unknown id or a missing
    sandbox. `session` (an aiohttp ClientSession) is for tests that watch where ccxt connects."""
    if settings.exchange not in ccxt.exchanges:
        raise ValueError(f"ccxt has no exchange {settings.exchange!r} (see ccxt.exchanges)")
    options = {**SPOT_OPTIONS, **EXCHANGE_OPTIONS.get(settings.exchange, {}), **settings.options}
    if settings.exchange == "binance":
        options.setdefault("recvWindow", settings.recv_window_ms)
    config: dict[str, Any] = {
        "apiKey": settings.api_key.get_secret_value(),
        "secret": settings.secret.get_secret_value(),
        "enableRateLimit": settings.weight_throttle,
        "timeout": int(settings.timeout_seconds * 1000),
        "options": options,
    }
    if settings.password is not None:
        config["password"] = settings.password.get_secret_value()
    if session is not None:
        config["session"] = session
    streamed = settings.stream and settings.exchange in STREAMED
    exchange = getattr(ccxtpro if streamed else ccxt, settings.exchange)(config)
    if settings.sandbox:
        try:
            exchange.set_sandbox_mode(True)
        except ccxt.NotSupported:
            raise ValueError(f"{settings.exchange} has no sandbox in ccxt; set sandbox = false to trade live") from None
    if settings.api_urls:
        if isinstance(exchange.urls.get("api"), dict):
            exchange.urls["api"] = {**exchange.urls["api"], **settings.api_urls}
        else:
            exchange.urls["api"] = settings.api_urls.get("api", exchange.urls.get("api"))
    if streamed and settings.stream_url:
        exchange.urls["api"]["ws"] = {**exchange.urls["api"]["ws"],
                                      "ws-api": {**exchange.urls["api"]["ws"]["ws-api"], "spot": settings.stream_url}}
    return exchange
