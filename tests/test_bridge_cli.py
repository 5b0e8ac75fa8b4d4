"""``floorwatch bridge``: its configuration is checked before anything starts, with clear errors."""

from __future__ import annotations

from pathlib import Path

from edge.config import ConfigError
from gateway.bridge import load_bridge_config, parse_bridge_config
from gateway.cli import main

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
    assert "$share/plant-a/floorwatch/v1/+/+/+/#" in out and "spec limits for 2 characteristic(s)" in out
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
    assert "no such file; copy gateway/bridge.example.toml" in capsys.readouterr().err


def test_the_shipped_example_is_valid():
    config = load_bridge_config(ROOT / "gateway" / "bridge.example.toml")
    assert config.mqtt.subscription == "$share/floorwatch-bridge/floorwatch/v1/+/+/+/#"
    assert config.mqtt.session_expiry > 0 and config.influxdb.gzip
