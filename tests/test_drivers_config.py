"""Configuration-level behaviour of the serial drivers: registry entries, options, port settings, RS-485,
stable port names, units and the per-part weighing stage."""

from __future__ import annotations

import asyncio
import math
import os

import pytest
import serial.rs485
from pydantic import ValidationError

from floorwatch.drivers import registry
from floorwatch.drivers.base import SerialDefaults
from floorwatch.drivers.serial_port import effective_settings, open_port, rs485_settings, stable_name
from floorwatch.drivers.units import canonical, convert
from floorwatch.drivers.weighing import PartWeigher, WeighingOptions
from floorwatch.edge.clock import SYSTEM_CLOCK, ManualClock
from floorwatch.edge.config import InstrumentConfig, SerialSettings, parse_config
from floorwatch.edge.model import Measurement, MeasurementStatus
from harness.serial_pty import Collector, instrument, wait_until

SERIAL = [n for n in registry.names() if registry.get(n).transport == "serial"]
# factory settings per the reference (instruments.md)
FACTORY = {
    "mitutoyo": "9600 8N1", "uwave": "57600 8N1", "sylvac": "4800 7E2", "mtsics": "9600 8N1",
    "aandd": "2400 7E1", "sartorius": "1200 7O1", "ohaus": "9600 8N1", "indicator": "9600 8N1",
    "xk3190": "9600 8N1", "regex": "9600 8N1",
}


@pytest.mark.parametrize("name", SERIAL)
def test_registry_entry_is_complete(name):
    spec = registry.get(name)
    assert spec.name == name and spec.summary and spec.transport == "serial" and spec.parser is not None
    d = spec.serial_defaults
    assert f"{d.baudrate} {d.bytesize}{d.parity}{d.stopbits}" == FACTORY[name]
    assert spec.driver.serial_defaults == spec.serial_defaults  # the driver uses what the registry says
    if name != "regex":
        assert spec.simulator is not None and spec.scenarios
        assert spec.options is not None and spec.options.model_validate({}) is not None  # defaults suffice
    module = __import__(spec.driver.__module__, fromlist=["_"])
    assert "[[instruments]]" in module.__doc__ and f'driver = "{name}"' in module.__doc__


@pytest.mark.parametrize("name", SERIAL)
def test_options_reject_unknown_keys(name):
    spec = registry.get(name)
    base = {"pattern": r"(?P<value>\d+)"} if name == "regex" else {}
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        spec.options.model_validate({**base, "treshold": 5})


def test_check_config_reports_driver_option_mistakes():
    data = {
        "gateway": {"site": "s", "line": "l", "id": "g"},
        "instruments": [
            {"name": "scale-1", "driver": "mtsics", "port": "/dev/ttyUSB0", "options": {"mode": "stream"}},
            {"name": "scale-2", "driver": "aandd", "port": "/dev/ttyUSB1",
             "options": {"weighing": "part", "threshold": 0.1, "zero_band": 0.5}},
            {"name": "odd-1", "driver": "regex", "port": "/dev/ttyUSB2", "options": {"pattern": "(?P<val>\\d+)"}},
        ],
        "characteristics": [{"name": "w", "instrument": "scale-1", "unit": "g"}],
    }
    problems = registry.check(parse_config(data), "gw.toml")
    assert any("instruments[0].options.mode" in p and "'poll' or 'continuous'" in p for p in problems)
    assert any("instruments[1].options" in p and "must be above zero_band" in p for p in problems)
    assert any("instruments[2].options.pattern" in p and "named group for the number" in p for p in problems)


def test_instrument_serial_overrides_win_over_driver_defaults():
    defaults = registry.get("sylvac").serial_defaults
    assert effective_settings(SerialSettings(), defaults) == {
        "baudrate": 4800, "bytesize": 7, "parity": "E", "stopbits": 2, "rtscts": False}
    assert effective_settings(SerialSettings(baudrate=9600, parity="N", bytesize=8, stopbits=1), defaults) == {
        "baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1, "rtscts": False}


def test_rs485_mode_is_configured_on_the_port_object():
    """The kernel RS-485 ioctl needs a real transceiver; a pty refuses it. The settings object is checked."""
    cfg = InstrumentConfig(name="bus-1", driver="indicator", port="/dev/ttyS1", serial={"rs485": True})
    driver = registry.get("indicator").driver(cfg, None, SYSTEM_CLOCK)
    assert isinstance(driver.rs485, serial.rs485.RS485Settings)
    assert driver.rs485.rts_level_for_tx is True and driver.rs485.rts_level_for_rx is False
    assert driver.health.extra["settings"] == "9600 8N1 RS-485"
    plain = registry.get("indicator").driver(cfg.model_copy(update={"serial": SerialSettings()}), None, SYSTEM_CLOCK)
    assert plain.rs485 is None and rs485_settings(SerialSettings()) is None


def test_rs485_on_a_port_without_it_is_a_clear_open_error(pty_pair):
    _, path = pty_pair
    with pytest.raises((OSError, ValueError, serial.SerialException)):
        open_port(path, effective_settings(SerialSettings(), SerialDefaults()), rs485_settings(SerialSettings(rs485=True)))


async def test_driver_reports_open_errors_and_keeps_retrying(tmp_path):
    cfg = instrument("scale-1", "mtsics", str(tmp_path / "ttyUSB7"))
    driver = registry.get("mtsics").driver(cfg, None, SYSTEM_CLOCK)
    task = asyncio.create_task(driver.run(Collector()))
    await wait_until(lambda: "no such port" in driver.health.last_error, 2, "open error")
    assert not task.done() and not driver.health.connected
    task.cancel()


def test_stable_name_points_from_tty_to_by_id(tmp_path):
    tty = tmp_path / "ttyUSB0"
    tty.write_text("")
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    os.symlink(tty, by_id / "usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0")
    assert stable_name(str(tty), by_id) == str(by_id / "usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0")
    assert stable_name(str(by_id / "usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0"), by_id) is None
    assert stable_name(str(tmp_path / "ttyUSB9"), tmp_path / "nothing") is None


def test_a_serial_driver_without_port_is_a_clear_error():
    cfg = InstrumentConfig(name="s", driver="mtsics", simulate="normal")
    with pytest.raises(ValueError, match="needs 'port'"):
        registry.get("mtsics").driver(cfg, None, SYSTEM_CLOCK)


def test_a_driver_emits_its_parser_s_measurements_stamped_with_its_instrument_and_the_time():
    clock = ManualClock()
    driver = registry.get("mitutoyo").driver(instrument("caliper-1", "mitutoyo", "/dev/null"), None, clock)
    parsed = driver.parse(b"01A+0000.123\r")
    assert isinstance(parsed, Measurement) and not parsed.stamped  # a parser sees only the frame
    got = Collector()
    driver.handle([b"01A+0000.123\r", b"912\r"], got)
    assert [(m.instrument, m.ts_ns, m.value) for m in got.items[:1]] == [("caliper-1", clock.now_ns(), 0.123)]
    assert all(m.stamped for m in got.items) and len(got.items) == 2  # the gauge error too


# -- units -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "src", "dst", "want"), [
    (1, "kg", "g", 1000.0), (250, "g", "kg", 0.25), (1, "lb", "kg", 0.45359237), (16, "oz", "lb", 1.0),
    (5, "ct", "g", 1.0), (1, "inch", "mm", 25.4), (12.7, "mm", "in", 0.5), (1000, "um", "mm", 1.0),
    (1, "mil", "um", 25.4), (2, "LBS", "lb", 2.0), (3, "PC", "pcs", 3.0), (1, '"', "mm", 25.4),
])
def test_unit_conversions(value, src, dst, want):
    assert math.isclose(convert(value, src, dst), want, rel_tol=1e-12)


@pytest.mark.parametrize(("src", "dst", "message"), [
    ("g", "mm", "cannot convert g (mass) to mm (length)"),
    ("inch", "kg", "cannot convert inch (length) to kg (mass)"),
    ("pcs", "g", "cannot convert pcs (count)"),
    ("", "g", "unknown unit ''"),
    ("stone", "kg", "unknown unit 'stone'"),
])
def test_unconvertible_units_raise_a_clear_error(src, dst, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert(1.0, src, dst)


# Every spelling of a unit the supported instruments print (the keypad unit of a scale, a gauge's mm/inch),
# in the cases and with the padding they print it: each converts, none is an "unknown unit".
INSTRUMENT_UNITS = {
    "g": ["g", "G", " g", "g  ", "\tg\t"], "kg": ["kg", "KG", "Kg", "kG", " kg ", "kgs", "KGS"],
    "lb": ["lb", "LB", "Lb", "lbs", "LBS", "Lbs", " lb "], "oz": ["oz", "OZ", "Oz", " oz"],
    "ct": ["ct", "CT", "Ct", "ct "], "mm": ["mm", "MM", "Mm", " mm "],
    "inch": ["in", "IN", "In", "inch", "INCH", "Inch", "inches", '"', "in."],
    "um": ["um", "UM", "Um", "\u00b5m", "\u03bcm", "\u00b5M", " \u00b5m "],
}


@pytest.mark.parametrize(("canon", "spelling"), [(c, s) for c, spellings in INSTRUMENT_UNITS.items() for s in spellings])
def test_every_spelling_instruments_send_converts(canon, spelling):
    assert canonical(spelling) == canon
    one = {"g": 1.0, "kg": 1000.0, "lb": 453.59237, "oz": 28.349523125, "ct": 0.2}
    if canon in one:
        assert math.isclose(convert(1, spelling, "g"), one[canon], rel_tol=1e-12)
    else:
        assert math.isclose(convert(1, spelling, "mm"), {"mm": 1.0, "inch": 25.4, "um": 0.001}[canon], rel_tol=1e-12)


def test_a_unit_whose_size_depends_on_the_region_is_an_error_not_a_guess():
    """The tael ('tl') is 37.4, 37.5 or 37.8 g depending on the region set on the balance: no silent choice."""
    with pytest.raises(ValueError, match="tael"):
        convert(1.0, "tl", "g")


def test_every_unit_a_parser_emits_is_known():
    for unit in ("g", "kg", "lb", "oz", "ct", "mm", "inch", "pcs"):
        assert canonical(unit) == unit


# -- weighing per part ---------------------------------------------------------------------------------
def _feed(weigher, stream):
    out = []
    for value, status in stream:
        d = weigher(Measurement(value, "g", status))
        if d is not None:
            out.append((d.value, d.status))
    return out


OK, UNSTABLE, OVER = MeasurementStatus.OK, MeasurementStatus.UNSTABLE, MeasurementStatus.OVERLOAD


def test_part_mode_emits_once_per_part_and_needs_the_pan_empty_in_between():
    w = PartWeigher(WeighingOptions(weighing="part", threshold=10, zero_band=1))
    stream = [(0.2, OK), (60, UNSTABLE), (101, OK), (101, OK), (101.1, OK),  # part 1
              (50, OK), (99, OK),  # part lifted partly and put back: still part 1
              (0.4, OK), (0.1, OK),  # empty
              (98.7, UNSTABLE), (98.5, OK), (98.5, OK),  # part 2
              (-0.3, OK), (5, OK), (0.0, OK)]  # light touch under the threshold: no part
    assert _feed(w, stream) == [(101, OK), (98.5, OK)]


def test_part_mode_ignores_unstable_readings_above_threshold():
    w = PartWeigher(WeighingOptions(weighing="part", threshold=10, zero_band=1))
    assert _feed(w, [(0, OK), (120, UNSTABLE), (0, OK)]) == []


def test_part_mode_counts_the_next_part_when_the_empty_pan_never_settled():
    """On a fast line the next part is put on before the scale reports the empty pan as stable: the pan was
    empty all the same (the reading was within the zero band), so the next part counts."""
    w = PartWeigher(WeighingOptions(weighing="part", threshold=10, zero_band=1))
    stream = [(0.0, OK), (100, OK), (35, UNSTABLE), (0.3, UNSTABLE), (70, UNSTABLE), (101, OK), (101, OK)]
    assert _feed(w, stream) == [(100, OK), (101, OK)]


def test_check_weigher_mode_emits_every_stable_reading_over_threshold():
    w = PartWeigher(WeighingOptions(weighing="stable", threshold=10))
    stream = [(0, OK), (50, UNSTABLE), (50.2, OK), (50.2, OK), (3, OK), (49.9, OK)]
    assert _feed(w, stream) == [(50.2, OK), (50.2, OK), (49.9, OK)]


def test_faults_pass_through_once_per_change():
    w = PartWeigher(WeighingOptions(weighing="part", threshold=10, zero_band=1))
    stream = [(math.nan, OVER), (math.nan, OVER), (math.nan, OVER), (0, OK), (math.nan, OVER)]
    out = _feed(w, stream)
    assert [s for _, s in out] == [OVER, OVER]


def test_all_mode_passes_everything():
    w = PartWeigher(WeighingOptions())
    stream = [(0, OK), (5, UNSTABLE), (math.nan, OVER)]
    assert len(_feed(w, stream)) == 3


def test_part_mode_needs_a_threshold_above_the_zero_band():
    with pytest.raises(ValidationError, match="must be above zero_band"):
        WeighingOptions(weighing="part", threshold=0.5, zero_band=0.5)


def test_settling_is_required_for_scales_without_a_stability_flag():
    w = PartWeigher(WeighingOptions(weighing="part", threshold=10, zero_band=1, settle_readings=3, settle_band=0.2))
    stream = [(0, OK), (60, OK), (104, OK), (99.5, OK), (100.1, OK), (100.0, OK), (100.05, OK), (0, OK),
              (90, OK), (95, OK), (math.nan, OVER), (95, OK), (95, OK), (95.1, OK)]
    out = _feed(w, stream)
    # part 1 once its last three readings agree within 0.2; part 2's run is broken by the overload and restarts
    assert [s for _, s in out] == [OK, OVER, OK]
    assert out[0][0] == 100.05 and math.isnan(out[1][0]) and out[2][0] == 95.1


def test_settling_in_check_weigher_mode():
    w = PartWeigher(WeighingOptions(weighing="stable", threshold=10, settle_readings=2, settle_band=0.1))
    stream = [(50, OK), (50.05, OK), (50.3, OK), (50.3, OK), (20, UNSTABLE), (20, OK), (20.0, OK)]
    assert _feed(w, stream) == [(50.05, OK), (50.3, OK), (20.0, OK)]
