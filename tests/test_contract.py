"""The contract checker is not vacuous: it catches bad requests and responses for each spec format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.standins.alpaca_api import SPEC, AlpacaStandIn
from tests.standins.contract import Contract, ContractViolation
from tests.standins.deviations import ALPACA_SDK, Deviation

CONTRACTS = SPEC.parents[1]
AUTH = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
ORDER_ID = "5f8b2bb6-0e8e-4a8b-9b3e-1c7c2c8a0001"


@pytest.fixture(scope="module")
def alpaca() -> Contract:
    return Contract.load(SPEC)


def good_order() -> dict[str, object]:
    return {
        "id": ORDER_ID, "client_order_id": "c1", "created_at": "2026-01-02T15:00:00Z",
        "symbol": "AAPL", "qty": "1", "filled_qty": "0", "notional": None,
        "type": "market", "side": "buy", "time_in_force": "day", "status": "new",
    }  # fmt: skip


def test_valid_exchange_passes(alpaca: Contract) -> None:
    body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}
    alpaca.check_request("POST", "/v2/orders", {}, AUTH, json.dumps(body).encode())
    alpaca.check_response("POST", "/v2/orders", 200, {}, json.dumps(good_order()).encode())
    alpaca.check_request("GET", "/v2/orders:by_client_order_id", {"client_order_id": "c1"}, AUTH, None)
    alpaca.check_request("DELETE", "/v2/positions", {"cancel_orders": "true"}, AUTH, None)


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "body", "expected"),
    [
        ("GET", "/v2/account", {}, {}, None, "auth header(s) APCA-API-KEY-ID, APCA-API-SECRET-KEY missing"),
        ("GET", "/v2/nowhere", {}, AUTH, None, "path not in the contract"),
        ("PUT", "/v2/orders", {}, AUTH, None, "method not in the contract"),
        ("GET", "/v2/orders:by_client_order_id", {}, AUTH, None, "required query parameter 'client_order_id'"),
        ("GET", "/v2/orders", {"status": "bogus"}, AUTH, None, "'bogus' is not one of"),
        ("GET", "/v2/orders/not-a-uuid", {}, AUTH, None, "is not a 'uuid'"),
        (
            "POST",
            "/v2/orders",
            {},
            AUTH,
            b'{"symbol": "AAPL", "qty": 1, "type": "market"}',
            "1 is not of type 'string'",
        ),
        ("POST", "/v2/orders", {}, AUTH, b'{"symbol": "AAPL", "type": "market"}', "'time_in_force' is a required"),
        ("POST", "/v2/orders", {}, AUTH, None, "request body required"),
        ("POST", "/v2/orders", {}, AUTH, b"not json", "body is not JSON"),
    ],
)
def test_bad_requests_are_caught(
    alpaca: Contract, method: str, path: str, query: dict[str, str], headers: dict[str, str],
    body: bytes | None, expected: str,
) -> None:  # fmt: skip
    with pytest.raises(ContractViolation, match=expected.replace("(", r"\(").replace(")", r"\)")):
        alpaca.check_request(method, path, query, headers, body)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda o: o.update(qty=1), r"\$\.qty: 1 is not of type 'string'"),
        (lambda o: o.update(status="sleeping"), r"\$\.status: 'sleeping' is not one of"),
        (lambda o: o.pop("time_in_force"), "'time_in_force' is a required property"),
        (lambda o: o.update(created_at="yesterday"), r"\$\.created_at: 'yesterday' is not a 'date-time'"),
        (lambda o: o.update(filled_avg_price=None), None),  # nullable: fine
    ],
)
def test_bad_responses_are_caught(alpaca: Contract, mutate, expected: str | None) -> None:  # type: ignore[no-untyped-def]
    order = good_order()
    mutate(order)
    body = json.dumps(order).encode()
    if expected is None:
        alpaca.check_response("GET", f"/v2/orders/{ORDER_ID}", 200, {}, body)
        return
    with pytest.raises(ContractViolation, match=expected):
        alpaca.check_response("GET", f"/v2/orders/{ORDER_ID}", 200, {}, body)


def test_undocumented_status_and_list_items(alpaca: Contract) -> None:
    with pytest.raises(ContractViolation, match="status 418 not documented"):
        alpaca.check_response("DELETE", f"/v2/orders/{ORDER_ID}", 418, {}, b"")
    with pytest.raises(ContractViolation, match=r"\$\[1\]: 'symbol' is a required"):
        alpaca.check_response("DELETE", "/v2/positions", 207, {}, b'[{"symbol": "A", "status": 200}, {"status": 200}]')


def test_swagger2_projectx_spec() -> None:
    px = Contract.load(CONTRACTS / "projectx" / "swagger.json")
    ok = {"accountId": 1, "contractId": "CON.F.US.EP.Z25", "type": 2, "side": 0, "size": 1, "customTag": "t"}
    px.check_request("POST", "/api/Order/place", {}, {}, json.dumps(ok).encode())
    with pytest.raises(ContractViolation, match="'size' is a required property"):
        px.check_request(
            "POST", "/api/Order/place", {}, {}, json.dumps({k: v for k, v in ok.items() if k != "size"}).encode()
        )
    with pytest.raises(ContractViolation, match=r"\$\.orderId: None"):
        px.check_response("POST", "/api/Order/place", 200, {}, b'{"orderId": null, "success": true, "errorCode": 0}')


def test_openapi_tradovate_spec_with_server_base_path() -> None:
    tv = Contract.load(CONTRACTS / "tradovate" / "swagger.json")
    assert tv.base_path == "/v1"
    with pytest.raises(ContractViolation, match="'orderQty' is a required property"):
        tv.check_request("POST", "/v1/order/placeorder", {}, {}, b"{}")


def test_deviation_matching_is_narrow() -> None:
    [sdk_numbers] = ALPACA_SDK
    msg = "request POST /v2/orders body: $.qty: 1.0 is not of type 'string'"
    assert sdk_numbers.matches(msg, direction="request", method="POST", path="/v2/orders")
    assert not sdk_numbers.matches(msg.replace("qty", "symbol"), direction="request", method="POST", path="/v2/orders")
    assert not sdk_numbers.matches(msg, direction="response", method="POST", path="/v2/orders")
    anywhere = Deviation("x", "why", "boom", method="GET", path="/v2/*")
    assert anywhere.matches("boom", direction="request", method="GET", path="/v2/a")
    assert not anywhere.matches("boom", direction="request", method="POST", path="/v2/a")


@pytest.fixture
async def strict_standin() -> AsyncIterator[AlpacaStandIn]:
    stand = AlpacaStandIn(tolerated=())  # nothing tolerated
    await stand.start()
    try:
        yield stand
    finally:
        await stand.stop()


async def test_middleware_records_violations_from_real_traffic(strict_standin: AlpacaStandIn) -> None:
    async with httpx.AsyncClient(base_url=strict_standin.base_url, timeout=5) as client:
        headers = {"APCA-API-KEY-ID": strict_standin.key_id, "APCA-API-SECRET-KEY": strict_standin.secret_key}
        await client.get("/v2/account", headers=headers)
        assert strict_standin.violations == []
        order = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
        response = await client.post("/v2/orders", json=order, headers=headers)
        assert response.status_code == 200  # the stand-in is lenient like the real API...
        assert strict_standin.violations == [  # ...but the checker records the number-for-string
            "request POST /v2/orders body: $.qty: 1 is not of type 'string'"
        ]
        await client.get("/v2/account")  # no auth headers: request and 401 both violate
    assert any("auth header(s)" in v for v in strict_standin.violations)
    assert any("status 401 not documented" in v for v in strict_standin.violations)


def test_spec_files_are_the_recorded_ones() -> None:
    import hashlib

    digest = hashlib.sha256(Path(SPEC).read_bytes()).hexdigest()
    assert digest == "e07d3745b4de8eda5c498d55ae08fe0ff34fa49b2b21d4568ca867c552d1efd3"
