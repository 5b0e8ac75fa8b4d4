"""Benchmark of the statistics core against the best existing tools, on one array of 10 million readings.

    python3 bench/bench_stats.py                 # the full run (about a minute)
    python3 bench/bench_stats.py --n 1000000     # quicker, less stable

Prints ns per reading and the ratio to bottleneck for:

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
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge import stats  # noqa: E402
from edge.config import RULE_NAMES  # noqa: E402


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
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest counts")
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
    print(f"{n:,} readings, window {w}, best of {args.repeat}\n")

    rows: list[tuple[str, float, str]] = []

    def per_reading(name: str, seconds: float, count: int, note: str = "") -> float:
        ns = seconds / count * 1e9
        rows.append((name, ns, note))
        return ns

    # --- whole-array throughput ------------------------------------------------------------------------
    per_reading("read memory only (numpy.add.reduce)", best_of(lambda: np.add.reduce(x), args.repeat), n,
                "floor for one pass")

    def bottleneck_four() -> None:
        bn.move_mean(x, w)
        bn.move_std(x, w, ddof=1)
        bn.move_min(x, w)
        bn.move_max(x, w)

    ns_bn = per_reading("bottleneck move_mean+move_std+move_min+move_max",
                        best_of(bottleneck_four, args.repeat), n, "4 passes, 4 output arrays")

    series = pd.Series(x)

    def pandas_rolling() -> None:
        r = series.rolling(w)
        r.mean()
        r.std()
        r.min()
        r.max()

    per_reading("pandas rolling mean+std+min+max", best_of(pandas_rolling, max(1, args.repeat - 1)), n,
                "4 passes")

    def fused(rules: tuple[str, ...]) -> Callable[[], object]:
        rs = stats.RollingStats(window=w, lsl=9.97, usl=10.03, rules=rules, baseline=100)

        def go() -> object:
            rs.reset()
            return rs.push_many(x)

        return go

    per_reading("floorwatch push_many, all 12 rules + EWMA + CUSUM + spec", best_of(fused(RULE_NAMES),
                args.repeat), n, "1 pass, per-point rule bitmask")
    per_reading("floorwatch push_many, default 4 rules", best_of(fused(("nelson_1", "nelson_2", "nelson_3",
                "nelson_5")), args.repeat), n, "1 pass")

    rs_rec = stats.RollingStats(window=w, lsl=9.97, usl=10.03, rules=RULE_NAMES, baseline=100)

    def fused_with_series() -> None:
        rs_rec.reset()
        rs_rec.push_many_series(x)

    per_reading("floorwatch push_many_series (+ mean/std/min/max arrays)", best_of(fused_with_series,
                args.repeat), n, "1 pass, same outputs as bottleneck + rules")

    sub = x[:200_000]
    ref = stats.reference.RollingStats(window=w, lsl=9.97, usl=10.03, rules=RULE_NAMES, baseline=100)
    per_reading("pure-Python reference push_many", best_of(lambda: ref.push_many(sub), 1), len(sub),
                f"on {len(sub):,} readings")

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
    loop_ns = best_of(per_call_loop, args.repeat) / calls * 1e9
    per_reading("floorwatch push(x) per call, everything updated", best_of(per_call_core, args.repeat),
                calls, f"incl. {loop_ns:.0f} ns Python loop")
    per_reading("plain-Python Welford update per call (mean+var only)", best_of(per_call_welford,
                args.repeat), calls, "cumulative, no window")

    river_n = min(calls, 200_000)
    river_values = values[:river_n]

    def per_call_river() -> None:
        mean = rutils.Rolling(rstats.Mean(), window_size=w)
        var = rutils.Rolling(rstats.Var(ddof=1), window_size=w)
        lo = rstats.RollingMin(window_size=w)
        hi = rstats.RollingMax(window_size=w)
        for v in river_values:
            mean.update(v)
            var.update(v)
            lo.update(v)
            hi.update(v)

    per_reading("river Rolling(Mean)+Rolling(Var)+RollingMin+RollingMax", best_of(per_call_river, 1),
                river_n, f"on {river_n:,} readings")

    # --- report --------------------------------------------------------------------------------------
    width = max(len(r[0]) for r in rows)
    print(f"{'method':<{width}}  {'ns/reading':>10}  {'vs bottleneck':>13}  note")
    for name, ns, note in rows:
        print(f"{name:<{width}}  {ns:>10.1f}  {ns_bn / ns:>12.2f}x  {note}")

    print("\nmemory per characteristic (compiled core, object and buffers):")
    for window in (25, 1000, 100_000):
        for k in (1, 5):
            core = stats.RollingStats(window=window, subgroup_size=k)
            print(f"  window {window:>7,}, subgroup {k}: {core.__sizeof__():>10,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
