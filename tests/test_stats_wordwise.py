"""The compiled core's fast paths held to the reference on long streams that fire every rule.

The compiled core judges the chart rules for up to 48 points at a time on bit words (``_chart_words``)
and falls back to one point at a time (``_chart_point``) right after control limits are set and for
states it did not produce itself. The property tests use short streams; these use thousands of
readings built to fire every rule often, with runs that cross the 48-point blocks, points exactly on
the zone boundaries, rejected readings, subgroups, and pushes cut into pieces of every awkward size.
Both implementations must give identical bitmasks and identical state, with the chart loop's pairs of
doubles computed by SSE2 (x86-64) and by plain C (everywhere else).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from floorwatch.edge import stats
from floorwatch.edge.signals import RULE_NAMES
from floorwatch.edge.stats import reference, rules

ROOT = Path(__file__).resolve().parents[1]

# Pieces around the compiled core's block of 48 readings.
PIECES = (1, 2, 47, 48, 49, 95, 96, 97, 300)


def eventful(rng: np.random.Generator, n: int) -> np.ndarray:
    """Readings around 0 (σ about 1) made of stretches that make every rule fire: whole numbers (points
    exactly on the ±1σ/±2σ/±3σ boundaries), long runs on one side, ramps, alternation, flat stretches."""
    parts: list[np.ndarray] = []
    total = 0
    while total < n:
        kind = rng.integers(7)
        size = int(rng.integers(1, 90))
        if kind == 0:
            part = rng.normal(0.0, rng.choice([0.3, 1.0, 2.5]), size)
        elif kind == 1:
            part = rng.integers(-4, 5, size).astype(float)
        elif kind == 2:
            part = rng.choice([-1.0, 1.0]) * (rng.uniform(0.0, 2.5, size) + rng.choice([0.0, 1.0, 2.0]))
        elif kind == 3:
            part = np.cumsum(rng.uniform(0.0, 0.4, size)) * rng.choice([-1.0, 1.0]) + rng.normal(0, 1)
        elif kind == 4:
            part = rng.choice([-1.0, 1.0]) * np.resize([0.5, -0.5], size) * rng.choice([1.0, 2.5]) + rng.normal(0, 0.3)
        elif kind == 5:
            part = np.full(size, float(rng.integers(-3, 4)))
        else:
            part = rng.normal(0.0, 0.2, size)
            part[rng.random(size) < 0.2] = np.nan
        parts.append(part)
        total += size
    return np.concatenate(parts)[:n]


def push_in_pieces(rs, values: np.ndarray, ok: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    out, i = [], 0
    while i < len(values):
        size = int(rng.choice(PIECES))
        out.append(rs.push_many(values[i:i + size], None if ok is None else ok[i:i + size]))
        i += size
    return np.concatenate(out)


CONFIGS = [
    dict(window=50, center=0.0, sigma=1.0),  # limits given: zone boundaries at whole numbers
    dict(window=200, baseline=30),  # limits learned: set in the middle of a block
    dict(window=60, subgroup_size=3, center=0.0, sigma=1.0),
    dict(window=100, subgroup_size=2, baseline=10),
    dict(window=1000, center=0.2, sigma=0.7, lsl=-2.0, usl=2.0, ewma_lambda=0.05, cusum_k=0.0),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_long_streams_give_identical_bits_and_state(config, seed):
    rng = np.random.default_rng(seed)
    values = eventful(rng, 6000)
    ok = rng.random(len(values)) > 0.03 if seed == 1 else None
    kw = dict(config, rules=RULE_NAMES)
    c, p = stats.RollingStats(**kw), reference.RollingStats(**kw)
    mc = push_in_pieces(c, values, ok, rng)
    mp = p.push_many(values, ok)
    assert np.array_equal(mc, mp)
    assert c.state() == p.state()
    series = stats.RollingStats(**kw).push_many_series(values, ok)  # the same loop, writing figures too
    assert np.array_equal(series["rules"], mp)
    if config.get("subgroup_size", 1) == 1 and config.get("sigma") == 1.0:
        fired = np.bitwise_or.reduce(mp)
        assert rules.names(fired & rules.RULE_MASK) == list(RULE_NAMES)  # every rule was exercised


@pytest.mark.parametrize("enabled", [("we_1",), ("nelson_2", "we_3"), ("nelson_4", "nelson_7", "nelson_8")])
def test_only_enabled_rules_reported_on_long_streams(enabled):
    rng = np.random.default_rng(7)
    values = eventful(rng, 3000)
    kw = dict(window=80, center=0.0, sigma=1.0, rules=enabled)
    c, p = stats.RollingStats(**kw), reference.RollingStats(**kw)
    mc, mp = c.push_many(values), p.push_many(values)
    assert np.array_equal(mc, mp)
    fired = int(np.bitwise_or.reduce(mc))
    assert fired & rules.RULE_MASK & ~rules.mask_of(enabled) == 0
    assert fired & rules.mask_of(enabled) == rules.mask_of(enabled)  # and the enabled ones do fire


# States the core never produces itself (a hand-edited state file): the compiled core must still do
# exactly what the reference does, which it does one point at a time.
ODD_STATES = [
    dict(has_prev=0, run_up=3, alt_run=4, last_dir=1),
    dict(run_above=-5, run_below=7),
    dict(alt_run=0, last_dir=-1),
    dict(last_dir=4),
    dict(h2_hi=11, h1_lo=40),
    dict(t1="-0x1.0p+0"),
    dict(run_above=1_000_000, within_run=20, beyond_run=9),
]


@pytest.mark.parametrize("changes", ODD_STATES, ids=lambda c: ",".join(c))
def test_hand_made_states_continue_like_the_reference(changes):
    rng = np.random.default_rng(11)
    values = eventful(rng, 700)
    kw = dict(window=40, center=0.0, sigma=1.0, rules=RULE_NAMES)
    start = stats.RollingStats(**kw)
    start.push_many(values[:100])
    state = start.state()
    state["scalars"].update(changes)
    c, p = stats.RollingStats.from_state(state), reference.RollingStats.from_state(state)
    mc = push_in_pieces(c, values[100:], None, rng)
    mp = p.push_many(values[100:])
    assert np.array_equal(mc, mp)
    assert c.state() == p.state()


def test_compiled_core_uses_sse2_pairs_on_x86_64():
    """The x86-64 build takes the SSE2 pairs (every x86-64 processor has SSE2); elsewhere plain C."""
    from floorwatch.edge import _stats_core

    expected = "sse2" if platform.machine() in ("x86_64", "AMD64") else "portable"
    assert _stats_core.PAIRS == expected


PORTABLE_CHECK = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("floorwatch.edge._stats_core", sys.argv[1])
core = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core)
assert core.PAIRS == "portable", core.PAIRS
sys.modules["floorwatch.edge._stats_core"] = core
from floorwatch import edge
edge._stats_core = core
from floorwatch.edge import stats
assert stats.IMPLEMENTATION == "compiled" and issubclass(stats.RollingStats, core.Core)
sys.path.insert(0, sys.argv[2])
import test_stats_wordwise as t
for seed in range(2):
    for config in t.CONFIGS:
        t.test_long_streams_give_identical_bits_and_state(config, seed)
for changes in t.ODD_STATES:
    t.test_hand_made_states_continue_like_the_reference(changes)
print("portable pairs match the reference")
"""


def test_portable_pairs_match_the_reference(tmp_path):
    """Where there is no SSE2 (the Raspberry Pi's ARM), the chart loop's pairs of doubles are plain C.
    Build the core that way (``-DFW_NO_SIMD``) and hold it to the reference on the same long streams."""
    shutil.copy(ROOT / "ext" / "_stats_core.pyx", tmp_path)
    (tmp_path / "setup.py").write_text(
        "import numpy\nfrom Cython.Build import cythonize\nfrom setuptools import Extension, setup\n"
        "setup(ext_modules=cythonize([Extension('_stats_core', ['_stats_core.pyx'],"
        " include_dirs=[numpy.get_include()],"
        " define_macros=[('FW_NO_SIMD', '1'), ('NPY_NO_DEPRECATED_API', 'NPY_1_7_API_VERSION')])],"
        " language_level=3, quiet=True))\n")
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (built,) = tmp_path.glob("_stats_core*.so")
    check = subprocess.run([sys.executable, "-c", PORTABLE_CHECK, str(built), str(ROOT / "tests")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-3000:]
    assert "portable pairs match the reference" in check.stdout
