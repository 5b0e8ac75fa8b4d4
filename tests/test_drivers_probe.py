"""`floorwatch probe`: finds the instrument on a pty served by a simulator, shows progress, and hands a
Modbus target to the Modbus scan."""

from __future__ import annotations

import argparse
import asyncio
import os

import serial

from floorwatch.drivers import registry
from floorwatch.edge.clock import SYSTEM_CLOCK
from floorwatch.gateway.cli import main
from floorwatch.gateway.commands.probe import candidates, plan, probe_serial, report


def _sim(name: str, options: dict):
    spec = registry.get(name)
    sim = spec.simulator("normal", spec.options.model_validate(options), SYSTEM_CLOCK)
    sim.interval = 0.02
    return sim


async def test_probe_finds_a_streaming_scale_by_listening(capsys):
    async with _sim("aandd", {"mode": "continuous"}) as sim:
        rc = await asyncio.to_thread(main, ["probe", sim.endpoint["port"], "--listen", "0.4", "--timeout", "0.2"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert out.startswith(f"{sim.endpoint['port']}: aandd at ")
    assert 'driver = "aandd"' in out and "ST," in out
    assert "[1/" in err and "listened 0.4 s" in err  # progress, as it goes


async def test_probe_finds_a_polled_balance_by_asking(capsys):
    async with _sim("mtsics", {"mode": "poll"}) as sim:
        rc = await asyncio.to_thread(main, ["probe", sim.endpoint["port"], "--settings", "9600 8N1",
                                            "--listen", "0.2", "--timeout", "0.2"])
        requests = list(sim.requests)
    out, err = capsys.readouterr()
    assert rc == 0
    assert "mtsics at 9600 8N1 (answered its own request)" in out
    assert "[instruments.serial]" not in out  # the factory setting needs no override
    assert b"SI\r\n" in requests
    # only read requests were sent: never tare, zero or settings
    assert not any(r.strip() in (b"T", b"Z", b"\x1bT", b"\x1bV", b"@") for r in requests)
    assert "sent b'SI\\r\\n' (mtsics)" in err


async def test_probe_reports_when_nothing_answers(pty_pair, capsys):
    _, path = pty_pair
    rc = await asyncio.to_thread(main, ["probe", path, "--settings", "9600 8N1", "--listen", "0.1",
                                        "--timeout", "0.05"])
    out, _ = capsys.readouterr()
    assert rc == 1 and "no known instrument answered" in out


def test_probe_explains_a_missing_port_and_missing_arguments(tmp_path, capsys):
    assert main(["probe", str(tmp_path / "ttyUSB3"), "--settings", "9600 8N1"]) == 2
    assert "no such port" in capsys.readouterr().err
    assert main(["probe"]) == 2
    assert "give the serial port to probe" in capsys.readouterr().err
    assert main(["probe", "/dev/null", "--settings", "fast"]) == 2
    assert "'fast' is not a port setting" in capsys.readouterr().err


def test_probe_plan_tries_each_drivers_factory_setting_and_the_common_ones():
    specs = candidates([])
    steps = plan(specs, [])
    settings = [s for s, _ in steps]
    assert len(settings) == len(set(settings))
    for spec, _ in specs:
        d = spec.serial_defaults
        text = f"{d.baudrate} {d.bytesize}{d.parity}{d.stopbits}" + (" RTS/CTS" if d.rtscts else "")
        assert spec in dict(steps)[text]
    assert "19200 8N1" in settings and "regex" not in {s.name for s, _ in specs}  # regex needs a pattern


async def test_probe_modbus_scans_unit_ids(modbus_tcp_server, capsys):
    target = f"127.0.0.1:{modbus_tcp_server.endpoint['tcp_port']}"
    rc = await asyncio.to_thread(main, ["probe", "--modbus", target, "--units", "1-2", "--timeout", "0.3"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "unit 1 answers" in out
    assert "probing Modbus TCP" in err


def test_probe_modbus_explains_an_unreachable_host(capsys):
    from harness._util import free_port

    rc = main(["probe", "--modbus", f"127.0.0.1:{free_port()}", "--units", "1", "--timeout", "0.2"])
    assert rc == 2
    assert "cannot connect" in capsys.readouterr().err


async def test_probe_configuration_uses_the_stable_port_name(tmp_path, capsys):
    """Probing /dev/ttyUSB0 must not hand the technician a configuration that breaks at the next replug."""
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    async with _sim("aandd", {"mode": "continuous"}) as sim:
        tty = os.path.realpath(sim.endpoint["port"])  # the pty, as /dev/ttyUSB0 would be
        os.symlink(tty, by_id / "usb-Prolific_PL2303-if00-port0")
        args = argparse.Namespace(port=tty, driver=["aandd"], settings=["2400 7E1"], listen=0.3, timeout=0.1, all=False)
        found = await asyncio.to_thread(probe_serial, args, lambda text: None)
    report(tty, found, by_id)
    out = capsys.readouterr().out
    assert f'port = "{by_id}/usb-Prolific_PL2303-if00-port0"' in out
    assert f"{tty} is {by_id}/usb-Prolific_PL2303-if00-port0" in out


async def test_probe_shows_values_not_the_error_replies_to_other_drivers_requests(capsys):
    """A Sylvac gauge answers ERR1 to every other driver's request: those are error replies, not values,
    and the frames shown to the technician are the ones carrying a measurement."""
    async with _sim("sylvac", {"mode": "request"}) as sim:
        rc = await asyncio.to_thread(main, ["probe", sim.endpoint["port"], "--settings", "4800 7E2",
                                            "--listen", "0.2", "--timeout", "0.15"])
    out, err = capsys.readouterr()
    assert rc == 0 and "sylvac at 4800 7E2 (answered its own request)" in out
    examples = [line for line in out.splitlines() if "->" in line]
    assert examples and all("ERR" not in line and " mm ok" in line for line in examples), out
    assert "-> sylvac: 1 value(s)" in err and "error repl" in err, err


async def test_probe_says_when_bytes_arrived_that_no_driver_understands(pty_pair, capsys):
    """An instrument that talks, but in no known protocol (or at a setting not tried): say what arrived
    instead of blaming the cable."""
    master, path = pty_pair

    async def talk():
        while True:
            os.write(master, b"W=12.5 kg\r\n")
            await asyncio.sleep(0.02)

    talker = asyncio.create_task(talk())
    try:
        rc = await asyncio.to_thread(main, ["probe", path, "--settings", "9600 8N1", "--listen", "0.2",
                                            "--timeout", "0.05"])
    finally:
        talker.cancel()
    out, _ = capsys.readouterr()
    assert rc == 1
    assert "Check the cable" not in out
    assert "bytes arrived at 9600 8N1" in out and "W=12.5 kg" in out and "regex" in out


def test_probe_stops_when_another_program_holds_the_port(pty_pair, capsys):
    """A terminal program (or ModemManager) holding the port: say so once, not once per port setting."""
    _, path = pty_pair
    holder = serial.Serial(path, exclusive=True)
    try:
        rc = main(["probe", path, "--listen", "0.05", "--timeout", "0.05"])
    finally:
        holder.close()
    out, err = capsys.readouterr()
    assert rc == 2 and "no known instrument" not in out
    assert err.count("in use by another program") == 1, err
