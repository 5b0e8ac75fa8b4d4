"""Benchmark of the statistics core against the best existing tools, on one array of 10 million readings.

    python3 bench/bench_stats.py                 # the full run (about a minute)
    python3 bench/bench_stats.py --n 1000000     # quicker, less stable

Prints ns per reading (fastest, median and slowest of the interleaved rounds) and the ratio of the
fastest rounds to bottleneck's for:

- ``push_many`` of the compiled core: rolling mean, std, min, max, moving range, EWMA, CUSUM, spec checks
  and all twelve Nelson/Western Electric rules, in one pass (nothing precomputed, limits learned from the
  first 100 readings); and the same with per-point mean/std/min/max written out as arrays.
- bottleneck's ``move_mean + move_std + move_min + move_max`` (four separate passes, computing less);
- pandas' rolling mean, std, min and max;
- reading the memory alone (``numpy.add.reduce``), the floor for any one-pass method;
- ``push(x)`` called from Python once per reading, against a plain-Python Welford update and river's
  rolling statistics (``utils.Rolling(stats.Mean/Var)``, ``stats.RollingMin/Max``);
- memory per characteristic for several window sizes.

Needs the ``bench`` extra: ``pip install '.[bench]'`` (bottleneck, pandas, river). The figures recorded
for this project, with the machine they came from, are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floorwatch.edge import stats  # noqa: E402
from floorwatch.edge.signals import RULE_NAMES  # noqa: E402

BOTTLENECK = "bottleneck move_mean+move_std+move_min+move_max"
WELFORD = "plain-Python Welford update per call (mean+var only)"


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fastest wall time of ``repeat`` runs (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="readings in the array (default 10 million)")
    ap.add_argument("--window", type=int, default=1000, help="rolling window (default 1000)")
    ap.add_argument("--calls", type=int, default=1_000_000, help="readings for the per-call push(x) test")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds; each method keeps its fastest")
    args = ap.parse_args()

    import bottleneck as bn
    import pandas as pd
    import river
    from river import stats as rstats
    from river import utils as rutils

    n, w = args.n, args.window
    rng = np.random.default_rng(2024)
    x = rng.normal(10.0, 0.01, n)  # e.g. a bore diameter in mm
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, bottleneck {bn.__version__}, "
          f"pandas {pd.__version__}, river {river.__version__}; statistics core: {stats.IMPLEMENTATION}")
    print(f"{n:,} readings, window {w}, {args.repeat} interleaved rounds: fastest, median and slowest round\n")

    # Every method is a case; the cases run in interleaved rounds and each keeps its fastest round, so
    # that a busy moment on the machine does not favour whichever method ran at a quiet one.
    cases: list[tuple[str, Callable[[], object], int, str, str, bool]] = []  # name, fn, count, note, group, repeat

    def case(name: str, fn: Callable[[], object], count: int, note: str = "", group: str = "array",
             repeat: bool = True) -> None:
        cases.append((name, fn, count, note, group, repeat))

    # --- whole-array throughput ------------------------------------------------------------------------
    case("read memory only (numpy.add.reduce)", lambda: np.add.reduce(x), n, "floor for one pass")

    def bottleneck_four() -> None:
        bn.move_mean(x, w)
        bn.move_std(x, w, ddof=1)
        bn.move_min(x, w)
        bn.move_max(x, w)

    case(BOTTLENECK, bottleneck_four, n, "4 passes, 4 output arrays")

    series = pd.Series(x)

    def pandas_rolling() -> None:
        r = series.rolling(w)
        r.mean()
        r.std()
        r.min()
        r.max()

    case("pandas rolling mean+std+min+max", pandas_rolling, n, "4 passes")

    def fused(rules: tuple[str, ...], with_series: bool = False) -> Callable[[], object]:
        rs = stats.RollingStats(window=w, lsl=9.97, usl=10.03, rules=rules, baseline=100)

        def go() -> object:
            rs.reset()
            return rs.push_many_series(x) if with_series else rs.push_many(x)

        return go

    case("floorwatch push_many, all 12 rules + EWMA + CUSUM + spec", fused(RULE_NAMES), n,
         "1 pass, per-point rule bitmask")
    case("floorwatch push_many, default 4 rules", fused(("nelson_1", "nelson_2", "nelson_3", "nelson_5")), n,
         "1 pass")
    case("floorwatch push_many_series (+ mean/std/min/max arrays)", fused(RULE_NAMES, True), n,
         "1 pass, bottleneck's outputs + all rules")

    sub = x[:200_000]
    ref = stats.reference.RollingStats(window=w, lsl=9.97, usl=10.03, rules=RULE_NAMES, baseline=100)
    case("pure-Python reference push_many", lambda: ref.push_many(sub), len(sub), f"on {len(sub):,} readings",
         repeat=False)

    # --- one call per reading from Python --------------------------------------------------------------
    values = x[: args.calls].tolist()
    rs = stats.RollingStats(window=w, lsl=9.97, usl=10.03, rules=RULE_NAMES, baseline=100)

    def per_call_core() -> None:
        rs.reset()
        push = rs.push
        for v in values:
            push(v)

    def per_call_welford() -> None:
        # cumulative (not windowed) Welford: the least a Python-level update can do
        count, mean, m2 = 0, 0.0, 0.0
        for v in values:
            count += 1
            d = v - mean
            mean += d / count
            m2 += d * (v - mean)

    def per_call_loop() -> None:
        for _v in values:
            pass

    calls = len(values)
    case("(empty Python for-loop over the same list)", per_call_loop, calls, "loop overhead alone", "call")
    case("floorwatch push(x) per call, everything updated", per_call_core, calls, "", "call")
    case(WELFORD, per_call_welford, calls, "cumulative, no window", "call")

    river_n = min(calls, 200_000)
    river_values = values[:river_n]

    def per_call_river() -> None:
        mean = rutils.Rolling(rstats.Mean, window_size=w)
        var = rutils.Rolling(rstats.Var, window_size=w, ddof=1)
        lo = rstats.RollingMin(window_size=w)
        hi = rstats.RollingMax(window_size=w)
        for v in river_values:
            mean.update(v)
            var.update(v)
            lo.update(v)
            hi.update(v)

    case("river Rolling(Mean)+Rolling(Var)+RollingMin+RollingMax", per_call_river, river_n,
         f"on {river_n:,} readings", "call", repeat=False)

    times: dict[str, list[float]] = {c[0]: [] for c in cases}
    for round_no in range(args.repeat):
        for name, fn, _count, _note, _group, repeat in cases:
            if round_no and not repeat:
                continue
            times[name].append(best_of(fn, 1))
    # per case: fastest round, median round, slowest round (ns per reading)
    rows = [(name, [t / count * 1e9 for t in sorted(times[name])], group, note)
            for name, _fn, count, note, group, _r in cases]
    ns_bn = next(r[1] for r in rows if r[0] == BOTTLENECK)
    ns_welford = next(r[1] for r in rows if r[0] == WELFORD)

    # --- report --------------------------------------------------------------------------------------
    # The ratio is fastest against fastest (the least disturbed rounds); the median and the slowest
    # round show how much the machine's other work moved the figures during this run.
    width = max(len(r[0]) for r in rows)
    for group, title, base in (("array", "whole array", ns_bn), ("call", "one call per reading", ns_welford)):
        ref = "vs bottleneck" if group == "array" else "vs Welford"
        print(f"{title:<{width}}  {'ns/reading':>10}  {'median':>7}  {'slowest':>7}  {ref:>13}  note")
        for name, ns, g, note in rows:
            if g == group:
                print(f"  {name:<{width - 2}}  {ns[0]:>10.1f}  {statistics.median(ns):>7.1f}  {ns[-1]:>7.1f}"
                      f"  {base[0] / ns[0]:>12.2f}x  {note}")
        print()

    print("memory per characteristic (compiled core, object and buffers):")
    for window in (25, 1000, 100_000):
        for k in (1, 5):
            core = stats.RollingStats(window=window, subgroup_size=k)
            print(f"  window {window:>7,}, subgroup {k}: {core.__sizeof__():>10,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
