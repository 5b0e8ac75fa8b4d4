"""Benchmark of the serial protocol parsers: frames decoded per second, one CPU core.

Each driver's parser decodes one typical frame of its protocol over and over. The named peer, timed in the
same run on the same frames, is the least any parser must do: ``float()`` of the frame's number, cut out
with one precompiled regular expression (no validation, no status, no unit). The ratio says what the
parser's checks cost on top of reading the number at all.

Run: ``python3 bench/bench_parsers.py`` (``--n`` frames per parser, ``--repeat`` rounds; the fastest round
counts). The figures in docs/benchmarks.md ("Serial parsers") come from this script.
"""

from __future__ import annotations

import argparse
import platform
import re
import time
from collections.abc import Callable

from floorwatch.drivers import registry
from floorwatch.drivers.xk3190 import encode as xk_encode
from floorwatch.edge.model import Measurement

FRAMES: dict[str, bytes] = {
    "mtsics": b"S S     100.00 g\r\n",
    "aandd": b"ST,+001234.5  g\r\n",
    "mitutoyo": b"01A+0000.123\r",
    "indicator": b"ST,GS,+  4.876kg\r\n",
    "xk3190": xk_encode(12.34, 2),
}
NUMBER = re.compile(rb"[-+]?\s*\d+(?:\.\d+)?")


def peer(frame: bytes) -> float:
    """The named peer: the number in the frame, and nothing else."""
    match = NUMBER.search(frame)
    return float(match.group().replace(b" ", b"")) if match else float("nan")


def rate(fn: Callable[[bytes], object], frame: bytes, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(n):
            fn(frame)
        best = min(best, time.perf_counter() - started)
    return n / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="frames per parser per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the fastest counts")
    args = parser.parse_args(argv)
    print(f"Python {platform.python_version()} on {platform.machine()}, {args.n} frames x {args.repeat} rounds")
    print(f"{'parser':<10} {'frames/s':>12} {'peer frames/s':>14} {'parser/peer':>12}")
    for name, frame in FRAMES.items():
        spec = registry.get(name)
        parse = spec.parser(spec.options.model_validate({}) if spec.options else None)
        decoded = parse(frame)
        assert isinstance(decoded, Measurement), f"{name}: the benchmark frame does not decode: {decoded!r}"
        ours, theirs = rate(parse, frame, args.n, args.repeat), rate(peer, frame, args.n, args.repeat)
        print(f"{name:<10} {ours:>12,.0f} {theirs:>14,.0f} {ours / theirs:>11.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
