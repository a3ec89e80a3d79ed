"""Bad input and unlucky networks at the webhook: bodies split across TCP segments, trickled, compressed,
malformed or absurd. Each is a 2xx for a valid alert or a documented 4xx, never a 5xx, never a traceback."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib
from decimal import Decimal
from typing import Any

import pytest

from daemon.domain import SignalStatus
from tests.conftest import SECRET, alert, settled

PATH = f"/webhook/tradingview/{SECRET}"
# A real alert as TradingView sends it (the README's indicator alert, placeholders filled).
REAL = {"ticker": "NASDAQ:AAPL", "action": "buy", "quantity": "10", "price": "100", "id": "split-000"}


def request_head(length: int | None, headers: dict[str, str] | None = None, path: str = PATH) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    fields = {"Content-Type": "application/json", **(headers or {})}
    if length is not None:
        fields["Content-Length"] = str(length)
    lines += [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def raw_post(port: int, parts: list[bytes], pause: float = 0.02) -> tuple[int, dict[str, Any]]:
    """Send `parts` as separate TCP segments, `pause` apart; the status and JSON answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        return await asyncio.wait_for(read_answer(reader), 10)
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    """One HTTP response by its Content-Length (the server may keep the socket open to drain our body)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    while head.split()[1].startswith("1"):  # 100 Continue: the answer follows
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n")
                  if line.lower().startswith("content-length:"))
    return int(head.split()[1]), json.loads(await reader.readexactly(length))


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]


async def test_an_alert_split_at_every_byte_position_is_accepted(start_daemon, caplog) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    body = json.dumps(REAL).encode()
    head = request_head(len(body))

    async def split_at(cut: int) -> tuple[int, dict[str, Any]]:
        data = body.replace(b"split-000", f"split-{cut:03d}".encode())
        return await raw_post(daemon.port, [head + data[:cut], data[cut:]])

    answers = await asyncio.gather(*(split_at(cut) for cut in range(len(body) + 1)))
    assert [status for status, _ in answers] == [202] * (len(body) + 1), answers
    records = [await settled(daemon, answer["signal_id"]) for _, answer in answers]
    assert {r.status for r in records} == {SignalStatus.EXECUTED}
    position = {p.symbol: p.quantity for p in await daemon.brokers["paper"].positions()}
    assert position == {"AAPL": Decimal(10) * (len(body) + 1)}
    # Headers split mid-way too: the parser waits for the rest.
    status, _ = await raw_post(daemon.port, [head[:20], head[20:] + body.replace(b"split-000", b"split-hdr")])
    assert status == 202
    no_tracebacks(caplog)


async def test_a_slow_trickle_within_the_timeout_is_accepted(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    body = json.dumps(REAL | {"id": "trickle"}).encode()
    parts = [request_head(len(body))] + [body[i:i + 1] for i in range(len(body))]
    status, answer = await raw_post(daemon.port, parts, pause=0.01)  # ~0.7 s for the body
    assert (status, answer["status"]) == (202, "accepted")


async def test_chunked_body_in_pieces_is_accepted(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    body = json.dumps(REAL | {"id": "chunked"}).encode()
    chunks = [f"{len(body[i:i + 7]):x}\r\n".encode() + body[i:i + 7] + b"\r\n" for i in range(0, len(body), 7)]
    parts = [request_head(None, {"Transfer-Encoding": "chunked"}), *chunks, b"0\r\n\r\n"]
    status, answer = await raw_post(daemon.port, parts)
    assert (status, answer["status"]) == (202, "accepted")


async def test_a_body_that_stops_arriving_gets_408_in_time(start_daemon, caplog) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(webhook={"body_timeout_seconds": 0.5})
    body = json.dumps(REAL | {"id": "stalled"}).encode()
    started = asyncio.get_running_loop().time()
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(request_head(len(body)) + body[:20])
    await writer.drain()
    status, answer = await asyncio.wait_for(read_answer(reader), 5)
    writer.close()
    elapsed = asyncio.get_running_loop().time() - started
    assert (status, answer["error"]) == (408, "body_timeout")
    assert 0.4 < elapsed < 3.0  # well before a client would give up: TradingView waits 3 s
    assert daemon.store.unfinished_signals() == [] and daemon.store.orders() == []
    no_tracebacks(caplog)


async def test_gzip_and_deflate_bodies_are_read_decoded(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    results = []
    for name, encoded in [("gzip", gzip.compress), ("deflate", zlib.compress),
                          ("deflate", lambda b: zlib.compress(b)[2:-4])]:  # raw deflate, as some clients send
        body = encoded(json.dumps(alert(id=f"enc-{len(results)}")).encode())
        results.append(await raw_post(daemon.port, [request_head(len(body), {"Content-Encoding": name}) + body]))
    assert [(status, answer["status"]) for status, answer in results] == [(202, "accepted")] * 3


BIG = "1" * 5000


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "names"),
    [
        # Beyond Python's int conversion limit, too deep, too wide.
        (b'{"ticker": "AAPL", "action": "buy", "quantity": ' + BIG.encode() + b"}", {}, 400, "bad_json", ""),
        (b'{"a":' * 8000 + b"1" + b"}" * 8000, {}, 400, "bad_json", ""),
        (b"[" * 8000 + b"]" * 8000, {}, 400, "bad_json", ""),
        (json.dumps(alert(**{f"f{i}": i for i in range(3000)})).encode(), {}, 422, "invalid_field", "f0"),
        (json.dumps(alert(comment=[[[["deep"]]]])).encode(), {}, 422, "invalid_field", "comment"),
        # Times out of any range, or not a time at all.
        (json.dumps(alert(time=1e20)).encode(), {}, 422, "bad_time", "time"),
        (b'{"ticker": "AAPL", "action": "buy", "quantity": "1", "time": Infinity}', {}, 422, "bad_time", "time"),
        (b'{"ticker": "AAPL", "action": "buy", "quantity": "1", "time": NaN}', {}, 422, "bad_time", "time"),
        (json.dumps(alert(time=True)).encode(), {}, 422, "bad_time", "time"),
        (json.dumps(alert(time=BIG[:400])).encode(), {}, 422, "bad_time", "time"),
        (json.dumps(alert(time="9999-12-31T23:59:59+00:00")).encode(), {}, 422, "bad_time", "time"),
        (json.dumps(alert(time="0001-01-01T00:00:00")).encode(), {}, 422, "bad_time", "time"),
        # Numbers that are not numbers, or absurd ones.
        (json.dumps(alert(max_lag=True)).encode(), {}, 422, "invalid_field", "max_lag"),
        (json.dumps(alert(quantity=True)).encode(), {}, 422, "invalid_field", "quantity"),
        (json.dumps(alert(price="")).encode(), {}, 422, "invalid_field", "price"),
        (json.dumps(alert(stop_loss="")).encode(), {}, 422, "invalid_field", "stop_loss"),
        (json.dumps(alert(quantity="")).encode(), {}, 422, "invalid_field", "quantity"),
        (json.dumps(alert(quantity=None, target_position="")).encode(), {}, 422, "invalid_field", "target_position"),
        (json.dumps(alert(quantity="1.00000000000000000000000000001")).encode(), {}, 422, "invalid_field",
         "quantity"),
        (json.dumps(alert(price="123456789.123456789123456789123")).encode(), {}, 422, "invalid_field", "price"),
        (json.dumps(alert(quantity="1e15")).encode(), {}, 422, "invalid_field", "max_quantity"),
        (json.dumps(alert(quantity=None, target_position="-2000000")).encode(), {}, 422, "invalid_field",
         "max_quantity"),
        (json.dumps(alert(price="1e12")).encode(), {}, 422, "invalid_field", "max_price"),
        (json.dumps(alert(quantity="1e999999")).encode(), {}, 422, "invalid_field", "quantity"),
        (json.dumps(alert(quantity="1,5")).encode(), {}, 422, "invalid_field", "quantity"),
        (json.dumps(alert(price="1_000")).encode(), {}, 422, "invalid_field", "price"),
        (json.dumps(alert(quantity="0x10")).encode(), {}, 422, "invalid_field", "quantity"),
        (json.dumps(alert(quantity=BIG[:100])).encode(), {}, 422, "invalid_field", "quantity"),
        # Tickers that are no symbol.
        (json.dumps(alert(ticker="../x")).encode(), {}, 422, "invalid_field", "ticker"),
        (json.dumps(alert(ticker="AA PL")).encode(), {}, 422, "invalid_field", "ticker"),
        (json.dumps(alert(ticker="NASDAQ: AAPL")).encode(), {}, 422, "invalid_field", "ticker"),
        (json.dumps(alert(ticker="A/B/C")).encode(), {}, 422, "invalid_field", "ticker"),
        (json.dumps(alert(ticker="/etc/passwd")).encode(), {}, 422, "invalid_field", "ticker"),
        (json.dumps(alert(ticker="AAPL\n")).encode().replace(b"\\n", b"\\n\\u0000"), {}, 422, "invalid_field",
         "ticker"),
        # Text that is no text, encodings we cannot read.
        (b'{"ticker": "AAPL", "action": "buy", "quantity": "1", "comment": "\\ud800"}', {}, 400, "bad_json", ""),
        (b'{"ticker": "AAPL", "action": "buy", "quantity": "1", "secret": "\\udfff"}', {}, 400, "bad_json", ""),
        (b"\xff\xfe{}", {}, 400, "bad_json", ""),
        (b"not gzip", {"Content-Encoding": "gzip"}, 400, "bad_encoding", ""),
        (json.dumps(alert()).encode(), {"Content-Encoding": "br"}, 415, "unsupported_encoding", "br"),
        (json.dumps(alert()).encode(), {"Content-Encoding": "zstd"}, 415, "unsupported_encoding", "zstd"),
        (gzip.compress(b" " * 1_000_000), {"Content-Encoding": "gzip"}, 413, "body_too_large", ""),
    ],
)
async def test_bad_input_is_a_documented_4xx(start_daemon, caplog, body, headers, status, code, names) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(webhook={"max_body_bytes": 65_536})
    got, answer = await raw_post(daemon.port, [request_head(len(body), headers) + body])
    assert (got, answer["error"]) == (status, code), answer
    assert names in answer["detail"] and len(answer["detail"]) < 1000
    assert daemon.store.unfinished_signals() == [] and daemon.store.orders() == []
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": 'application/json; charset="utf-8"; boundary=x'},
        {"Content-Type": "text/plain; charset=latin-1"},
        {"Content-Type": "application/json", "X-Forwarded-For": "not-an-ip, ::1, 300.1.1.1"},
        {"Content-Type": "application/json", "Accept-Encoding": "x" * 4000},
        {"Content-Type": "application/json", "Content-Encoding": "identity"},
        {"Content-Type": "application/json", "Content-Encoding": "gzip, identity"},
        {"Content-Type": "application/json", "Expect": "100-continue"},
        {"Content-Type": "application/json", "User-Agent": "\u00e9\u00e8".encode().decode("latin-1")},
        {"Content-Type": "application/json", "X-Custom": "a" * 7000},
    ],
)
async def test_odd_legal_headers_never_make_a_5xx(start_daemon, caplog, headers) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    body = json.dumps(alert(id="odd")).encode()
    if "gzip" in headers.get("Content-Encoding", ""):
        body = gzip.compress(body)
    head = request_head(len(body), headers).decode("latin-1").encode("latin-1")
    status, answer = await raw_post(daemon.port, [head + body])
    assert status in (202, 400, 415), answer
    assert status == 202 or ("error" in answer and "detail" in answer)
    no_tracebacks(caplog)


async def test_malformed_http_is_refused_without_a_traceback(start_daemon, caplog) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(request_head(10, {"Content-Length": "abc"}) + b"0123456789")
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
    writer.close()
    assert b" 400 " in answer
    no_tracebacks(caplog)
