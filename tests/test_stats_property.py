"""The compiled core held to the pure-Python reference, and both held to numpy and to NIST certified values.

The two implementations perform the same floating-point operations in the same order (the compiled one
is built with ``-ffp-contract=off``), so the comparison is exact: identical rule bitmasks and identical
state, and snapshots equal within 1e-12 relative (they are in fact equal; the tolerance only absorbs NaN
comparison). The numerical tests check the rolling variance where sum/sum-of-squares shortcuts fail:
readings around 1e7 with 0.1 spread, over millions of pushes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from floorwatch.edge import stats
from floorwatch.edge.model import encode
from floorwatch.edge.signals import RULE_NAMES
from floorwatch.edge.stats import reference

FIELDS = ("mean", "std", "min", "max", "mr_bar", "sigma_within", "ewma", "ewma_ucl", "ewma_lcl",
          "cusum_pos", "cusum_neg", "center", "sigma", "ucl", "lcl", "cp", "cpk", "pp", "ppk",
          "xbar", "r", "s", "r_bar", "s_bar", "xbar_ucl", "r_ucl", "s_ucl")

base_values = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False),
    st.integers(-3, 3).map(float),  # ties: repeated values, points exactly on zone boundaries
    st.sampled_from([math.nan, math.inf, -math.inf]),
)


@st.composite
def scenarios(draw):
    k = draw(st.sampled_from([1, 1, 2, 3, 5]))
    window = draw(st.integers(2 * k, 40))
    offset = draw(st.sampled_from([0.0, 1e7, -2.5e9, 123.456]))
    scale = draw(st.sampled_from([1.0, 1e-3, 0.1]))
    raw = draw(st.lists(base_values, min_size=0, max_size=300))
    if draw(st.booleans()):  # a constant stretch
        raw = raw + [draw(st.integers(-2, 2)).__float__()] * draw(st.integers(1, 60))
    values = np.array([offset + scale * v for v in raw], dtype=np.float64)
    ok = np.array(draw(st.lists(st.booleans(), min_size=len(raw), max_size=len(raw))) or [], dtype=bool)
    if not draw(st.booleans()):
        ok = None
    limits = draw(st.one_of(st.none(), st.tuples(st.floats(-2, 2), st.floats(0.05, 3))))
    kw = dict(window=window, subgroup_size=k, rules=RULE_NAMES, baseline=draw(st.integers(2, 30)),
              ewma_lambda=draw(st.sampled_from([0.05, 0.2, 1.0])), cusum_k=draw(st.sampled_from([0.0, 0.5])),
              cusum_h=draw(st.sampled_from([1.0, 5.0])))
    if draw(st.booleans()):
        kw.update(lsl=offset - scale, usl=offset + scale)
    if limits is not None:
        kw.update(center=offset + scale * limits[0], sigma=scale * limits[1])
    return kw, values, ok


def assert_snapshots_close(a, b):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if math.isnan(x) or math.isnan(y):
            assert math.isnan(x) and math.isnan(y), f
        else:
            assert x == pytest.approx(y, rel=1e-12, abs=1e-300), f
    for f in ("n", "n_total", "n_rejected", "n_below_lsl", "n_above_usl", "rules", "baseline_done"):
        assert getattr(a, f) == getattr(b, f), f


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.data())
def test_compiled_equals_reference(scenario, data):
    kw, values, ok = scenario
    c, p = stats.RollingStats(**kw), reference.RollingStats(**kw)
    cut = data.draw(st.integers(0, len(values)))
    mc = np.concatenate([c.push_many(values[:cut], None if ok is None else ok[:cut]),
                         [c.push(float(x), True if ok is None else bool(ok[cut + i]))
                          for i, x in enumerate(values[cut:])]]).astype(np.uint32)
    mp = p.push_many(values, ok)
    assert np.array_equal(mc, mp)
    assert_snapshots_close(c.snapshot(), p.snapshot())
    assert c.state() == p.state()


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_window_figures_agree_with_numpy(scenario):
    kw, values, ok = scenario
    rs = stats.RollingStats(**kw)
    rs.push_many(values, ok)
    good = values[np.isfinite(values) & (True if ok is None else ok)]
    w = good[-kw["window"]:]
    s = rs.snapshot()
    assume(len(w) > 0)
    spread = float(np.ptp(w)) if len(w) else 0.0
    scale = max(abs(float(w.mean())), spread, 1.0)
    assert s.n == len(w) and s.n_total == len(good)
    assert (s.min, s.max) == (w.min(), w.max())
    assert s.mean == pytest.approx(w.mean(), abs=1e-12 * scale)
    if len(w) > 1:
        ref = float(np.std(w - w.mean(), ddof=1))
        assert s.std == pytest.approx(ref, rel=1e-7, abs=1e-12 * scale)
        assert s.mr_bar == pytest.approx(np.abs(np.diff(w)).mean(), rel=1e-9, abs=1e-12 * scale)


@pytest.mark.parametrize("window", [1000, 100_000])
def test_large_offset_over_millions_of_pushes(window):
    """Readings about 1e7 with 0.1 spread: a sum/sum-of-squares variance loses every digit here."""
    rng = np.random.default_rng(window)
    rs = stats.RollingStats(window=window, rules=RULE_NAMES)
    total = 3_000_000
    chunk = 500_000
    drift = 0.0
    for _ in range(0, total, chunk):
        x = 1e7 + drift + rng.uniform(-0.05, 0.05, chunk)
        drift += 0.37  # the level moves between chunks: the shift must follow it
        rs.push_many(x)
        w = x[-window:]
        s = rs.snapshot()
        assert s.std == pytest.approx(np.std(w - w.mean(), ddof=1), rel=1e-9)
        assert s.mean == pytest.approx(w.mean(), rel=1e-15)
        assert s.mr_bar == pytest.approx(np.abs(np.diff(w)).mean(), rel=1e-9)
        assert (s.min, s.max) == (w.min(), w.max())
    assert s.n_total == total
    # the naive formula on the same window, to show what the test guards against
    naive = math.sqrt(max(0.0, (np.sum(w * w) - np.sum(w) ** 2 / window) / (window - 1)))
    assert abs(naive - s.std) > 1e-3 * s.std


def test_reference_is_equally_stable_with_large_offsets():
    rng = np.random.default_rng(5)
    x = 1e7 + rng.uniform(-0.05, 0.05, 60_000)
    rs = reference.RollingStats(window=500, rules=[])
    rs.push_many(x)
    w = x[-500:]
    assert rs.snapshot().std == pytest.approx(np.std(w - w.mean(), ddof=1), rel=1e-9)


def nist_numacc(n_pairs: int, first: str, low: str, high: str) -> np.ndarray:
    """NIST StRD NumAcc2-4 as published: one value, then ``low``, ``high`` repeated ``n_pairs`` times."""
    return np.array([float(first)] + [float(low), float(high)] * n_pairs)


# (name, data, certified mean, certified standard deviation): NIST StRD univariate summary statistics.
NIST = [
    ("NumAcc1", np.array([10000001.0, 10000003.0, 10000002.0]), 10000002.0, 1.0),
    ("NumAcc2", nist_numacc(500, "1.2", "1.1", "1.3"), 1.2, 0.1),
    ("NumAcc3", nist_numacc(500, "1000000.2", "1000000.1", "1000000.3"), 1000000.2, 0.1),
    ("NumAcc4", nist_numacc(500, "10000000.2", "10000000.1", "10000000.3"), 10000000.2, 0.1),
]


@pytest.mark.parametrize("impl", ["compiled", "python"])
@pytest.mark.parametrize(("name", "data", "mean", "sd"), NIST, ids=[n[0] for n in NIST])
def test_nist_strd_certified_values(impl, name, data, mean, sd):
    cls = stats.RollingStats if impl == "compiled" else reference.RollingStats
    # once with the whole set in the window, once streamed through a window of its size after 5000
    # unrelated readings at another level (exercising the remove-update and the exact recomputation)
    for warmup in (0, 5000):
        rs = cls(window=len(data), rules=[])
        rs.push_many(np.full(warmup, -3.0e6) + np.arange(warmup) % 7)
        rs.push_many(data)
        s = rs.snapshot()
        # The decimal inputs themselves carry a representation error (~1e-9 relative to the spread for
        # NumAcc4): numpy's two-pass result on the same doubles is the achievable accuracy. Ask for 13
        # correct digits (log relative error >= 13) or, where the inputs cannot give that, numpy's own.
        best = np.std(data - data.mean(), ddof=1)
        assert s.mean == pytest.approx(mean, rel=1e-15)
        assert s.std == pytest.approx(sd, rel=1e-7)
        assert abs(s.std - sd) <= max(10 * abs(best - sd), 1e-13 * sd)


def test_snapshots_encode_identically_between_implementations():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, 500)
    kw = dict(window=37, subgroup_size=3, lsl=-2.0, usl=2.0, rules=RULE_NAMES, baseline=30)
    c, p = stats.RollingStats(**kw), reference.RollingStats(**kw)
    c.push_many(x)
    p.push_many(x)
    assert encode(c.snapshot(1, 2)) == encode(p.snapshot(1, 2))


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_per_point_series_match_reference_and_numpy(scenario):
    kw, values, ok = scenario
    c = stats.RollingStats(**kw).push_many_series(values, ok)
    p = reference.RollingStats(**kw).push_many_series(values, ok)
    for key in ("rules", "mean", "std", "min", "max"):
        assert np.array_equal(c[key], p[key], equal_nan=key != "rules"), key
    good = np.isfinite(values) & (True if ok is None else ok)
    assert np.array_equal(c["rules"], stats.RollingStats(**kw).push_many(values, ok))
    accepted = values[good]
    w = kw["window"]
    for i in np.flatnonzero(good)[-5:]:  # the figures after the last few accepted readings
        upto = int(good[: i + 1].sum())
        win = accepted[max(0, upto - w):upto]
        assert (c["min"][i], c["max"][i]) == (win.min(), win.max())
        scale = max(abs(float(win.mean())), float(np.ptp(win)), 1.0)
        assert c["mean"][i] == pytest.approx(win.mean(), abs=1e-12 * scale)
