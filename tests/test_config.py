"""Configuration: the shipped example is valid, and every kind of mistake gets one readable line
(file, key path, what is wrong and the fix)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from floorwatch.edge.config import ConfigError, load_config, parse_config, parse_size

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "gateway" / "example.toml"
BASE = tomllib.loads(EXAMPLE.read_text())


def broken(mutate) -> str:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(ConfigError) as exc:
        parse_config(data, "gateway.toml")
    return str(exc.value)


def test_example_is_valid():
    config = load_config(EXAMPLE)
    assert [c.name for c in config.characteristics] == ["bore_diameter", "net_weight", "parts_produced"]
    assert config.spool.max_bytes == 512 * 1024**2
    assert config.mqtt.tls and config.mqtt.port == 8883
    assert config.spool_path() == Path("/var/lib/floorwatch/spool.sqlite")


def _set(path, value):
    def mutate(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _drop(path):
    def mutate(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


CASES = {
    "usl below lsl": (_set(("characteristics", 1, "usl"), 240.0),
                      "gateway.toml: characteristics[1].usl: usl (240) must be greater than lsl (247.5)"),
    "unknown key with a close match": (_set(("mqtt", "usrname"), "x"),
                                       "gateway.toml: mqtt.usrname: unknown key; did you mean 'username'?"),
    "key in the wrong table": (_set(("instruments", 0, "baudrate"), 9600),
                               "gateway.toml: instruments[0].baudrate: unknown key; it belongs in the "
                               "[instruments[0].serial] table"),
    "unsupported baud rate": (_set(("instruments", 1, "serial", "baudrate"), 9601),
                              "gateway.toml: instruments[1].serial.baudrate: must be 300, 600, 1200, 2400, "
                              "4800, 9600, 19200, 38400, 57600 or 115200 (got 9601)"),
    "characteristic fed by a missing instrument": (
        _set(("characteristics", 0, "instrument"), "caliper-2"),
        "gateway.toml: characteristics[0].instrument: no instrument named 'caliper-2'; did you mean 'caliper-1'?"),
    "unknown rule": (_set(("characteristics", 0, "rules"), ["nelson_9"]),
                     "gateway.toml: characteristics[0].rules: unknown rule 'nelson_9'; did you mean"),
    "not a broker url": (_set(("mqtt", "url"), "http://broker:1883"),
                         "gateway.toml: mqtt.url: 'http://broker:1883' is not a broker URL; write "
                         "mqtt://host:1883 or mqtts://host:8883"),
    "bad disk budget": (_set(("spool", "max_bytes"), "lots"),
                        'gateway.toml: spool.max_bytes: \'lots\' is not a size; write bytes as an integer or '
                        'e.g. "512 MiB", "2 GB"'),
    "tiny disk budget": (_set(("spool", "max_bytes"), "10 KiB"), "spool.max_bytes: max_bytes (10240) is below 1 MiB"),
    "missing site": (_drop(("gateway", "site")), "gateway.toml: gateway.site: required key is missing"),
    "two password sources": (_set(("mqtt", "password_env"), "PW"),
                             "gateway.toml: mqtt.password_file: give password_file or password_env, not both"),
    "TLS files without TLS": (_set(("mqtt", "url"), "mqtt://broker:1883"),
                              "gateway.toml: mqtt.url: TLS files are set but the URL is not mqtts://"),
    "instrument nowhere": (lambda d: [d["instruments"][0].pop(k) for k in ("port", "simulate")],
                           "instruments[0]: instrument 'caliper-1' needs 'port' (serial device) or 'host'"),
    "duplicate characteristic": (lambda d: d["characteristics"].append(dict(d["characteristics"][0])),
                                 "gateway.toml: characteristics[3].name: 'bore_diameter' is already used by "
                                 "characteristics[0]"),
    "two characteristics on one channel": (
        lambda d: d["characteristics"].append({**d["characteristics"][0], "name": "bore_2"}),
        "gateway.toml: characteristics[3].channel: 'caliper-1' channel '' already feeds 'bore_diameter'"),
    "nominal outside the spec": (_set(("characteristics", 0, "nominal"), 13.0),
                                 "characteristics[0].nominal: nominal (13) must lie within the spec limits"),
    "bad bind address": (_set(("web", "bind"), "8080"),
                         "gateway.toml: web.bind: '8080' is not host:port"),
    "name with a space": (_set(("gateway", "site"), "plant 2"),
                          "gateway.toml: gateway.site: must be 1-64 letters, digits"),
    "half-given control limits": (_set(("characteristics", 0, "control", "center"), 12.0),
                                  "characteristics[0].control: give both 'center' and 'sigma' or neither"),
    "subgroup too large": (_set(("characteristics", 1, "subgroup_size"), 11),
                           "characteristics[1].subgroup_size: Input should be less than or equal to 10"),
    "client certificate without key": (_set(("mqtt", "cert_file"), "/etc/floorwatch/client.crt"),
                                       "mqtt.cert_file: a client certificate needs both cert_file and key_file"),
    "no instruments": (_set(("instruments",), []), "gateway.toml: instruments: List should have at least 1 item"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_configuration_is_explained(case):
    mutate, expected = CASES[case]
    message = broken(mutate)
    assert expected in message
    assert "\n" not in message  # one problem, one line


def test_all_problems_are_listed_at_once():
    def two(d):
        d["mqtt"]["usrname"] = "x"
        d["web"]["bind"] = "nowhere"
    data = copy.deepcopy(BASE)
    two(data)
    with pytest.raises(ConfigError) as exc:
        parse_config(data, "gateway.toml")
    assert len(exc.value.problems) == 2


def test_unreadable_files_say_so(tmp_path):
    with pytest.raises(ConfigError, match="no such file; copy gateway/example.toml"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nsite=1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)


def test_password_comes_from_file_or_environment(tmp_path, monkeypatch):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    data = copy.deepcopy(BASE)
    data["mqtt"]["password_file"] = str(secret)
    assert parse_config(data).mqtt.password() == "s3cret"
    del data["mqtt"]["password_file"]
    data["mqtt"]["password_env"] = "FW_TEST_PW"
    cfg = parse_config(data)
    monkeypatch.delenv("FW_TEST_PW", raising=False)
    with pytest.raises(ConfigError, match="environment variable FW_TEST_PW is not set"):
        cfg.mqtt.password()
    monkeypatch.setenv("FW_TEST_PW", "from-env")
    assert cfg.mqtt.password() == "from-env"


def test_sizes():
    assert parse_size("1.5 KiB") == 1536 and parse_size("3 MB") == 3_000_000
    with pytest.raises(ValueError):
        parse_size("12 parsecs")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "floorwatch.gateway.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60)


def test_check_config_accepts_the_example():
    result = _cli("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "ok — gateway dongguan-2/line-3/gw-01, 3 instrument(s), 3 characteristic(s)" in result.stdout


def test_check_config_rejects_and_exits_nonzero(tmp_path):
    text = EXAMPLE.read_text().replace('lsl = 247.5', 'lsl = 260.0').replace('driver = "mtsics"', 'driver = "mtsic"')
    bad = tmp_path / "gateway.toml"
    bad.write_text(text)
    result = _cli("check-config", str(bad))
    assert result.returncode == 1
    assert "gateway.toml: characteristics[1].usl: usl (255) must be greater than lsl (260)" in result.stderr
    fixed = tmp_path / "gateway.toml"
    fixed.write_text(text.replace("lsl = 260.0", "lsl = 247.5"))
    result = _cli("check-config", str(fixed))
    assert result.returncode == 1
    assert "gateway.toml: instruments[1].driver: no driver named 'mtsic'; did you mean 'mtsics'?" in result.stderr


def test_every_key_is_documented():
    """docs/configuration.md lists every key the models accept (regenerate the table when adding one)."""
    from pydantic import BaseModel

    from floorwatch.edge import config as c

    doc = (ROOT / "docs" / "configuration.md").read_text()
    models = [m for m in vars(c).values() if isinstance(m, type) and issubclass(m, BaseModel)
              and m.__module__ == c.__name__ and not m.__name__.startswith("_") and m is not c.GatewayConfig]
    missing = [f"{m.__name__}.{k}" for m in models for k in m.model_fields if f"| `{k}` |" not in doc]
    assert not missing, f"undocumented configuration keys: {missing}"
    tables = [k for k in c.GatewayConfig.model_fields if f"`[{k}]`" not in doc and f"`[[{k}]]`" not in doc]
    assert not tables, f"undocumented tables: {tables}"


BRIDGE_EXAMPLE = ROOT / "bridge" / "example.toml"


def test_check_config_says_it_checked_a_gateway_configuration():
    result = _cli("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "example.toml: gateway configuration ok — gateway dongguan-2/line-3/gw-01" in result.stdout


def test_check_config_recognises_and_accepts_the_shipped_bridge_configurations():
    """check-config used to read the bridge's example as a gateway file and report eleven errors."""
    for path in (BRIDGE_EXAMPLE, ROOT / "deploy" / "cloud" / "bridge.toml"):
        result = _cli("check-config", str(path))
        assert result.returncode == 0, result.stderr
        assert f"{path}: bridge configuration ok — broker mqtts://" in result.stdout
        assert "subscription $share/floorwatch-bridge/floorwatch/v1/+/+/+/#" in result.stdout
        assert result.stderr == ""


def test_check_config_gives_a_broken_bridge_configuration_the_bridge_s_own_errors(tmp_path):
    text = (BRIDGE_EXAMPLE.read_text().replace("batch_size = 5000", "batch_size = 0")
            .replace('group = "floorwatch-bridge"', 'grup = "floorwatch-bridge"')
            .replace('url = "mqtts://broker.example.com:8883"', 'url = "http://broker.example.com"'))
    bad = tmp_path / "bridge.toml"
    bad.write_text(text)
    result = _cli("check-config", str(bad))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "bridge.toml: mqtt.url: 'http://broker.example.com' is not a broker URL; write mqtt://host:1883 or "
        "mqtts://host:8883",
        "bridge.toml: mqtt.grup: unknown key; did you mean 'group'?",
        "bridge.toml: influxdb.batch_size: Input should be greater than or equal to 1 (got 0)",
        f"{bad}: 3 problem(s) in this bridge configuration; nothing was started",
    ]


def test_check_config_says_what_a_file_that_is_neither_or_both_kinds_lacks(tmp_path):
    neither = tmp_path / "neither.toml"
    neither.write_text('[mqtt]\nurl = "mqtt://broker:1883"\n[gatway]\nid = "gw-01"\n')
    result = _cli("check-config", str(neither))
    assert result.returncode == 1
    assert f"{neither}: neither a gateway configuration (needs [gateway], [[instruments]]" in result.stderr
    assert "nor a bridge configuration (has [influxdb]" in result.stderr
    assert "[gatway] is no table of either (did you mean [gateway]?)" in result.stderr
    both = tmp_path / "both.toml"
    both.write_text(EXAMPLE.read_text() + '\n[influxdb]\nurl = "http://influxdb:8086"\n')
    result = _cli("check-config", str(both))
    assert result.returncode == 1
    assert "has settings of a gateway ([gateway], [[instruments]], [[characteristics]]" in result.stderr
    assert "and of the bridge ([influxdb]); each has a file of its own" in result.stderr
