"""``floorwatch bridge``: its configuration is checked before anything starts, with clear errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from floorwatch.bridge.config import load_bridge_config, parse_bridge_config
from floorwatch.edge.config import ConfigError, load_config
from floorwatch.edge.model import Reading, encode_batch
from floorwatch.gateway.cli import main

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_check_accepts_a_valid_config_and_reads_its_secrets(tmp_path, capsys):
    (tmp_path / "token").write_text("secret-token\n")
    path = write(tmp_path, f"""
[bridge]
gateway_configs = ["{ROOT / 'gateway' / 'example.toml'}"]
[mqtt]
url = "mqtt://broker:1883"
group = "plant-a"
[influxdb]
url = "http://influxdb:8086"
token_file = "{tmp_path / 'token'}"
""")
    assert main(["bridge", "--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    measured = [c for c in load_config(ROOT / "gateway" / "example.toml").characteristics if c.kind == "measurement"]
    assert "$share/plant-a/floorwatch/v1/+/+/+/#" in out and f"spec limits for {len(measured)} characteristic(s)" in out
    assert load_bridge_config(path).influxdb.token() == "secret-token"


def test_every_mistake_is_one_clear_line(tmp_path, capsys):
    path = write(tmp_path, """
[mqtt]
url = "http://broker"
dead_letter_topic = "floorwatch/v1/dead"
grup = "x"
[influxdb]
batch_size = 0
token_file = "/nonexistent/token"
""")
    assert main(["bridge", "--config", str(path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "bridge.toml: mqtt.url: 'http://broker' is not a broker URL; write mqtt://host:1883" in err
    assert "bridge.toml: mqtt.grup: unknown key" in err
    assert "bridge.toml: influxdb.batch_size: Input should be greater than or equal to 1 (got 0)" in err
    assert "problem(s); the bridge was not started" in err


def test_dead_letters_must_not_come_back_through_the_subscription():
    try:
        parse_bridge_config({"mqtt": {"dead_letter_topic": "floorwatch/v1/dead"}}, "b.toml")
    except ConfigError as exc:
        assert "dead_letter_topic 'floorwatch/v1/dead' lies under the subscription" in str(exc)
    else:
        raise AssertionError("a dead-letter topic under the subscription was accepted")


def test_missing_secret_and_missing_file_are_named(tmp_path, capsys):
    path = write(tmp_path, '[influxdb]\ntoken_file = "/nonexistent/token"\n')
    assert main(["bridge", "--config", str(path), "--check"]) == 1
    assert "influxdb.token_file: cannot read /nonexistent/token" in capsys.readouterr().err
    assert main(["bridge", "--config", str(tmp_path / "nope.toml")]) == 1
    assert "no such file; copy bridge/example.toml" in capsys.readouterr().err


def test_the_shipped_example_is_valid():
    config = load_bridge_config(ROOT / "bridge" / "example.toml")
    assert config.mqtt.subscription == "$share/floorwatch-bridge/floorwatch/v1/+/+/+/#"
    assert config.mqtt.session_expiry > 0 and config.influxdb.gzip


def test_the_command_runs_the_bridge_until_sigterm(mosquitto, victoria, tmp_path):
    path = write(tmp_path, f"""
[mqtt]
url = "{mosquitto.url}"
client_id = "bridge-cli-test"
[influxdb]
url = "{victoria.url}"
linger = 0.01
""")
    proc = subprocess.Popen([sys.executable, "-m", "floorwatch.gateway.cli", "bridge", "--config", str(path)],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 15
        while not any("subscribing to $share/floorwatch-bridge/" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, f"the bridge did not subscribe: {lines}"
            time.sleep(0.05)
        time.sleep(0.3)  # the SUBSCRIBE is on its way before anything is published
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        rows = [Reading(1_700_000_000_000_000_000 + i, i, "caliper-1", "bore_diameter", 12.0, "mm")
                for i in range(1, 51)]
        pub.publish("floorwatch/v1/s1/l1/g1/readings", json.dumps(encode_batch(rows)), qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        while sum(len(x["values"]) for x in victoria.export('{__name__="reading_seq"}')) < 50:
            assert time.monotonic() < deadline + 15, "readings did not arrive"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        reader.join(5)
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "stopped: 1 message(s), 50 point(s) written, 0 dead letter(s)" in err


def test_tls_files_that_cannot_be_loaded_are_named_before_the_start(tmp_path, capsys):
    """--check said "ok" for a CA file that does not exist, and the bridge then died with a traceback."""
    path = write(tmp_path, '[mqtt]\nurl = "mqtts://broker:8883"\nca_file = "/nonexistent/ca.crt"\n')
    assert main(["bridge", "--config", str(path), "--check"]) == 1
    assert "mqtt.ca_file: /nonexistent/ca.crt does not exist" in capsys.readouterr().err
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    path = write(tmp_path, f'[mqtt]\nurl = "mqtts://broker:8883"\nca_file = "{tmp_path / "ca.crt"}"\n'
                           f'cert_file = "{tmp_path / "ca.crt"}"\nkey_file = "{tmp_path / "key.pem"}"\n')
    assert main(["bridge", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"mqtt.ca_file: {tmp_path / 'ca.crt'} is not a readable PEM CA certificate" in err
    assert "the bridge was not started" in err
