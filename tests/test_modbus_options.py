"""The modbus register map configuration: clear errors for the mistakes people make, grouping of reads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from floorwatch.drivers import registry
from floorwatch.drivers.modbus.driver import ModbusDriver
from floorwatch.drivers.modbus.plan import BoundPoint, plan_reads
from floorwatch.drivers.modbus.points import DEFAULT_POINTS, ModbusOptions, Point
from floorwatch.drivers.modbus.simulator import ModbusSimulator
from floorwatch.edge.clock import ManualClock
from floorwatch.edge.config import InstrumentConfig, parse_config


def _error(**fields) -> str:
    with pytest.raises(ValidationError) as info:
        Point(**fields)
    return info.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("function", "address", "pdu"),
    [("holding", 40001, 0), ("holding", 40100, 99), ("holding", 400001, 0), ("input", 30005, 4),
     ("discrete_inputs", 10001, 0)],
)
def test_register_numbers_are_refused_with_the_pdu_address_to_use(function, address, pdu):
    msg = _error(name="x", function=function, address=address)
    assert f"address {address} looks like a register number" in msg
    assert f"write address = {pdu}" in msg and "address_is_pdu = true" in msg


def test_a_real_pdu_address_in_that_range_can_be_confirmed():
    assert Point(name="sunspec", address=40002, address_is_pdu=True).address == 40002


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"function": "coils", "address": 0, "type": "u16"}, "coils are single bits: type must be 'bool'"),
        ({"function": "holding", "address": 0, "type": "bool"}, "use a register type such as 'u16'"),
        ({"address": 0, "type": "f32", "counter": True}, "a counter must be an unsigned integer"),
        ({"address": 0, "type": "u32", "counter": True, "scale": 10}, "remove scale and offset"),
        ({"address": 0, "type": "u16", "counter": True, "wrap_at": 70000}, "larger than a u16 can hold"),
        ({"address": 0, "wrap_at": 1000}, "wrap_at applies only to counter points"),
        ({"address": 65535, "type": "u32"}, "runs past the last address 65535"),
        ({"address": 0, "scale": 0}, "scale must not be 0"),
        ({"address": 0, "scale": float("nan")}, "must be a finite number"),
        ({"address": 0, "type": "float"}, "Input should be"),
        ({"address": 0, "order": "BACD"}, "Input should be"),
        ({"address": -1}, "greater than or equal to 0"),
        ({"address": 0, "unit_id": 300}, "less than or equal to 247"),
        ({"address": 0, "name": "bad name"}, "should match pattern"),
        ({"address": 0, "registr": 5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_points_are_clear_errors(fields, message):
    assert message in _error(**{"name": "x", **fields})


def test_types_default_by_function():
    assert Point(name="a", address=0).type == "u16"
    assert Point(name="b", function="coils", address=0).type == "bool"


def test_channels_must_not_collide_with_counter_channels():
    with pytest.raises(ValidationError, match="would emit channel 'parts_rate', already used"):
        ModbusOptions(points=[
            Point(name="parts", address=0, type="u32", counter=True),
            Point(name="parts_rate", address=4),
        ])


def test_same_name_on_different_units_is_fine():
    opts = ModbusOptions(points=[Point(name="t", unit_id=1, address=0), Point(name="t2", unit_id=2, address=0)])
    assert len(opts.points) == 2


def test_real_hardware_without_a_register_map_is_refused_with_a_fix():
    config = InstrumentConfig(name="line-3-counter", driver="modbus", host="192.0.2.10")
    with pytest.raises(ValueError, match=r"'line-3-counter': the modbus driver needs a register map; add one"):
        ModbusDriver(config, ModbusOptions(), ManualClock())


def test_simulated_instrument_uses_the_simulators_map():
    config = InstrumentConfig(name="c", driver="modbus", simulate="counter")
    driver = ModbusDriver(config, None, ManualClock())
    assert sum(len(u.groups) for u in driver.units.values()) == 3
    assert set(driver.counters) == {"", "count16"}


def test_several_units_prefix_the_channels():
    config = InstrumentConfig(name="c", driver="modbus", simulate="counter", modbus={"unit_ids": [1, 2]})
    driver = ModbusDriver(config, ModbusOptions(points=[
        Point(name="", address=0, type="u32", counter=True),
        Point(name="temp", address=2, unit_id=2),
    ]), ManualClock())
    assert set(driver.counters) == {"u1", "u2"}
    assert sorted(driver.units) == [1, 2]
    groups = {u: [(g.start, g.count) for g in s.groups] for u, s in driver.units.items()}
    assert groups == {1: [(0, 2)], 2: [(0, 3)]}


def test_reads_are_grouped_per_unit_and_function_within_125_registers():
    points = [Point(name=f"r{i}", address=i * 2, type="u32") for i in range(100)]  # 200 registers
    points += [Point(name="in", function="input", address=0), Point(name="c", function="coils", address=1999)]
    bound = [BoundPoint(p, 1, p.name) for p in points] + [BoundPoint(points[0], 2, "u2")]
    groups = plan_reads(bound)
    assert [(g.unit_id, g.function, g.start, g.count) for g in groups] == [
        (1, "coils", 1999, 1), (1, "holding", 0, 124), (1, "holding", 124, 76), (1, "input", 0, 1),
        (2, "holding", 0, 2),
    ]
    assert all(g.count <= 125 for g in groups)


def test_a_value_is_never_split_across_two_reads():
    bound = [BoundPoint(Point(name=f"d{i}", address=i * 4, type="f64"), 1, f"d{i}") for i in range(40)]
    for g in plan_reads(bound, max_registers=10):
        assert g.count == 8 or g.count % 4 == 0
        assert all(m.point.address + 4 <= g.start + g.count for m in g.members)


def test_registry_spec():
    spec = registry.get("modbus")
    assert (spec.name, spec.transport, spec.parser, spec.options) == ("modbus", "modbus", None, ModbusOptions)
    assert set(spec.scenarios) == {"counter", "wrap", "reset", "replace", "stopped", "dead_unit"}
    assert spec.serial_defaults.baudrate == 9600 and spec.serial_defaults.parity == "E"
    sim = spec.simulator("wrap", None, ManualClock())
    assert isinstance(sim, ModbusSimulator) and sim.points == DEFAULT_POINTS


def test_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="unknown modbus scenario 'wrapp'; choose one of counter, wrap"):
        ModbusSimulator("wrapp")


def _gateway(options: dict) -> dict:
    return {
        "gateway": {"site": "s", "line": "l", "id": "g"},
        "instruments": [{"name": "counter-1", "driver": "modbus", "host": "192.0.2.10", "options": options}],
        "characteristics": [{"name": "parts", "instrument": "counter-1", "unit": "pcs", "kind": "count"}],
    }


def test_check_config_reports_register_map_mistakes_with_their_key_path():
    config = parse_config(_gateway({"points": [
        {"name": "good_parts", "address": 40001, "type": "u32", "counter": True},
        {"name": "temp", "function": "input", "address": 0, "type": "f32", "order": "CDBA"},
    ]}), "gw.toml")
    problems = registry.check(config, "gw.toml")
    assert any(p.startswith("gw.toml: instruments[0].options.points.0: address 40001 looks like a register number")
               for p in problems), problems
    assert any("instruments[0].options.points.1.order" in p for p in problems), problems


def test_check_config_accepts_a_good_register_map():
    config = parse_config(_gateway({
        "points": [
            {"name": "", "address": 0x03EB, "function": "input", "type": "u32", "order": "CDAB", "counter": True},
            {"name": "temperature", "function": "input", "address": 10, "type": "f32", "unit": "degC"},
        ],
        "idle_after": 120,
    }), "gw.toml")
    assert registry.check(config, "gw.toml") == []
