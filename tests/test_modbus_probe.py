"""`floorwatch probe --modbus`: scanning unit ids on a real pymodbus server (TCP and RTU)."""

from __future__ import annotations

import pytest

from floorwatch.drivers.modbus.probe import ProbeError, parse_target, probe
from harness._util import free_port

pytestmark = pytest.mark.service


async def test_tcp_scan_finds_the_live_units_and_skips_the_dead_one(modbus_sim):
    sim = await modbus_sim("dead_unit")
    lines: list[str] = []
    found = await probe(f"127.0.0.1:{sim.endpoint['tcp_port']}", unit_ids=range(1, 4), timeout=0.1, out=lines.append)
    assert [u["unit_id"] for u in found] == [1, 3]
    holding = found[0]["holding"]
    assert holding["u32_CDAB"] == 1000  # the default map's 32-bit counter, low word first
    assert holding["hex"].startswith("03E8 0000 03E8")
    assert found[0]["input"]["f32_ABCD"] == pytest.approx(sim.process_value(sim.points[2], 0.0), rel=1e-6)
    assert lines[0].startswith("probing Modbus TCP 127.0.0.1:") and "unit ids 1..3 (3)" in lines[0]
    assert "unit 1: answers" in lines and "unit 2: answers" not in lines
    assert lines[-1] == "scanned 3/3 unit ids, 2 answering"


async def test_rtu_scan_over_a_pty_at_given_settings(modbus_sim):
    sim = await modbus_sim("counter", transport="rtu")
    lines: list[str] = []
    found = await probe(sim.endpoint["port"], unit_ids=[1], timeout=0.2, out=lines.append, baudrate=9600, parity="N")
    assert [(u["unit_id"], u["settings"]) for u in found] == [(1, "9600 8N1")]
    assert lines[0].startswith("probing Modbus RTU") and "9600 8N1" in lines[0]
    assert not any(line.startswith("trying") for line in lines)


async def test_rtu_scan_looks_for_the_port_settings_first(modbus_sim):
    # A pty ignores baud rate and parity, so the first candidate answers; the search itself is what is tested.
    sim = await modbus_sim("counter", transport="rtu")
    lines: list[str] = []
    found = await probe(sim.endpoint["port"], unit_ids=[1, 2], timeout=0.2, out=lines.append, parity="N")
    assert lines[:3] == [f"looking for the port settings of {sim.endpoint['port']} on unit ids 1..2",
                         "trying 9600 8N1", "unit 1 answers at 9600 8N1"]
    assert [u["unit_id"] for u in found] == [1, 2] and found[0]["settings"] == "9600 8N1"


async def test_rtu_settings_search_without_any_answer_says_what_to_check(modbus_sim):
    sim = await modbus_sim("dead_unit", transport="rtu")
    lines: list[str] = []
    found = await probe(sim.endpoint["port"], unit_ids=[2], timeout=0.05, out=lines.append)
    assert found == []
    assert [line for line in lines if line.startswith("trying")] == [
        "trying 9600 8E1", "trying 9600 8N1", "trying 19200 8E1", "trying 19200 8N1"]
    assert "give the baud rate and parity to scan every id" in lines[-1]


async def test_tcp_device_answering_every_unit_id_is_explained(modbus_sim):
    sim = await modbus_sim("counter")
    lines: list[str] = []
    await probe(f"127.0.0.1:{sim.endpoint['tcp_port']}", unit_ids=range(1, 4), timeout=0.1, out=lines.append)
    assert "every unit id answered" in lines[-1]


async def test_a_unit_answering_only_with_exceptions_is_present(modbus_sim):
    # Holding registers 0..9 exist in the default map; ask a device whose map starts elsewhere.
    from floorwatch.drivers.modbus.points import ModbusOptions, Point

    sim = await modbus_sim("counter", ModbusOptions(points=[Point(name="far", address=60000, type="u16")]))
    found = await probe(f"127.0.0.1:{sim.endpoint['tcp_port']}", unit_ids=[7], timeout=0.1, out=lambda s: None)
    assert found[0]["unit_id"] == 7
    assert found[0]["holding"].startswith("exception 02 illegal data address")


async def test_nothing_listening_is_a_clear_error():
    with pytest.raises(ProbeError, match=r"cannot connect to Modbus TCP 127\.0\.0\.1:\d+"):
        await probe(f"127.0.0.1:{free_port()}", unit_ids=[1], timeout=0.1, out=lambda s: None)


async def test_missing_serial_port_is_a_clear_error(tmp_path):
    with pytest.raises(ProbeError, match="does not exist"):
        await probe(str(tmp_path / "ttyUSB9"), unit_ids=[1], out=lambda s: None)


async def test_bad_unit_ids_are_refused():
    with pytest.raises(ValueError, match="unit ids must be 0-247"):
        await probe("127.0.0.1", unit_ids=[1, 300], out=lambda s: None)
    with pytest.raises(ValueError, match="no unit ids to scan"):
        await probe("127.0.0.1", unit_ids=[], out=lambda s: None)


@pytest.mark.parametrize("target", ["", "plc:0", "plc:http", "[fd00::1]:70000"])
def test_bad_targets(target):
    with pytest.raises(ValueError):
        parse_target(target)


def test_targets():
    assert parse_target("COM3") == {"port": "COM3"}
    assert parse_target("/dev/serial/by-id/usb-FTDI-if00-port0") == {"port": "/dev/serial/by-id/usb-FTDI-if00-port0"}
    assert parse_target("[fd00::5]") == {"host": "fd00::5", "tcp_port": 502}
    assert parse_target("fd00::5") == {"host": "fd00::5", "tcp_port": 502}
