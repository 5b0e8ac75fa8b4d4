"""``floorwatch run --config FILE``: the gateway service (what the systemd unit starts).

Runs until SIGTERM or SIGINT, then flushes the spool, publishes the offline presence and exits 0. A
configuration mistake exits 1 before anything starts, with one line per problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from floorwatch.drivers import registry
from floorwatch.edge.config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, default=Path("/etc/floorwatch/gateway.toml"),
                        help="gateway configuration (TOML); default /etc/floorwatch/gateway.toml")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="override [gateway] log_level")


def run(args: argparse.Namespace) -> int:
    from floorwatch.gateway.events import EventLog
    from floorwatch.gateway.service import run_gateway

    try:
        config = registry.load_checked(args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        print(f"{args.config}: {len(exc.problems)} problem(s); the gateway was not started", file=sys.stderr)
        return 1
    events = EventLog(level=args.log_level or config.gateway.log_level)
    return run_gateway(config, events=events)
