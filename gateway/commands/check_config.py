"""``floorwatch check-config FILE``: a gateway or a bridge configuration, each checked with its own rules;
every mistake on its own line (file: key: what and how to fix).

Which kind a file is, its content tells: the tables and ``[mqtt]`` keys that only one kind has (a gateway's
``[gateway]``, ``[[instruments]]``, ``[[characteristics]]``, …; a bridge's ``[influxdb]``, ``[bridge]``,
``[sequence]``, ``mqtt.group``, …). A file with both, or with neither, is said to be so rather than
checked against the wrong rules.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from floorwatch.bridge.config import EXAMPLE as BRIDGE_EXAMPLE
from floorwatch.bridge.config import BridgeConfig, BridgeMqtt, load_bridge_config
from floorwatch.drivers import registry
from floorwatch.edge.config import ConfigError, GatewayConfig, MqttConfig, read_toml

GATEWAY_EXAMPLE = "gateway/example.toml"


class ConfigKind(StrEnum):
    GATEWAY = "gateway"
    BRIDGE = "bridge"


@dataclass
class Recognised:
    """What a configuration file's content says it is: ``kind`` None when it has the marks of both kinds,
    or of neither; ``unknown`` are tables neither kind has."""

    kind: ConfigKind | None
    gateway_marks: list[str] = field(default_factory=list)
    bridge_marks: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def _table(name: str, value: object) -> str:
    return f"[[{name}]]" if isinstance(value, list) else f"[{name}]"


def recognise(data: dict[str, Any]) -> Recognised:
    """Tell a gateway configuration from a bridge configuration by the tables and [mqtt] keys only one has.

    >>> recognise({"influxdb": {}, "mqtt": {"group": "plant-a"}}).kind
    <ConfigKind.BRIDGE: 'bridge'>
    >>> recognise({"gateway": {}, "instruments": [{}], "mqtt": {"max_batch": 100}}).gateway_marks
    ['[gateway]', '[[instruments]]', 'mqtt.max_batch']
    >>> recognise({"mqtt": {"url": "mqtt://broker:1883"}}).kind is None
    True
    """
    gateway_tables = GatewayConfig.model_fields.keys() - BridgeConfig.model_fields.keys()
    bridge_tables = BridgeConfig.model_fields.keys() - GatewayConfig.model_fields.keys()
    shared = GatewayConfig.model_fields.keys() & BridgeConfig.model_fields.keys()
    found = Recognised(kind=None)
    for name, value in data.items():
        if name in gateway_tables:
            found.gateway_marks.append(_table(name, value))
        elif name in bridge_tables:
            found.bridge_marks.append(_table(name, value))
        elif name not in shared:
            found.unknown.append(name)
    mqtt = data.get("mqtt")
    if isinstance(mqtt, dict):
        gateway_keys = MqttConfig.model_fields.keys() - BridgeMqtt.model_fields.keys()
        bridge_keys = BridgeMqtt.model_fields.keys() - MqttConfig.model_fields.keys()
        found.gateway_marks += [f"mqtt.{k}" for k in mqtt if k in gateway_keys]
        found.bridge_marks += [f"mqtt.{k}" for k in mqtt if k in bridge_keys]
    if found.gateway_marks and not found.bridge_marks:
        found.kind = ConfigKind.GATEWAY
    elif found.bridge_marks and not found.gateway_marks:
        found.kind = ConfigKind.BRIDGE
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="gateway or bridge configuration (TOML)")


def run(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        data = read_toml(path, f"{GATEWAY_EXAMPLE} (a gateway) or {BRIDGE_EXAMPLE} (the bridge)")
    except ConfigError as exc:
        return _problems(path, exc, "")
    found = recognise(data)
    if found.kind is ConfigKind.BRIDGE:
        return _check_bridge(path)
    if found.kind is ConfigKind.GATEWAY:
        return _check_gateway(path)
    print(_unrecognised(path, found), file=sys.stderr)
    return 1


def _check_gateway(path: Path) -> int:
    try:
        config = registry.load_checked(path)
    except ConfigError as exc:
        return _problems(path, exc, " in this gateway configuration")
    print(
        f"{path}: gateway configuration ok — gateway {config.gateway.site}/{config.gateway.line}/"
        f"{config.gateway.id}, {len(config.instruments)} instrument(s), {len(config.characteristics)} "
        f"characteristic(s), broker {config.mqtt.host}:{config.mqtt.port}{' (TLS)' if config.mqtt.tls else ''}"
    )
    return 0


def _check_bridge(path: Path) -> int:
    try:
        config = load_bridge_config(path)
    except ConfigError as exc:
        return _problems(path, exc, " in this bridge configuration")
    print(f"{path}: bridge configuration ok — broker {config.mqtt.url}, subscription {config.mqtt.subscription}, "
          f"InfluxDB {config.influxdb.url} bucket {config.influxdb.bucket!r}")
    # The files it names (token, password, CA, the gateways' configurations) are on the bridge's server,
    # not necessarily here: the bridge's own --check reads them.
    print(f"{path}: its secrets, TLS files and {len(config.bridge.gateway_configs)} gateway configuration(s) "
          f"are read by 'floorwatch bridge --config {path} --check' where the bridge runs")
    return 0


def _problems(path: Path, exc: ConfigError, what: str) -> int:
    for line in exc.problems:
        print(line, file=sys.stderr)
    print(f"{path}: {len(exc.problems)} problem(s){what}; nothing was started", file=sys.stderr)
    return 1


def _unrecognised(path: Path, found: Recognised) -> str:
    if found.gateway_marks and found.bridge_marks:
        return (f"{path}: has settings of a gateway ({', '.join(found.gateway_marks)}) and of the bridge "
                f"({', '.join(found.bridge_marks)}); each has a file of its own: keep the gateway's as in "
                f"{GATEWAY_EXAMPLE} and the bridge's as in {BRIDGE_EXAMPLE}")
    known = sorted(GatewayConfig.model_fields.keys() | BridgeConfig.model_fields.keys())
    hints = []
    for name in found.unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"[{name}] is no table of either (did you mean [{close[0]}]?)" if close
                     else f"[{name}] is no table of either")
    return (f"{path}: neither a gateway configuration (needs [gateway], [[instruments]] and [[characteristics]]: "
            f"see {GATEWAY_EXAMPLE}) nor a bridge configuration (has [influxdb], and [bridge] or [sequence] as "
            f"needed: see {BRIDGE_EXAMPLE})" + (f"; {'; '.join(hints)}" if hints else ""))
