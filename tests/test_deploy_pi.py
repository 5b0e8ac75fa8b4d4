"""The Raspberry Pi side of deploy/: the install script run into a throwaway root, the systemd unit checked
by systemd itself, the udev naming helper, shellcheck on every script, and the compose file checked by
docker-compose's own validator.

The install script changes nothing outside ``--root``: what it would do to the system (create the user,
change ownership, reload udev/systemd) it prints as ``skipped (--root): COMMAND``, and these tests check
those lines. The pip step is left out (``--no-pip``: no network here); ``make test-arm64`` runs the
script with its pip step for real in an arm64 root.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness._util import require_binary

ROOT = Path(__file__).resolve().parents[1]
PI = ROOT / "deploy" / "pi"
CLOUD = ROOT / "deploy" / "cloud"
INSTALL = PI / "install.sh"
UNIT = "/etc/systemd/system/floorwatch.service"

# What install.sh lays down: path under the root -> mode
LAID = {
    "etc/floorwatch/gateway.toml": 0o640,
    "etc/floorwatch/gateway.toml.example": 0o640,
    "etc/systemd/system/floorwatch.service": 0o644,
    "etc/systemd/journald.conf.d/floorwatch.conf": 0o644,
    "etc/udev/rules.d/99-floorwatch.rules": 0o644,
    "usr/local/sbin/floorwatch-name-device": 0o755,
}


def install(root: Path, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["sh", str(INSTALL), "--root", str(root), "--no-pip", "--arch", "arm64", *extra],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def tree(root: Path) -> dict[str, str]:
    """Every file and link under root with its content (or link target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_text(errors="replace")
    return out


def test_install_lays_down_config_unit_udev_journald_and_data_dir(tmp_path):
    result = install(tmp_path)
    for rel, mode in LAID.items():
        path = tmp_path / rel
        assert path.is_file(), rel
        assert path.stat().st_mode & 0o777 == mode, (rel, oct(path.stat().st_mode))
    assert (tmp_path / "etc/floorwatch/gateway.toml").read_text() == (ROOT / "gateway/example.toml").read_text()
    assert (tmp_path / "etc/systemd/system/floorwatch.service").read_text() == (PI / "floorwatch.service").read_text()
    for d in ("var/lib/floorwatch", "etc/floorwatch"):
        assert (tmp_path / d).is_dir() and (tmp_path / d).stat().st_mode & 0o777 == 0o750, d
    # enabled in the staged tree, as systemctl enable does
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants/floorwatch.service"
    assert os.readlink(wants) == UNIT
    # nothing was done to the system: each system step is printed instead
    skipped = [line.removeprefix("skipped (--root): ") for line in result.stdout.splitlines()
               if line.startswith("skipped (--root): ")]
    useradd = next(s for s in skipped if s.startswith("useradd "))
    assert re.search(r"--system\b", useradd) and "--groups dialout" in useradd and useradd.endswith(" floorwatch")
    assert "--shell /usr/sbin/nologin" in useradd
    assert "chown floorwatch:floorwatch /var/lib/floorwatch" in skipped
    assert "chown root:floorwatch /etc/floorwatch" in skipped
    assert "systemctl daemon-reload" in skipped
    assert "skipped: apt-get" in result.stdout and "skipped: virtual environment" in result.stdout


def test_rerun_upgrades_in_place_and_keeps_configuration_names_and_spool(tmp_path):
    install(tmp_path)
    config = tmp_path / "etc/floorwatch/gateway.toml"
    config.write_text(config.read_text().replace('id = "gw-01"', 'id = "gw-07"'))
    rules = tmp_path / "etc/udev/rules.d/99-floorwatch.rules"
    rules.write_text(rules.read_text() + 'SUBSYSTEM=="tty", ENV{ID_SERIAL_SHORT}=="X1", SYMLINK+="floorwatch/a"\n')
    spool = tmp_path / "var/lib/floorwatch/spool.sqlite"
    spool.write_bytes(b"spooled records")
    unit = tmp_path / "etc/systemd/system/floorwatch.service"
    unit.write_text("# an old version of the unit\n")
    example = tmp_path / "etc/floorwatch/gateway.toml.example"
    example.write_text("# an old example\n")
    before = tree(tmp_path)

    result = install(tmp_path)
    after = tree(tmp_path)
    assert 'id = "gw-07"' in config.read_text()
    assert "kept /etc/floorwatch/gateway.toml" in result.stdout
    assert rules.read_text().endswith('SYMLINK+="floorwatch/a"\n')
    assert spool.read_bytes() == b"spooled records"
    # ours is replaced: the unit and the reference example are the new versions
    assert unit.read_text() == (PI / "floorwatch.service").read_text()
    assert example.read_text() == (ROOT / "gateway/example.toml").read_text()
    assert set(after) == set(before)
    # a third run changes nothing at all
    install(tmp_path)
    assert tree(tmp_path) == after


def _verify_root(tmp_path: Path) -> Path:
    """An installed root in which systemd-analyze can resolve everything the unit names.

    ``--no-pip`` leaves no virtual environment, and verify checks that ExecStart is an executable file:
    an executable stands in for it at the exact path. The unit's targets (network-online.target …) are
    systemd's own: the host's unit directory is copied into the root so that verify finds them there.
    """
    root = tmp_path / "root"
    install(root)
    exe = root / "opt/floorwatch/venv/bin/floorwatch"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    return root


def test_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = require_binary("systemd-analyze")
    root = _verify_root(tmp_path)
    result = subprocess.run([analyze, "verify", f"--root={root}", UNIT], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys or bad values: it only warns, so any output is a failure
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr
    # and the check is not vacuous: a typo in the unit is reported
    unit = root / UNIT.lstrip("/")
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    broken = subprocess.run([analyze, "verify", f"--root={root}", UNIT], capture_output=True, text=True, timeout=60)
    assert "ProtectSystem" in broken.stderr or "protect system" in broken.stderr.lower()


def test_unit_is_hardened_and_systemd_rates_its_exposure_low(tmp_path):
    analyze = require_binary("systemd-analyze")
    parser = configparser.RawConfigParser(strict=False, empty_lines_in_values=False)
    parser.optionxform = str
    values: dict[str, list[str]] = {}
    for line in (PI / "floorwatch.service").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    expected = {
        "Type": ["notify"], "Restart": ["always"], "ProtectSystem": ["strict"], "ProtectHome": ["yes"],
        "NoNewPrivileges": ["yes"], "PrivateTmp": ["yes"], "DevicePolicy": ["closed"],
        "ReadWritePaths": ["/var/lib/floorwatch"], "User": ["floorwatch"], "SupplementaryGroups": ["dialout"],
        "ExecStart": ["/opt/floorwatch/venv/bin/floorwatch run --config /etc/floorwatch/gateway.toml"],
    }
    for key, value in expected.items():
        assert values.get(key) == value, (key, values.get(key))
    assert int(values["WatchdogSec"][0]) > 0
    assert sorted(values["DeviceAllow"]) == sorted(f"char-{d} rw" for d in ("ttyUSB", "ttyACM", "ttyAMA", "ttyS"))
    root = _verify_root(tmp_path)
    result = subprocess.run([analyze, "security", "--offline=true", f"--root={root}", "--no-pager", UNIT],
                            capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for floorwatch.service: ([0-9.]+)", result.stdout)
    assert m, result.stdout[-2000:] + result.stderr
    assert float(m.group(1)) <= 2.5, result.stdout


def test_unit_gives_the_gateway_file_descriptors_to_spare_beyond_what_the_web_page_may_hold():
    """The web page holds at most max_connections sockets, plus what asyncio accepts in one go before it
    refuses them; the unit's limit must leave the spool, the ports and the broker plenty beside that."""
    from floorwatch.edge.config import WebConfig
    from floorwatch.gateway.web.server import ACCEPT_BACKLOG

    limits = [line.partition("=")[2].strip() for line in (PI / "floorwatch.service").read_text().splitlines()
              if line.startswith("LimitNOFILE=")]
    assert len(limits) == 1 and limits[0].isdigit(), limits
    assert int(limits[0]) >= 4 * (WebConfig().max_connections + ACCEPT_BACKLOG) + 1024, limits


def test_journald_dropin_limits_what_the_log_writes_to_the_sd_card():
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser.read_string((PI / "journald-floorwatch.conf").read_text())
    journal = parser["Journal"]
    assert journal["SystemMaxUse"] == "64M" and journal["SyncIntervalSec"] == "5m"
    assert journal["ForwardToSyslog"] == "no" and journal["Compress"] == "yes"
    assert set(journal) <= {"Storage", "Compress", "SystemMaxUse", "SystemKeepFree", "SystemMaxFileSize",
                            "RuntimeMaxUse", "MaxRetentionSec", "SyncIntervalSec", "RateLimitIntervalSec",
                            "RateLimitBurst", "ForwardToSyslog"}


def test_every_shell_script_passes_shellcheck():
    shellcheck = require_binary("shellcheck")
    scripts = sorted(p for p in (ROOT / "deploy").rglob("*.sh"))
    assert {p.name for p in scripts} >= {"install.sh", "name-device.sh", "gen-certs.sh", "add-gateway.sh",
                                         "test-arm64.sh", "init-floorwatch.sh"}
    result = subprocess.run([shellcheck, "--severity=style", *map(str, scripts)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout


# ------------------------------------------------------------------ udev naming

FT232R = """\
DEVNAME=/dev/ttyUSB0
SUBSYSTEM=tty
ID_BUS=usb
ID_VENDOR_ID=0403
ID_MODEL_ID=6001
ID_SERIAL_SHORT=A10K1234
ID_VENDOR=FTDI
ID_MODEL=FT232R_USB_UART
ID_USB_INTERFACE_NUM=00
ID_PATH=platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0
DEVLINKS=/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0
"""


def name_device(tmp_path: Path, props: str, *args: str) -> subprocess.CompletedProcess:
    """The helper with the attributes given as saved 'udevadm info --query=property' output."""
    props_file = tmp_path / "props.txt"
    props_file.write_text(props)
    return subprocess.run(["sh", str(PI / "name-device.sh"), "--rules", str(tmp_path / "99-floorwatch.rules"),
                           "--properties", str(props_file), *args], capture_output=True, text=True, timeout=30)


def rules_of(path: Path) -> list[str]:
    return [x for x in path.read_text().splitlines() if x.strip() and not x.lstrip().startswith("#")]


def test_name_device_shows_attributes_and_writes_one_rule_per_instrument(tmp_path):
    rules = tmp_path / "99-floorwatch.rules"
    shutil.copy(PI / "99-floorwatch.rules", rules)
    shown = name_device(tmp_path, FT232R, "/dev/ttyUSB0")
    assert shown.returncode == 0 and "A10K1234" in shown.stdout and "FT232R" in shown.stdout
    assert rules_of(rules) == []  # showing writes nothing

    written = name_device(tmp_path, FT232R, "/dev/ttyUSB0", "scale-1")
    assert written.returncode == 0, written.stderr
    assert rules_of(rules) == [
        'SUBSYSTEM=="tty", ENV{ID_BUS}=="usb", ENV{ID_VENDOR_ID}=="0403", ENV{ID_MODEL_ID}=="6001", '
        'ENV{ID_SERIAL_SHORT}=="A10K1234", ENV{ID_USB_INTERFACE_NUM}=="00", SYMLINK+="floorwatch/scale-1"'
    ]
    assert 'port = "/dev/floorwatch/scale-1"' in written.stdout
    # the header's examples are kept (they are comments, not rules)
    assert (PI / "99-floorwatch.rules").read_text() in rules.read_text()

    # a replacement adapter for the same instrument replaces its rule
    other = FT232R.replace("A10K1234", "B20Q5678")
    assert name_device(tmp_path, other, "/dev/ttyUSB1", "scale-1").returncode == 0
    assert len(rules_of(rules)) == 1 and "B20Q5678" in rules_of(rules)[0]
    # a second instrument gets its own line; one adapter cannot get two names
    assert name_device(tmp_path, FT232R, "/dev/ttyUSB0", "caliper-1").returncode == 0
    twice = name_device(tmp_path, FT232R, "/dev/ttyUSB0", "caliper-2")
    assert twice.returncode != 0 and "already named" in twice.stderr and "caliper-1" in twice.stderr
    assert len(rules_of(rules)) == 2


def test_name_device_names_serial_less_adapters_by_socket_and_refuses_what_it_cannot_name(tmp_path):
    ch340 = "\n".join(x for x in FT232R.splitlines() if not x.startswith("ID_SERIAL_SHORT")) + "\n"
    result = name_device(tmp_path, ch340, "/dev/ttyUSB0", "counter-1")
    assert result.returncode == 0 and "no serial number" in result.stderr
    assert rules_of(tmp_path / "99-floorwatch.rules") == [
        'SUBSYSTEM=="tty", ENV{ID_PATH}=="platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0", '
        'SYMLINK+="floorwatch/counter-1"'
    ]
    uart = "DEVNAME=/dev/ttyAMA0\nSUBSYSTEM=tty\nID_PATH=platform-fe201000.serial\n"
    refused = name_device(tmp_path, uart, "/dev/ttyAMA0", "gauge-1")
    assert refused.returncode != 0 and "not a USB adapter" in refused.stderr
    bad = name_device(tmp_path, FT232R, "/dev/ttyUSB0", "scale 1")
    assert bad.returncode != 0 and "not valid" in bad.stderr
    quoted = name_device(tmp_path, FT232R.replace("A10K1234", 'A1"x'), "/dev/ttyUSB0", "scale-9")
    assert quoted.returncode != 0 and "quote" in quoted.stderr


# ------------------------------------------------------------------ cloud compose file


def test_compose_file_is_valid_and_mounts_what_exists(tmp_path):
    compose = require_binary("docker-compose")
    result = subprocess.run([compose, "-f", str(CLOUD / "compose.yaml"), "--env-file", str(CLOUD / ".env.example"),
                             "config"], capture_output=True, text=True, timeout=60, cwd=CLOUD)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert set(config["services"]) == {"mosquitto", "influxdb-tokens", "influxdb", "grafana", "bridge"}
    assert config["services"]["bridge"]["command"] == ["floorwatch", "bridge", "--config",
                                                       "/etc/floorwatch/bridge.toml"]
    # every file or directory mounted from the repository is there (secrets and certificates are made
    # by the scripts at deployment time and are not)
    generated = ("/certs/", "/mosquitto/passwd")
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("/") and not any(g in source for g in generated):
                assert Path(source).exists(), f"{name} mounts {source}, which does not exist"
    # the broker is reachable only over TLS; InfluxDB only from the server itself
    ports = config["services"]["mosquitto"]["ports"]
    assert [p["target"] if isinstance(p, dict) else int(p.split(":")[-1]) for p in ports] == [8883]
    influx_ports = config["services"]["influxdb"]["ports"]
    assert all((p.get("host_ip") if isinstance(p, dict) else p.split(":")[0]) == "127.0.0.1" for p in influx_ports)
    # no secret in the compose file itself
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = subprocess.run([compose, "-f", str(CLOUD / "compose.yaml"), "--env-file", str(empty), "config"],
                             capture_output=True, text=True, timeout=60, cwd=CLOUD)
    assert missing.returncode != 0 and "INFLUXDB_ADMIN_PASSWORD" in missing.stderr


@pytest.mark.parametrize("name", ["influxdb-2x.yaml"])
def test_grafana_datasource_token_variable_is_the_one_compose_provides(name):
    """The provisioned datasource names an environment variable; compose's Grafana entrypoint sets it."""
    datasource = (ROOT / "dashboards/provisioning/datasources" / name).read_text()
    variables = set(re.findall(r"\$([A-Z][A-Z0-9_]+)", datasource))
    compose = (CLOUD / "compose.yaml").read_text()
    for var in variables:
        assert f"{var}=" in compose, f"{name} needs ${var}, which compose.yaml does not set for Grafana"


def test_cloud_bridge_config_is_accepted_by_the_bridge(tmp_path):
    """deploy/cloud/bridge.toml passes 'floorwatch bridge --check' once its container paths exist."""
    text = (CLOUD / "bridge.toml").read_text()
    # the check loads the CA for real: use one made by the shipped script
    subprocess.run(["sh", str(CLOUD / "gen-certs.sh"), "--out", str(tmp_path / "certs"), "--server", "mosquitto"],
                   check=True, capture_output=True, timeout=60)
    for container_path, local in (("/etc/floorwatch/ca.crt", tmp_path / "certs" / "ca.crt"),
                                  ("/run/floorwatch-tokens/write.token", tmp_path / "write.token")):
        assert container_path in text
        if not local.exists():
            local.write_text("a-token\n")
        text = text.replace(container_path, str(local))
    text = text.replace("/var/lib/floorwatch/", f"{tmp_path}/").replace("/var/log/floorwatch/", f"{tmp_path}/")
    conf = tmp_path / "bridge.toml"
    conf.write_text(text)
    env = dict(os.environ, FLOORWATCH_MQTT_PASSWORD="a-long-bridge-password")
    result = subprocess.run([sys.executable, "-m", "floorwatch.gateway.cli", "bridge", "--config", str(conf), "--check"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert "mqtts://mosquitto:8883" in result.stdout
