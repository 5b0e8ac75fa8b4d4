"""Modbus field failures as data: every folder in tests/testcases/modbus/ is one case (see the README there).

A case is a register map (``config.json``), what the device holds over time (``registers.json``) and what
the driver must make of it (``expected.json``). Cases about the bus (``"runs_on": "bus"``) poll a real
pymodbus server (tests/harness/modbus_server.py); cases about decoding and counting (``"in_process"``)
hand the same register words to the driver's decoding directly. Both use a ``ManualClock``: step ``t`` is
the time of that poll, in seconds from the first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from floorwatch.drivers.modbus.driver import ModbusDriver
from floorwatch.drivers.modbus.plan import ReadGroup
from floorwatch.drivers.modbus.points import BIT_FUNCTIONS, ModbusOptions
from floorwatch.drivers.modbus.simulator import ModbusSimulator
from floorwatch.edge.clock import ManualClock
from floorwatch.edge.config import InstrumentConfig
from floorwatch.edge.model import Measurement, MeasurementStatus
from harness.modbus_server import SimFactory, instrument_for

CASES_DIR = Path(__file__).parent / "testcases" / "modbus"
RunsOn = Literal["bus", "in_process"]
Held = int | float | bool | str  # a value (encoded in the point's type and order), or "hex words" as sent


class CaseError(ValueError):
    """A case folder that does not say what it must; the message names the file and the key."""


@dataclass(frozen=True)
class DeviceStep:
    """What the device holds at ``t``: registers by point name; which units give no reply (None: as before)."""

    t: float
    registers: dict[str, Held]
    silent_units: frozenset[int] | None = None


@dataclass(frozen=True)
class ExpectedReading:
    """What one channel must read at one step; None = not checked (status defaults to ok)."""

    value: float | None = None
    status: MeasurementStatus = MeasurementStatus.OK
    unit: str | None = None
    detail_contains: str | None = None
    event: str | None = None  # the counter event: health.extra["counters"][channel]["last_event"]


@dataclass(frozen=True)
class ExpectedStep:
    t: float
    readings: dict[str, ExpectedReading]
    absent: tuple[str, ...] = ()
    health: dict[str, Any] = field(default_factory=dict)  # a subset of health.extra after this poll


@dataclass(frozen=True)
class FieldCase:
    name: str
    report: str
    runs_on: RunsOn
    instrument: dict[str, Any]
    options: ModbusOptions
    device: tuple[DeviceStep, ...]
    expected: tuple[ExpectedStep, ...]
    health: dict[str, Any]  # a subset of health.extra after the last poll


def _read(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    if not path.exists():
        raise CaseError(f"{path}: missing; a case folder holds config.json, registers.json and expected.json")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("steps", []), list):
        raise CaseError(f"{path}: expected an object (with a list 'steps')")
    return data


def _reading(where: str, raw: Mapping[str, Any]) -> ExpectedReading:
    unknown = set(raw) - {"value", "status", "unit", "detail_contains", "event"}
    if unknown:
        raise CaseError(f"{where}: unknown keys {sorted(unknown)}; use value, status, unit, detail_contains, event")
    return ExpectedReading(raw.get("value"), MeasurementStatus(raw.get("status", "ok")), raw.get("unit"),
                           raw.get("detail_contains"), raw.get("event"))


def load_case(folder: Path) -> FieldCase:
    config, registers, expected = (_read(folder, n) for n in ("config.json", "registers.json", "expected.json"))
    report = config.get("report", "")
    if len(report) < 40:
        raise CaseError(f"{folder / 'config.json'}: 'report' must say what failed in the field (40 characters or more)")
    if config.get("runs_on") not in ("bus", "in_process"):
        raise CaseError(f"{folder / 'config.json'}: 'runs_on' must be \"bus\" or \"in_process\"")
    options = ModbusOptions.model_validate(config.get("options", {}))
    device = tuple(
        DeviceStep(float(s["t"]), dict(s.get("registers", {})),
                   frozenset(s["silent_units"]) if "silent_units" in s else None)
        for s in registers["steps"]
    )
    steps = tuple(
        ExpectedStep(float(s["t"]),
                     {ch: _reading(f"{folder.name}/expected.json t={s['t']} {ch!r}", r)
                      for ch, r in s.get("readings", {}).items()},
                     tuple(s.get("absent", ())), s.get("health", {}))
        for s in expected["steps"]
    )
    if [d.t for d in device] != [e.t for e in steps] or not device:
        raise CaseError(f"{folder.name}: registers.json and expected.json must list the same steps (same t, same "
                        f"order); got {[d.t for d in device]} and {[e.t for e in steps]}")
    names = {p.name for p in options.points}
    first = set(device[0].registers)
    if first != names:
        raise CaseError(f"{folder.name}/registers.json: the first step must give every point a value; missing "
                        f"{sorted(names - first)}, unknown {sorted(first - names)}")
    if config["runs_on"] == "in_process" and any(d.silent_units for d in device):
        raise CaseError(f"{folder.name}: silent units are about the bus: set \"runs_on\": \"bus\"")
    return FieldCase(folder.name, report, config["runs_on"], dict(config.get("instrument", {})), options, device,
                     steps, expected.get("health", {}))


def _folders() -> list[Path]:
    return sorted(p for p in CASES_DIR.iterdir() if p.is_dir())


def _param(folder: Path) -> Any:
    runs_on = json.loads((folder / "config.json").read_text()).get("runs_on")
    return pytest.param(folder, id=folder.name, marks=[pytest.mark.service] if runs_on == "bus" else [])


# ------------------------------------------------------------------------------------------ running
def _hold(sim: ModbusSimulator, step: DeviceStep) -> None:
    """Put the step's register contents into the (simulated) device."""
    for name, held in step.registers.items():
        if isinstance(held, str):
            sim.set_registers(name, [int(word, 16) for word in held.split()])
        else:
            sim.set_value(name, held)
    if step.silent_units is not None:
        sim.dead_units.clear()
        sim.dead_units.update(step.silent_units)


def _memory(sim: ModbusSimulator, group: ReadGroup) -> list[int] | list[bool]:
    """What one read request would bring back from the device: the held words (or bits) of the group."""
    t = sim.elapsed()
    if group.function in BIT_FUNCTIONS:
        bits = [False] * group.count
        for b in group.members:
            bits[b.point.address - group.start] = bool(sim.registers(b.point, t))
        return bits
    words = [0] * group.count
    for b in group.members:
        held = sim.registers(b.point, t)
        assert not isinstance(held, bool)
        at = b.point.address - group.start
        words[at : at + len(held)] = held
    return words


def _collect(got: dict[str, Measurement], where: str) -> Callable[[Measurement], None]:
    def emit(m: Measurement) -> None:
        assert m.channel not in got, f"{where}: channel {m.channel!r} emitted twice in one poll"
        got[m.channel] = m

    return emit


def _subset(where: str, want: Any, have: Any) -> None:
    if isinstance(want, dict):
        assert isinstance(have, dict), f"{where}: expected a mapping, got {have!r}"
        for key, value in want.items():
            assert key in have, f"{where}: no {key!r} (has {sorted(have)})"
            _subset(f"{where}.{key}", value, have[key])
    elif isinstance(want, float | int) and not isinstance(want, bool):
        assert have == pytest.approx(want, rel=1e-9, abs=0), f"{where}: {have!r}, expected {want!r}"
    else:
        assert have == want, f"{where}: {have!r}, expected {want!r}"


def _check(case: FieldCase, step: ExpectedStep, got: dict[str, Measurement], driver: ModbusDriver) -> None:
    where = f"{case.name} t={step.t:g}"
    counters = driver.health.extra["counters"]
    for channel, want in step.readings.items():
        assert channel in got, f"{where}: no reading on channel {channel!r} (got {sorted(got)})"
        m = got[channel]
        assert m.status is want.status, f"{where} {channel!r}: status {m.status}, expected {want.status} ({m.detail})"
        if want.value is not None:
            assert m.value == pytest.approx(want.value, rel=1e-9, abs=0), f"{where} {channel!r}: {m.value!r}"
        elif m.status is not MeasurementStatus.OK:
            assert math.isnan(m.value), f"{where} {channel!r}: an error reading carries no number, got {m.value!r}"
        if want.unit is not None:
            assert m.unit == want.unit, f"{where} {channel!r}: unit {m.unit!r}, expected {want.unit!r}"
        if want.detail_contains is not None:
            assert want.detail_contains in m.detail, f"{where} {channel!r}: detail {m.detail!r}"
            if not want.detail_contains:
                assert m.detail == "", f"{where} {channel!r}: expected no detail, got {m.detail!r}"
        if want.event is not None:
            assert counters.get(channel, {}).get("last_event") == want.event, \
                f"{where} {channel!r}: counter event {counters.get(channel)}, expected {want.event!r}"
    for channel in step.absent:
        assert channel not in got, f"{where}: channel {channel!r} must not be read, got {got[channel]}"
    _subset(f"{where} health.extra", step.health, driver.health.extra)


async def _run(case: FieldCase, modbus_sim: SimFactory) -> ModbusDriver:
    clock = ManualClock()
    settings = {"timeout": 0.2, "poll_interval": 1.0, **case.instrument}
    unit_ids = tuple(settings.pop("modbus", {}).get("unit_ids", (1,)))
    if case.runs_on == "bus":
        sim = await modbus_sim("counter", case.options, clock, dead_units=set())
        config = instrument_for(sim, name=case.name, unit_ids=unit_ids, **settings)
    else:
        sim = ModbusSimulator("counter", case.options, clock)  # never started: its register contents only
        config = InstrumentConfig.model_validate({"name": case.name, "driver": "modbus", "host": "127.0.0.1",
                                                  "modbus": {"unit_ids": list(unit_ids)}, **settings})
    driver = ModbusDriver(config, case.options, clock)
    groups = [g for unit in driver.units.values() for g in unit.groups]
    if case.runs_on == "bus":
        await driver.connect()
    try:
        previous = case.device[0].t
        for held, expected in zip(case.device, case.expected, strict=True):
            clock.advance(held.t - previous)
            previous = held.t
            _hold(sim, held)
            got: dict[str, Measurement] = {}
            emit = _collect(got, f"{case.name} t={held.t:g}")
            if case.runs_on == "bus":
                await driver.poll(emit)
            else:
                for group in groups:
                    driver.decode_group(group, _memory(sim, group), emit)
            _check(case, expected, got, driver)
    finally:
        driver.close()
    return driver


def test_every_field_case_is_well_formed_and_both_kinds_are_there():
    cases = [load_case(folder) for folder in _folders()]
    assert len(cases) >= 4, [c.name for c in cases]
    assert {c.runs_on for c in cases} == {"bus", "in_process"}


@pytest.mark.parametrize("folder", [_param(f) for f in _folders()])
async def test_field_case(folder: Path, modbus_sim: SimFactory):
    case = load_case(folder)
    driver = await _run(case, modbus_sim)
    _subset(f"{case.name} health.extra after the last step", case.health, driver.health.extra)
