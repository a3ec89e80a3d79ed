"""The shared broker HTTP layer (retries, Retry-After, rate limit, error mapping) and symbol normalisation."""

from __future__ import annotations

import logging
from datetime import date

import httpx
import pytest

from brokers.base import AuthenticationFailed, BrokerUnavailable, OrderNotFound, OrderRejected, UnknownSymbol
from brokers.http import HttpBroker, RateLimiter, RetryPolicy, Throttled, map_http_error, parse_retry_after
from brokers.symbols import RollRule, continuous_contract, normalize, third_friday

SECRET = "super-secret-key"


class Script:
    """A scripted HTTP peer (httpx transport): answers in order, records what it saw."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(script: Script, **kw: object) -> tuple[HttpBroker, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    client = httpx.AsyncClient(transport=httpx.MockTransport(script))
    broker = HttpBroker(
        "test",
        "http://broker.invalid",
        auth_headers=lambda: {"X-Key": SECRET},
        retry=RetryPolicy(retries=3, initial=0.1, maximum=1.0, jitter=0.0, max_retry_after=5.0),
        client=client,
        sleep=sleep,
        **kw,  # type: ignore[arg-type]
    )
    return broker, slept


def ok(body: object = None) -> httpx.Response:
    return httpx.Response(200, json=body if body is not None else {"ok": True})


async def test_get_retries_5xx_with_exponential_backoff() -> None:
    script = Script(httpx.Response(503), httpx.Response(502), ok())
    broker, slept = make(script)
    assert (await broker.json("GET", "/x")) == {"ok": True}
    assert len(script.seen) == 3 and slept == [0.1, 0.2]
    assert script.seen[0].headers["X-Key"] == SECRET and broker.healthy()


async def test_retry_after_is_honoured_and_capped() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "2"}), ok())
    broker, slept = make(script)
    await broker.request("GET", "/x")
    assert slept == [2.0]
    too_long = Script(httpx.Response(429, headers={"Retry-After": "120"}, json={"message": "slow down"}))
    broker, slept = make(too_long)
    with pytest.raises(Throttled, match="slow down") as err:
        await broker.request("GET", "/x")
    assert err.value.retry_after == 120 and slept == [] and len(too_long.seen) == 1


async def test_unsafe_post_is_never_retried_but_marked_safe_post_is() -> None:
    script = Script(httpx.ConnectError("refused"), ok())
    broker, _ = make(script)
    with pytest.raises(BrokerUnavailable, match="cannot reach test"):
        await broker.request("POST", "/orders", json={"a": 1})
    assert len(script.seen) == 1 and not broker.healthy()
    script = Script(httpx.ReadTimeout("slow"), ok())
    broker, _ = make(script)
    await broker.request("POST", "/search", json={}, safe=True)
    assert len(script.seen) == 2


async def test_retries_are_bounded() -> None:
    script = Script(httpx.Response(500))
    broker, slept = make(script)
    with pytest.raises(BrokerUnavailable, match="HTTP 500"):
        await broker.request("GET", "/x")
    assert len(script.seen) == 4 and len(slept) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, OrderRejected), (422, OrderRejected), (401, AuthenticationFailed), (403, AuthenticationFailed),
     (404, OrderNotFound)],
)  # fmt: skip
async def test_errors_map_to_broker_errors_with_the_broker_message(status: int, error: type) -> None:
    broker, _ = make(Script(httpx.Response(status, json={"message": "the broker says no"})))
    with pytest.raises(error, match="the broker says no") as err:
        await broker.request("GET", "/x", what="test thing")
    assert err.value.reason.startswith("test thing") and SECRET not in err.value.reason


def test_mapping_overrides_and_retry_after_dates() -> None:
    response = httpx.Response(403, json={"message": "insufficient buying power"})
    assert isinstance(map_http_error(response, "place", forbidden=OrderRejected), OrderRejected)
    assert parse_retry_after("3.5") == 3.5 and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a past date: no wait
    assert parse_retry_after("soon") is None


async def test_unauthorized_renews_token_once() -> None:
    renewals: list[int] = []

    async def renew() -> bool:
        renewals.append(1)
        return True

    script = Script(httpx.Response(401), ok())
    broker, _ = make(script, on_unauthorized=renew)
    await broker.request("POST", "/orders", json={})
    assert len(renewals) == 1 and len(script.seen) == 2
    script = Script(httpx.Response(401))
    broker, _ = make(script, on_unauthorized=renew)
    with pytest.raises(AuthenticationFailed):
        await broker.request("GET", "/x")
    assert len(script.seen) == 2  # renewed once, then gave up


async def test_secrets_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker, _ = make(Script(httpx.Response(500), ok()))
    await broker.request("GET", "/x")
    assert caplog.records and SECRET not in caplog.text


async def test_rate_limiter_is_a_token_bucket() -> None:
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    bucket = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        await bucket.acquire()
    assert waits == []  # the burst is free
    await bucket.acquire()
    await bucket.acquire()
    assert waits == [0.5, 0.5] and now[0] == 1.0
    now[0] += 10  # idle refills only up to the burst
    for _ in range(3):
        await bucket.acquire()
    assert len(waits) == 2


def test_tradingview_tickers() -> None:
    assert normalize("NASDAQ:AAPL") == "AAPL"
    assert normalize(" nyse:brk.b ") == "BRK.B"
    for bad in ("", "NASDAQ:", "FOO!", "AB CD"):
        with pytest.raises(UnknownSymbol):
            normalize(bad)
    with pytest.raises(UnknownSymbol, match="no contract calendar"):
        normalize("CL1!", date(2026, 1, 5))


def test_continuous_futures_roll_before_expiry() -> None:
    assert third_friday(2026, 12) == date(2026, 12, 18)
    assert normalize("CME_MINI:ES1!", date(2026, 12, 7)) == "ESZ6"
    assert normalize("CME_MINI:ES1!", date(2026, 12, 8)) == "ESH7"  # 8 business days before the 18th
    assert normalize("NQ1!", date(2026, 1, 15)) == "NQH6"
    assert normalize("MES1!", date(2026, 3, 12)) == "MESM6"
    assert normalize("MNQ2!", date(2026, 2, 1)) == "MNQM6"
    late = RollRule(business_days_before_expiry=1, year_digits=2)
    assert continuous_contract("ES", 1, date(2026, 12, 16), late) == "ESZ26"
    assert continuous_contract("ES", 1, date(2026, 12, 17), late) == "ESH27"
