"""``floorwatch bridge --config FILE``: run the MQTT -> InfluxDB bridge until stopped (SIGTERM / Ctrl-C).

The configuration is a small TOML file of its own (commented example: ``bridge/example.toml``);
``--check`` validates it and exits, so a typo is found before a service is restarted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from floorwatch.edge.config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="bridge configuration (TOML)")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")


def run(args: argparse.Namespace) -> int:
    from floorwatch.bridge.config import load_bridge_config
    from floorwatch.bridge.service import Bridge
    from floorwatch.bridge.specs import SpecLimits

    try:
        config = load_bridge_config(args.config)
        specs = SpecLimits.load(config.bridge.gateway_configs)
        token = config.influxdb.token()
        password = config.mqtt.password()
        config.mqtt.tls_context()  # CA, certificate and key files load
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        print(f"{args.config}: {len(exc.problems)} problem(s); the bridge was not started", file=sys.stderr)
        return 1
    del token, password  # read once here so that a missing secret fails now, with its name
    if args.check:
        print(f"{args.config}: ok — broker {config.mqtt.url}, subscription {config.mqtt.subscription}, "
              f"InfluxDB {config.influxdb.url} bucket {config.influxdb.bucket!r}, "
              f"spec limits for {len(specs)} characteristic(s)")
        return 0
    logging.basicConfig(level=config.bridge.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bridge = Bridge(config)
    signal.signal(signal.SIGTERM, lambda *_: bridge.stopping.set())
    try:
        bridge.run()
    except KeyboardInterrupt:
        bridge.stop()
    c = bridge.counters
    logging.getLogger("floorwatch.bridge").info(
        "stopped: %d message(s), %d point(s) written, %d dead letter(s), %d duplicate(s), %d gap(s)",
        c.messages, c.points, c.dead_letters, c.duplicates, c.gaps)
    return 0
