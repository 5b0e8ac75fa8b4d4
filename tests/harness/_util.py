"""Shared helpers of the service fixtures: free ports, waiting for a port, clear errors for missing binaries."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

# binary -> Debian package that provides it
PACKAGES = {
    "mosquitto": "mosquitto",
    "mosquitto_sub": "mosquitto-clients",
    "mosquitto_pub": "mosquitto-clients",
    "mosquitto_passwd": "mosquitto",
    "docker-compose": "docker-compose",
    "influxd": "influxdb",
    "victoria-metrics": "victoria-metrics",
    "socat": "socat",
    "chromium": "chromium",
    "shellcheck": "shellcheck",
    "openssl": "openssl",
    "systemd-analyze": "systemd",
    "setpriv": "util-linux",
}


def require_binary(name: str) -> str:
    """Path of a service binary, or a failure (not a skip) naming the package to install."""
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if path is None:
        package = PACKAGES.get(name, name)
        pytest.fail(
            f"{name} is not installed; this test needs a real {name}. Install it with: "
            f"sudo apt-get install -y {package}   (or run 'make test', which installs it)",
            pytrace=False,
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0,
                  log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"service exited with {proc.returncode} before listening on {port}:\n{text}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spool_reports(spool) -> list[tuple[str, dict]]:
    """The spool's typed reports as ``(kind, detail)`` pairs: what the gateway publishes of each on
    ``events/spool``, so assertions read like the published events."""
    return [(event.kind, event.detail()) for event in spool.drain_events()]
