"""``floorwatch check-config FILE``: every mistake on its own line (file: key: what and how to fix)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from floorwatch.drivers import registry
from floorwatch.edge.config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="gateway configuration (TOML)")


def run(args: argparse.Namespace) -> int:
    try:
        config = registry.load_checked(args.file)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        print(f"{args.file}: {len(exc.problems)} problem(s); nothing was started", file=sys.stderr)
        return 1
    print(
        f"{args.file}: ok — gateway {config.gateway.site}/{config.gateway.line}/{config.gateway.id}, "
        f"{len(config.instruments)} instrument(s), {len(config.characteristics)} characteristic(s), "
        f"broker {config.mqtt.host}:{config.mqtt.port}{' (TLS)' if config.mqtt.tls else ''}"
    )
    return 0
