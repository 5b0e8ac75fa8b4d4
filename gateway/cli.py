"""The ``floorwatch`` command. Each subcommand lives in ``gateway/commands/<name>.py`` and defines
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status); it is imported only when used, so
that ``floorwatch check-config`` starts fast on a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module under floorwatch.gateway.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "version": ("version", "show the version and which statistics core is active"),
    "check-config": ("check_config", "validate a gateway or bridge configuration file"),
    "run": ("run", "run the gateway service"),
    "demo": ("demo", "run the gateway on simulated instruments and show what happens"),
    "status": ("status", "show a running gateway's state"),
    "analyze": ("analyze", "run the statistics core over a CSV file of readings"),
    "decode": ("decode", "show what a driver makes of captured frames"),
    "probe": ("probe", "find which instrument answers on a serial port or Modbus host"),
    "bridge": ("bridge", "run the MQTT -> InfluxDB bridge"),
    "dashboards": ("dashboards", "generate or upload the Grafana dashboards and alert rules"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="floorwatch",
        description="Floorwatch: factory-floor gauges, scales and counters to live SPC dashboards.",
    )
    parser.add_argument("--version", action="store_true", help="same as 'floorwatch version'")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            mod = importlib.import_module(f"floorwatch.gateway.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"floorwatch.gateway.commands.{module}":
                raise
            p.set_defaults(_missing=name)
            continue
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        args.command = "version"
        from floorwatch.gateway.commands import version

        return version.run(args)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(f"floorwatch {args._missing}: not available in this build", file=sys.stderr)
        return 2
    try:
        return args._run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
