"""``floorwatch demo``: the whole gateway on simulated instruments, shown live in the terminal.

Why: one command that proves the installation works and shows what Floorwatch does before any instrument
is wired. The demo writes a configuration from ``gateway/example.toml`` (every instrument simulated; the
caliper's process drifts — tool wear — so that run rules fire within a minute and parts go out of
tolerance within about two), a temporary data directory, and starts a private Mosquitto on a free loopback
port when the ``mosquitto`` binary is installed (otherwise it runs spool-only and says so). It runs the real
gateway — drivers on pseudo-terminals and Modbus TCP, statistics, rules, alerts, spool, MQTT, the local web
page — and prints readings, statistics and alerts as they happen, until Ctrl-C or ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parent.parent / "example.toml"
SCENARIOS = {"caliper-1": "drift", "scale-1": "normal", "counter-1": "counter"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: run until Ctrl-C)")
    parser.add_argument("--no-broker", action="store_true",
                        help="do not start Mosquitto: run spool-only (data stays in the spool)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the demo directory (configuration, spool, state, log) afterwards")
    parser.add_argument("--dir", type=Path, default=None,
                        help="use this directory for the demo's files instead of a temporary one")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_config_text(example: str, data_dir: Path, broker_port: int, web_port: int) -> str:
    """The example configuration, rewritten for the demo: local broker, temporary data, every
    instrument simulated. Comments are kept so that the file shows what a real one looks like.

    >>> text = demo_config_text(EXAMPLE.read_text(), Path("/tmp/d"), 1883, 8080)
    >>> 'url = "mqtt://127.0.0.1:1883"' in text and "password_file" not in text
    True
    """
    text = re.sub(r'(?m)^data_dir = .*$', f'data_dir = "{data_dir}"', example)
    text = re.sub(r'(?m)^bind = .*$', f'bind = "127.0.0.1:{web_port}"', text)
    mqtt = (f'[mqtt]\nurl = "mqtt://127.0.0.1:{broker_port}"   # the demo\'s private Mosquitto\n'
            'topic_prefix = "floorwatch/v1"\n\n')
    text = re.sub(r'(?ms)^\[mqtt\]\n.*?(?=^\[spool\])', mqtt, text)
    if not re.search(r'(?m)^hysteresis = ', text):
        # a drifting value sits on the USL for a while: show that the alert does not flap
        text = re.sub(r'(?m)^(clear_after = .*)$', r'\1\nhysteresis = 0.05           # back inside by 5 % of the '
                      r'tolerance before a point counts towards clearing', text, count=1)
    # every instrument simulated, with the scenario the demo wants to show
    blocks = re.split(r'(?m)^(?=\[\[instruments\]\])', text)
    out = []
    for block in blocks:
        m = re.search(r'(?m)^name = "([^"]+)"', block) if block.startswith("[[instruments]]") else None
        if m:
            scenario = SCENARIOS.get(m.group(1), "normal")
            if re.search(r'(?m)^simulate = ', block):
                block = re.sub(r'(?m)^simulate = "[^"]*"', f'simulate = "{scenario}"', block)
            else:
                block = block.replace(f'name = "{m.group(1)}"\n', f'name = "{m.group(1)}"\nsimulate = "{scenario}"\n', 1)
        out.append(block)
    return "".join(out)


class PrivateBroker:
    """A Mosquitto for the demo only: loopback, anonymous, no persistence, its own directory."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.log = workdir / "mosquitto.log"
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             f"log_dest file {self.log}\nmax_queued_messages 0\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}; see {self.log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within 10 s; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (str(p) for p in (Path("/usr/sbin/mosquitto"), Path("/usr/local/sbin/mosquitto")) if p.exists()), None)


def _f(v: float, digits: int = 5) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


class LiveView:
    """Prints what the gateway does: a line per characteristic every ``every`` seconds, alerts at once."""

    def __init__(self, out: Any = None, every: float = 2.0) -> None:
        self.out = out or sys.stdout
        self.every = every
        self.readings = 0
        self.last: dict[str, Any] = {}
        self.snapshots: dict[str, Any] = {}
        self.alerts_raised = 0
        self.alerts_cleared = 0
        self._color = self.out.isatty()

    def _say(self, text: str) -> None:
        print(time.strftime("%H:%M:%S ") + text, file=self.out, flush=True)

    def __call__(self, kind: str, record: Any) -> None:
        if kind == "readings":
            self.readings += len(record)
            for r in record:
                self.last[r.characteristic] = r
        elif kind == "stats":
            self.snapshots[record.characteristic] = record
        elif kind == "alert":
            raised = record.state.value == "raised"
            if raised:
                self.alerts_raised += 1
            else:
                self.alerts_cleared += 1
            mark = "ALERT " if raised else "clear "
            if self._color:
                mark = ("\033[1;31m" if raised else "\033[32m") + mark + "\033[0m"
            self._say(f"{mark}{record.severity.value:8} {record.subject}/{record.kind}: {record.message}")
        elif kind == "event":
            self._say(f"event  {record.subject} {record.state}: {record.message}")

    def summary_lines(self) -> list[str]:
        lines = []
        for name, r in sorted(self.last.items()):
            s = self.snapshots.get(name)
            figures = ""
            if s is not None:
                figures = (f"  n={s.n:<5} mean={_f(s.mean, 6):<9} sd={_f(s.std, 3):<8} Cpk={_f(s.cpk, 3):<6}"
                           f" {'learning limits' if not s.baseline_done else ''}")
            lines.append(f"{name:<16} {_f(r.value, 7):>10} {r.unit:<4} {r.status.value:<9}{figures}")
        return lines

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self._say(f"{self.readings} readings so far")
            for line in self.summary_lines():
                print("         " + line, file=self.out, flush=True)


def run(args: argparse.Namespace) -> int:
    from floorwatch.edge.config import ConfigError, load_config
    from floorwatch.gateway.events import EventLog
    from floorwatch.gateway.service import Gateway

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="floorwatch-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    broker: PrivateBroker | None = None
    publish = not args.no_broker
    if not publish:
        print("--no-broker: running spool-only (everything the gateway would publish stays in its spool).")
    else:
        binary = _find_mosquitto()
        if binary is None:
            print("mosquitto is not installed: running spool-only (everything is kept in the spool). "
                  "Install it with 'sudo apt-get install -y mosquitto' to see data go out over MQTT.")
            publish = False
        else:
            for attempt in range(3):  # a free port can be taken by someone else before Mosquitto binds it
                broker = PrivateBroker(binary, workdir)
                try:
                    broker.start()
                    break
                except RuntimeError as exc:
                    broker.stop()
                    if attempt == 2:
                        print(f"could not start the private Mosquitto ({exc}): running spool-only.")
                        broker, publish = None, False
    config_path = workdir / "demo.toml"
    config_path.write_text(demo_config_text(EXAMPLE.read_text(), workdir / "data", broker.port if broker else 1883,
                                            free_port()))
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    log_path = workdir / "gateway.log"
    print(f"demo directory: {workdir}  (configuration demo.toml, gateway log gateway.log, spool under data/)")
    if broker is not None:
        print(f"private Mosquitto on 127.0.0.1:{broker.port}; watch it with:\n"
              f"    mosquitto_sub -p {broker.port} -t '{config.mqtt.topic_prefix}/#' -v")
    print(f"status page: http://{config.web.bind}/   (or: floorwatch status --url http://{config.web.bind})")
    print("caliper-1 simulates tool wear: its bore diameter drifts up until it leaves the tolerance.")
    print("Ctrl-C to stop." if args.duration is None else f"running for {args.duration:g} s.")

    view = LiveView()
    exit_code = 0
    with open(log_path, "a") as log_file:
        events = EventLog(stream=log_file, level="info")
        events.attach("floorwatch", "paho")
        gateway = Gateway(config, events=events, publish=publish)
        gateway.listeners.append(view)

        async def main() -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if args.duration is not None:
                loop.call_later(args.duration, stop.set)
            ticker = asyncio.create_task(view.run())
            try:
                return await gateway.run(stop)
            finally:
                ticker.cancel()

        try:
            exit_code = asyncio.run(main())
        finally:
            events.detach()
            if broker is not None:
                broker.stop()
    print(f"\nstopped: {view.readings} readings, {view.alerts_raised} alerts raised, "
          f"{view.alerts_cleared} cleared.")
    for line in view.summary_lines():
        print("  " + line)
    if not publish and (args.keep or args.dir is not None):
        print(f"spool-only run: the data is in {config.spool_path()}")
    if exit_code != 0:
        print(f"the gateway stopped with an error; see {log_path}", file=sys.stderr)
    if not args.keep and args.dir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif args.keep:
        print(f"kept {workdir}")
    return exit_code
