"""Real Modbus peers for tests: pymodbus' server on a free loopback TCP port, or on a socat pty pair (RTU).

``modbus_sim`` is a factory: ``await modbus_sim("wrap", options, clock, transport="rtu")`` starts a
:class:`floorwatch.drivers.modbus.simulator.ModbusSimulator` and stops it after the test. ``modbus_tcp_server`` and
``modbus_rtu_server`` are ready-made steady counters. ``instrument_for(sim, ...)`` builds the instrument
configuration that points the driver at a simulator (8N1 for RTU, short timeouts for fast tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from floorwatch.drivers.modbus.simulator import ModbusSimulator
from floorwatch.edge.clock import ManualClock
from floorwatch.edge.config import InstrumentConfig
from harness._util import require_binary

SimFactory = Callable[..., Awaitable[ModbusSimulator]]


def instrument_for(sim: ModbusSimulator, *, name: str = "counter-1", unit_ids: tuple[int, ...] = (1,),
                   timeout: float = 0.2, poll_interval: float = 0.05, inter_request_delay: float = 0.0,
                   **extra: Any) -> InstrumentConfig:
    """Instrument configuration for the simulator's endpoint (RTU at 9600 8N1)."""
    data: dict[str, Any] = {
        "name": name,
        "driver": "modbus",
        "timeout": timeout,
        "poll_interval": poll_interval,
        "modbus": {"unit_ids": list(unit_ids), "inter_request_delay": inter_request_delay},
        **sim.endpoint,
    }
    if "port" in sim.endpoint:
        data["serial"] = {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1, **extra.pop("serial", {})}
    data.update(extra)
    return InstrumentConfig.model_validate(data)


@pytest.fixture
async def modbus_sim() -> AsyncIterator[SimFactory]:
    started: list[ModbusSimulator] = []

    async def make(scenario: str = "counter", options: Any = None, clock: Any = None, *,
                   transport: str = "tcp", **kwargs: Any) -> ModbusSimulator:
        if transport == "rtu":
            require_binary("socat")
        sim = ModbusSimulator(scenario, options, clock or ManualClock(), transport=transport, **kwargs)  # type: ignore[arg-type]
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.aclose()


@pytest.fixture
async def modbus_tcp_server(modbus_sim: SimFactory) -> ModbusSimulator:
    """A steady production counter (default register map) on Modbus TCP."""
    return await modbus_sim("counter")


@pytest.fixture
async def modbus_rtu_server(modbus_sim: SimFactory) -> ModbusSimulator:
    """A steady production counter (default register map) on Modbus RTU over a pty pair."""
    return await modbus_sim("counter", transport="rtu")
