"""``floorwatch run``, ``status`` and ``demo`` as a user (and systemd) runs them: real processes, real
signals, a real systemd notify socket, a real Mosquitto."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness._util import free_port

ROOT = Path(__file__).resolve().parent.parent


def floorwatch(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "floorwatch.gateway.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=path, **(env or {})))


def spawn(*args: str, env: dict | None = None, log: Path) -> subprocess.Popen:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "floorwatch.gateway.cli", *args], cwd=ROOT, stdout=fh,
                            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1",
                                                               **(env or {})))


CONFIG = """
[gateway]
site = "plant"
line = "l1"
id = "gw-cli"
data_dir = "{data}"

[[instruments]]
name = "caliper-1"
driver = "mitutoyo"
simulate = "normal"

[[characteristics]]
name = "bore_diameter"
instrument = "caliper-1"
unit = "mm"
lsl = 11.95
usl = 12.05

[mqtt]
url = "{url}"
username = "gw-cli"
password_env = "FW_TEST_MQTT_PASSWORD"

[spool]
flush_interval = 0.2

[web]
bind = "127.0.0.1:{web}"
"""


def test_run_under_systemd_notify_status_and_clean_sigterm(mosquitto, tmp_path):
    web = free_port()
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(data=tmp_path / "data", url=mosquitto.url, web=web))
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(0.2)
    log = tmp_path / "gateway.log"
    secret = "s3cret-Pa55word"
    proc = spawn("run", "--config", str(config), log=log,
                 env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000", "FW_TEST_MQTT_PASSWORD": secret})
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                "READY=1" in messages and messages.count("WATCHDOG=1") >= 2):
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                assert proc.poll() is None, log.read_text()
        assert "READY=1" in messages and messages.count("WATCHDOG=1") >= 2, messages
        # floorwatch status, from another terminal
        deadline = time.monotonic() + 15
        while True:
            st = floorwatch("status", "--url", f"http://127.0.0.1:{web}")
            if st.returncode == 0 and "connected" in st.stdout and re.search(r"bore_diameter\s+1[12]\.\d+ mm", st.stdout) \
                    and "broker: mqtt://127.0.0.1" in st.stdout and "NOT connected" not in st.stdout:
                break
            assert time.monotonic() < deadline, st.stdout + st.stderr
            time.sleep(0.3)
        assert "gateway plant/l1/gw-cli" in st.stdout
        assert re.search(r"caliper-1\s+mitutoyo \(sim normal\)\s+yes\s+\d+\s+0\s", st.stdout), st.stdout
        assert "spool: backlog" in st.stdout
        # what the driver knows beyond the counts reaches the technician (port settings, hints, notices)
        assert re.search(r"^  caliper-1: port settings: \d+ 8N1", st.stdout, re.M), st.stdout
        # --config finds the address in the configuration; --json gives the document
        js = floorwatch("status", "--config", str(config), "--json")
        assert js.returncode == 0 and '"characteristics"' in js.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    sock.close()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "STOPPING=1" in messages
    assert secret not in text  # secrets never reach the log
    lines = text.strip().splitlines()
    assert all(re.match(r"^ts=\S+ level=(debug|info|warning|error) event=\w+", line) for line in lines), lines
    assert any("event=gateway_stopped" in line for line in lines)


def test_status_says_clearly_when_no_gateway_answers():
    r = floorwatch("status", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert r.returncode == 1
    assert "no gateway answered" in r.stderr and "[web] bind" in r.stderr


def test_run_refuses_a_bad_configuration_with_one_line_per_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.format(data=tmp_path, url="mqtt://127.0.0.1:1", web=free_port())
                   .replace('usl = 12.05', 'usl = 11.0').replace('driver = "mitutoyo"', 'driver = "mitutoyoo"'))
    r = floorwatch("run", "--config", str(bad))
    assert r.returncode == 1
    assert "usl (11) must be greater than lsl (11.95)" in r.stderr
    r2 = floorwatch("run", "--config", str(tmp_path / "missing.toml"))
    assert r2.returncode == 1 and "no such file" in r2.stderr


def test_demo_shows_readings_statistics_and_alerts(tmp_path):
    r = floorwatch("demo", "--duration", "14", "--dir", str(tmp_path / "demo"), timeout=120)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "private Mosquitto on 127.0.0.1:" in out
    assert re.search(r"\d+ readings so far", out)
    assert re.search(r"bore_diameter\s+1[12]\.\d+ mm\s+ok\s+n=\d+\s+mean=", out)
    # the drift scenario fires drift and run rules within seconds of the baseline
    assert re.search(r"ALERT\s+warning\s+bore_diameter/(ewma|cusum|nelson_\d|we_\d)", out), out
    assert "event  gateway stopping" in out and "stopped:" in out
    assert (tmp_path / "demo" / "demo.toml").exists() and (tmp_path / "demo" / "gateway.log").exists()


def test_demo_without_a_broker_runs_spool_only(tmp_path):
    r = floorwatch("demo", "--duration", "3", "--no-broker", "--dir", str(tmp_path / "demo"), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "spool-only" in r.stdout and "Mosquitto" not in r.stdout.split("\n")[0]
    assert (tmp_path / "demo" / "data" / "spool.sqlite").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_stops_cleanly_on_signals(tmp_path, sig):
    log = tmp_path / "demo.log"
    proc = spawn("demo", "--no-broker", "--dir", str(tmp_path / "demo"), log=log)
    deadline = time.monotonic() + 20
    while "readings so far" not in log.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
        time.sleep(0.2)
    proc.send_signal(sig)
    assert proc.wait(20) == 0, log.read_text()
    assert "stopped:" in log.read_text()
