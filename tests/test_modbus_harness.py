"""The Modbus test peers themselves: a plain pymodbus client reads a register from each."""

from __future__ import annotations

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

pytestmark = pytest.mark.service


async def test_tcp_server_serves_the_counter_register(modbus_tcp_server):
    client = AsyncModbusTcpClient("127.0.0.1", port=modbus_tcp_server.endpoint["tcp_port"], timeout=1, retries=0)
    assert await client.connect()
    try:
        response = await client.read_holding_registers(0, count=2, device_id=1)
    finally:
        client.close()
    assert not response.isError()
    assert response.registers == [1000, 0]  # 1000 parts, low word first (CDAB)


async def test_rtu_server_on_a_pty_serves_the_counter_register(modbus_rtu_server):
    client = AsyncModbusSerialClient(modbus_rtu_server.endpoint["port"], framer=FramerType.RTU, baudrate=9600,
                                     bytesize=8, parity="N", stopbits=1, timeout=1, retries=0)
    assert await client.connect()
    try:
        response = await client.read_holding_registers(0, count=2, device_id=1)
    finally:
        client.close()
    assert not response.isError()
    assert response.registers == [1000, 0]
