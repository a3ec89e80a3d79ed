"""A new broker is one folder plus one line in each table: a toy adapter made in a temporary folder trades end to end.

The toy package is written to `tmp_path` (nothing of it exists in the repository), put on `sys.path`, and
made known only through the two tables a real adapter uses: its settings section in
`config.brokers.BROKER_SECTIONS` and its factory in `brokers.registry.ADAPTERS`. A daemon started from a
TOML file with an account on it takes a webhook and the fill shows at `/api/positions`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.registry import ADAPTERS
from config.brokers import BROKER_SECTIONS
from config.settings import AccountSettings, load_settings
from daemon.domain import OrderStatus, SignalStatus
from tests.conftest import SECRET, alert, client_for, settled

TOY_SETTINGS = '''
"""The toy broker's settings section: `[accounts.<name>.toy]`."""

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class ToySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    venue: str = Field(..., min_length=1)  # required: an account on the toy broker must write its section
    commission: Decimal = Decimal("0")
'''

TOY_BROKER = '''
"""A toy broker: every order fills at once at the signal's price, positions kept in memory."""

from datetime import datetime
from decimal import Decimal

from brokers.base import BrokerBase, BrokerContext, BrokerReport, OrderNotFound, OrderRejected
from daemon.domain import AccountState, Fill, FlattenReport, Order, OrderRequest, OrderStatus, Position
from toy_broker.settings import ToySettings


class ToyBroker(BrokerBase):
    name = "toy"

    def __init__(self, account: str, settings: ToySettings, context: BrokerContext) -> None:
        super().__init__(account)
        self.settings, self.clock = settings, context.clock
        self.orders: dict[str, Order] = {}
        self.filled: list[Fill] = []
        self.held: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (quantity, average price)

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def place_order(self, request: OrderRequest) -> Order:
        existing = await self.find_order(request.client_order_id)
        if existing is not None:
            return existing
        if request.reference_price is None:
            raise OrderRejected("the toy broker fills at the signal's price; send one")
        now, price = self.clock(), request.reference_price
        order = Order(broker_order_id=f"T{len(self.orders) + 1}", client_order_id=request.client_order_id,
                      account=self.account, symbol=request.symbol, side=request.side, quantity=request.quantity,
                      order_type=request.order_type, status=OrderStatus.FILLED, filled_quantity=request.quantity,
                      average_fill_price=price, created_at=now, updated_at=now)
        fill = Fill(fill_id=f"{order.broker_order_id}-1", broker_order_id=order.broker_order_id,
                    client_order_id=order.client_order_id, account=self.account, symbol=order.symbol,
                    side=order.side, quantity=order.quantity, price=price, commission=self.settings.commission,
                    filled_at=now)
        self.orders[order.broker_order_id] = order
        self.filled.append(fill)
        quantity, average = self.held.get(order.symbol, (Decimal(0), Decimal(0)))
        signed = order.quantity * order.side.sign
        total = quantity + signed
        self.held[order.symbol] = (total, price if quantity == 0 else average)
        await self.emit(BrokerReport(order=order))
        await self.emit(BrokerReport(fill=fill))
        return order

    async def find_order(self, client_order_id: str) -> Order | None:
        return next((o for o in self.orders.values() if o.client_order_id == client_order_id), None)

    async def cancel_order(self, broker_order_id: str) -> Order:
        if broker_order_id not in self.orders:
            raise OrderNotFound(f"no toy order {broker_order_id}")
        return self.orders[broker_order_id]  # every toy order is filled: nothing to cancel

    async def modify_order(self, broker_order_id: str, *, quantity: Decimal | None = None,
                           limit_price: Decimal | None = None, stop_price: Decimal | None = None) -> Order:
        raise OrderRejected("toy orders fill at once; there is nothing to modify")

    async def open_orders(self) -> list[Order]:
        return []

    async def positions(self) -> list[Position]:
        return [Position(account=self.account, symbol=symbol, quantity=quantity, average_price=average)
                for symbol, (quantity, average) in self.held.items() if quantity != 0]

    async def account_state(self) -> AccountState:
        cash = Decimal(100000) - sum((f.price * f.quantity * f.side.sign for f in self.filled), Decimal(0))
        return AccountState(account=self.account, broker=self.name, cash=cash, equity=Decimal(100000),
                            as_of=self.clock())

    async def fills(self, since: datetime | None = None) -> list[Fill]:
        return [f for f in self.filled if since is None or f.filled_at >= since]

    async def close_position(self, symbol: str) -> Order | None:
        return None

    async def flatten(self) -> FlattenReport:
        return FlattenReport(account=self.account, cancelled=[], closing=[], errors=[])


def build(account: str, settings: ToySettings, context: BrokerContext) -> ToyBroker:
    return ToyBroker(account, settings, context)
'''


@pytest.fixture
def toy_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The toy adapter as a package in a temporary folder, registered through the two tables only."""
    root = tmp_path / "plugins"
    package = root / "toy_broker"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""A toy broker adapter made by a test."""\n')
    (package / "settings.py").write_text(textwrap.dedent(TOY_SETTINGS))
    (package / "broker.py").write_text(textwrap.dedent(TOY_BROKER))
    monkeypatch.syspath_prepend(str(root))
    from toy_broker.settings import ToySettings  # type: ignore[import-not-found]

    monkeypatch.setitem(BROKER_SECTIONS, "toy", ToySettings)
    monkeypatch.setitem(ADAPTERS, "toy", "toy_broker.broker:build")
    yield root
    for name in [m for m in sys.modules if m == "toy_broker" or m.startswith("toy_broker.")]:
        del sys.modules[name]


def test_the_tables_name_the_same_brokers_and_no_account_option() -> None:
    assert set(ADAPTERS) == set(BROKER_SECTIONS)
    assert not set(BROKER_SECTIONS) & set(AccountSettings.model_fields)


async def test_a_toy_broker_from_a_temporary_folder_trades_end_to_end(  # type: ignore[no-untyped-def]
        toy_package: Path, tmp_path: Path, start_daemon) -> None:
    config = tmp_path / "traderd.toml"
    config.write_text(textwrap.dedent(f"""
        [daemon]
        state_dir = "{tmp_path / 'state'}"
        log_level = "WARNING"
        reconcile_interval_seconds = 3600

        [webhook]
        host = "127.0.0.1"
        port = 0
        secret = "{SECRET}"

        [accounts.play]
        broker = "toy"
        symbols = ["AAPL"]

        [accounts.play.toy]
        venue = "sandbox"
        commission = "0.5"
    """))
    settings = load_settings(config)
    assert settings.accounts["play"].section("toy") is not None
    daemon = await start_daemon(settings)
    assert type(daemon.brokers["play"]).__module__ == "toy_broker.broker"
    async with client_for(daemon) as client:
        response = await client.post(f"/webhook/tradingview/{SECRET}", json=alert(id="toy-1", quantity="3",
                                                                                 price="101.25"))
        assert response.status_code == 202, response.text
        record = await settled(daemon, response.json()["signal_id"])
        assert record.status is SignalStatus.EXECUTED, record.reason
        assert [o.status for o in record.orders] == [OrderStatus.FILLED]
        assert [(f.quantity, f.price, f.commission) for f in record.fills] == [
            (Decimal(3), Decimal("101.25"), Decimal("0.5"))]
        positions = (await client.get("/api/positions", params={"account": "play"})).json()["positions"]
    assert [(p["account"], p["symbol"], Decimal(p["quantity"]), Decimal(p["average_price"])) for p in positions] == [
        ("play", "AAPL", Decimal(3), Decimal("101.25"))]
    assert [(p.symbol, p.quantity) for p in daemon.store.positions("play")] == [("AAPL", Decimal(3))]


def test_an_account_on_the_toy_broker_needs_its_section(toy_package: Path) -> None:
    with pytest.raises(ValueError, match=r"broker 'toy' needs a \[toy\] section"):
        load_settings(accounts={"play": {"broker": "toy"}})
    with pytest.raises(ValueError, match=r"accounts\.play\.toy\.venue"):
        load_settings(accounts={"play": {"broker": "toy", "toy": {"venue": ""}}})


def test_a_paper_only_daemon_imports_no_other_adapter(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import json
        import sys
        from brokers.registry import build_broker
        from config.settings import load_settings
        settings = load_settings(daemon={{"state_dir": {str(tmp_path / 'state')!r}}})
        build_broker("paper", settings.accounts["paper"], settings.daemon.state_dir)
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("brokers."))))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "brokers.paper.broker" in loaded
    assert not {m for m in loaded if m.startswith(("brokers.alpaca", "brokers.projectx", "brokers.tradovate"))}
