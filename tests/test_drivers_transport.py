"""The shared serial transport on real ptys: bytes flow, frames are cut; what the technician is told about a
wrong baud rate, a renumbered port and a port the gateway may not open."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from floorwatch.drivers import registry
from floorwatch.drivers.framing import Framer
from floorwatch.drivers.serial_port import SerialLink, effective_settings, port_hint
from floorwatch.edge.clock import SYSTEM_CLOCK
from floorwatch.edge.config import SerialSettings
from harness._util import require_binary
from harness.serial_pty import Collector, instrument, wait_until


async def test_bytes_flow_through_a_pty_pair(pty_pair):
    master, path = pty_pair
    link = await SerialLink.open(path, effective_settings(SerialSettings(), registry.get("mitutoyo").serial_defaults),
                                 Framer(b"\r"))
    try:
        os.write(master, b"01A+0000.1")
        assert await link.read_frames(0.1) == []
        os.write(master, b"23\r01A-0001.000\r")
        frames = await link.read_frames(1.0)
        assert frames == [b"01A+0000.123\r", b"01A-0001.000\r"]
        link.write(b"1\r")
        await asyncio.sleep(0.05)
        assert os.read(master, 100) == b"1\r"
    finally:
        link.close()


# -- what the technician sees in the health report -------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def _running(driver, emit):
    task = asyncio.create_task(driver.run(emit))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_wrong_baud_rate_is_named_in_the_health_report(pty_pair):
    """At a wrong baud rate or parity every frame is garbage: say so, instead of only counting rejections."""
    master, path = pty_pair
    driver = registry.get("mitutoyo").driver(instrument("caliper-1", "mitutoyo", path), None, SYSTEM_CLOCK)
    got = Collector()
    async with _running(driver, got):
        await wait_until(lambda: driver.health.connected, 3, "connection")
        os.write(master, b"\xf8\x80\x1e\xfe\x86\r" * 6)  # what 9600 baud makes of a gauge sending at 2400
        await wait_until(lambda: "check baud rate/parity" in driver.health.last_error, 3, "the diagnosis")
        assert "all 6 frames since connecting were rejected" in driver.health.last_error
        assert "9600 8N1" in driver.health.last_error  # the settings the port is at
        os.write(master, b"01A+0000.123\r")  # the technician fixed the setting: the diagnosis goes away
        await wait_until(lambda: len(got.items) == 1, 3, "the good frame")
        assert "baud" not in driver.health.last_error
        os.write(master, b"\xf8\x80\r" * 5)  # someone changed the instrument's setting afterwards
        await wait_until(lambda: "the last 5 frames were all rejected" in driver.health.last_error, 3, "diagnosis")
    assert got.values == [0.123]


async def test_bytes_without_a_frame_end_are_reported_when_the_line_goes_quiet(pty_pair):
    """A caliper at the wrong baud rate never produces its CR: its garbage must not wait for 256 bytes."""
    master, path = pty_pair
    driver = registry.get("mitutoyo").driver(instrument("caliper-1", "mitutoyo", path, timeout=0.2), None,
                                             SYSTEM_CLOCK)
    got = Collector()
    async with _running(driver, got):
        await wait_until(lambda: driver.health.connected, 3, "connection")
        os.write(master, b"\xf8\x80\x1e\xfe\x86\x9e")
        await wait_until(lambda: driver.health.frames_rejected == 1, 3, "the incomplete frame counted")
        assert "no frame end" in driver.health.last_reject_reason
        assert driver.health.last_raw == b"\xf8\x80\x1e\xfe\x86\x9e"
        os.write(master, b"01A+0000.5")  # a frame arriving in two pieces close together is not cut
        await asyncio.sleep(0.05)
        os.write(master, b"00\r")
        await wait_until(lambda: len(got.items) == 1, 3, "the frame")
    assert got.values == [0.5] and driver.health.frames_rejected == 1


def test_a_tty_usb_number_gets_the_stable_name_hint(tmp_path):
    tty = tmp_path / "ttyUSB0"
    tty.write_text("")
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    os.symlink(tty, by_id / "usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0")
    assert f"configure {by_id}/usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0 instead" in port_hint(str(tty), by_id)
    # no adapter behind the number right now: still say where the stable names are
    hint = port_hint("/dev/ttyUSB3", tmp_path / "nothing")
    assert "/dev/ttyUSB3" in hint and "ls -l /dev/serial/by-id/" in hint
    assert "/dev/ttyACM0" in port_hint("/dev/ttyACM0", tmp_path / "nothing")
    assert port_hint(str(by_id / "usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0"), by_id) is None


async def test_a_missing_tty_usb_port_error_names_the_stable_name():
    driver = registry.get("mtsics").driver(instrument("scale-1", "mtsics", "/dev/ttyUSB97"), None, SYSTEM_CLOCK)
    async with _running(driver, Collector()):
        await wait_until(lambda: "no such port" in driver.health.last_error, 2, "open error")
    assert "/dev/serial/by-id" in driver.health.last_error
    assert "/dev/serial/by-id" in driver.health.extra["hint"]


def _without_access(path: str, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` where ``path`` cannot be opened, as on a fresh Debian install for a user outside 'dialout':
    as root, the port becomes another user's, group dialout, mode 660 (what udev gives /dev/ttyUSB0) and root
    runs without the capability that overrides file permissions; as another user the owner bits are cleared."""
    if os.geteuid() == 0:
        os.chown(path, 65534, grp.getgrnam("dialout").gr_gid)  # another user, as udev leaves it to root
        os.chmod(path, 0o660)
        prefix = [require_binary("setpriv"), "--bounding-set", "-dac_override,-dac_read_search"]
    else:
        os.chmod(path, 0)
        prefix = []
    return subprocess.run([*prefix, sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=30, cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"})


def test_permission_denied_on_a_port_says_how_to_fix_it(pty_pair):
    _, path = pty_pair
    done = _without_access(path, f"""
        import asyncio, contextlib
        from floorwatch.drivers import registry
        from harness.serial_pty import Collector, instrument
        async def main():
            d = registry.get("mitutoyo").driver(instrument("caliper-1", "mitutoyo", {path!r}), None)
            task = asyncio.create_task(d.run(Collector()))
            await asyncio.sleep(0.3)
            task.cancel()
            print(d.health.last_error)
        asyncio.run(main())
        """)
    error = done.stdout
    assert "permission denied" in error, done.stderr
    assert "sudo usermod -aG" in error or "check the udev rule" in error
    assert "log in again" in error or "udev" in error


def test_probe_stops_at_permission_denied_with_the_fix(pty_pair):
    _, path = pty_pair
    done = _without_access(path, f"""
        import sys
        from floorwatch.gateway.cli import main
        sys.exit(main(["probe", {path!r}, "--listen", "0.05", "--timeout", "0.05"]))
        """)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "permission denied" in done.stderr and "sudo usermod -aG" in done.stderr
    assert done.stderr.count("permission denied") == 1  # said once, not once per port setting tried
    assert "no known instrument answered" not in done.stdout


async def test_a_polled_instrument_at_the_wrong_baud_rate_keeps_the_diagnosis(pty_pair):
    """Each garbled reply is also 'no reply' to the poll: the baud rate advice must not be overwritten by it."""
    master, path = pty_pair
    spec = registry.get("mtsics")
    driver = spec.driver(instrument("scale-1", "mtsics", path, poll_interval=0.02, timeout=0.05),
                         spec.options.model_validate({"mode": "poll"}), SYSTEM_CLOCK)
    loop = asyncio.get_running_loop()

    def garble():
        for _ in range(os.read(master, 100).count(b"\n")):
            os.write(master, b"\xf8\x80\x1e\xfe\r\n")

    async with _running(driver, Collector()):
        loop.add_reader(master, garble)
        try:
            await wait_until(lambda: driver.health.frames_rejected >= 8, 3, "eight garbled replies")
        finally:
            loop.remove_reader(master)
    assert "check baud rate/parity" in driver.health.last_error
    assert driver.health.extra["unanswered"] >= 5


@pytest.mark.parametrize("kind", ["file", "directory", "/dev/null"])
async def test_a_path_that_is_not_a_serial_port_says_so(tmp_path, kind):
    """A typo'd path to a file, a folder or another device: 'Inappropriate ioctl for device' means nothing to
    a technician."""
    path = {"file": tmp_path / "ttyUSB0.txt", "directory": tmp_path, "/dev/null": Path("/dev/null")}[kind]
    if kind == "file":
        path.write_text("")
    driver = registry.get("mitutoyo").driver(instrument("caliper-1", "mitutoyo", str(path)), None, SYSTEM_CLOCK)
    async with _running(driver, Collector()):
        await wait_until(lambda: driver.health.last_error, 2, "open error")
    assert f"{path} is not a serial port" in driver.health.last_error
    assert "ioctl" not in driver.health.last_error


def test_probe_stops_at_a_path_that_is_not_a_serial_port(tmp_path, capsys):
    from floorwatch.gateway.cli import main

    assert main(["probe", "/dev/null", "--listen", "0.05", "--timeout", "0.05"]) == 2
    err = capsys.readouterr().err
    assert err.count("is not a serial port") == 1, err


async def test_rs485_mode_on_an_adapter_without_it_says_so(pty_pair):
    """The kernel answers 'Inappropriate ioctl' to RS-485 mode on an adapter without it: that is not 'not a
    serial port', and the fix is in the configuration."""
    _, path = pty_pair
    cfg = instrument("counter-1", "indicator", path, serial={"rs485": True})
    driver = registry.get("indicator").driver(cfg, None, SYSTEM_CLOCK)
    async with _running(driver, Collector()):
        await wait_until(lambda: driver.health.last_error, 2, "open error")
    assert "does not support the kernel's RS-485 mode" in driver.health.last_error
    assert "rs485 = false" in driver.health.last_error


async def test_readable_frames_of_another_protocol_point_at_the_driver_not_the_baud_rate(pty_pair):
    """Readable text that is rejected means the port settings are right and the driver is wrong (an A&D
    balance configured as a Mitutoyo gauge): sending the technician to the baud rate wastes their time."""
    master, path = pty_pair
    driver = registry.get("mitutoyo").driver(instrument("caliper-1", "mitutoyo", path), None, SYSTEM_CLOCK)
    async with _running(driver, Collector()):
        await wait_until(lambda: driver.health.connected, 3, "connection")
        os.write(master, b"ST,+001234.5  g\r" * 5)
        await wait_until(lambda: driver.health.frames_rejected >= 5, 3, "five rejected frames")
    error = driver.health.last_error
    assert "readable text" in error and "ST,+001234.5  g" in error and "driver" in error, error
    assert "baud" not in error


async def test_lines_with_another_line_end_are_named_as_such(pty_pair):
    """A balance set to end its lines with CR only, read by a driver that expects CR LF: the lines run together
    into over-long junk. The advice is the line end, not the baud rate."""
    master, path = pty_pair
    spec = registry.get("mtsics")
    driver = spec.driver(instrument("scale-1", "mtsics", path), spec.options.model_validate({"mode": "continuous"}),
                         SYSTEM_CLOCK)
    async with _running(driver, Collector()):
        await wait_until(lambda: driver.health.connected, 3, "connection")
        os.write(master, b"S S     100.00 g\r" * 90)
        await wait_until(lambda: driver.health.frames_rejected >= 5, 3, "five rejected runs")
    error = driver.health.last_error
    assert "end with CR" in error and "expects CR LF" in error, error
    assert "baud" not in error
