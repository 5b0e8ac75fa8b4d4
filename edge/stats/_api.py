"""What the compiled core and the pure-Python reference share: argument checks, snapshots, state files.

Both implementations keep exactly the same state variables (listed in ``SCALARS`` and ``ARRAYS``) and
update them with the same floating-point operations in the same order, so a state saved by one can be
restored by the other, and the reference is a line-by-line specification of the compiled core.
Everything here runs once per snapshot or per restart, never per reading.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from floorwatch.edge.model import StatsSnapshot
from floorwatch.edge.signals import RULE_NAMES, unknown_rule_message
from floorwatch.edge.stats import rules as _rules
from floorwatch.edge.stats.constants import B3, B4, C4, D2, D3, D4, MR_D2

STATE_FORMAT = "floorwatch.stats/1"

# Every scalar of the core's state, in the order of _get_scalars()/_set_scalars(); "i" integer, "f" float.
SCALARS: tuple[tuple[str, str], ...] = (
    ("n", "i"), ("pos", "i"), ("n_total", "i"), ("n_rejected", "i"), ("n_below", "i"), ("n_above", "i"),
    ("shift", "f"), ("mean_y", "f"), ("m2", "f"), ("m2_peak", "f"), ("mr_sum", "f"), ("last_x", "f"),
    ("pmax", "f"), ("pmin", "f"),
    ("sg_fill", "i"), ("g_pos", "i"), ("g_n", "i"), ("xbar", "f"), ("r", "f"), ("s", "f"),
    ("r_sum", "f"), ("s_sum", "f"),
    ("limits_known", "i"), ("b_n", "i"), ("b_spread_n", "i"), ("b_mean", "f"), ("b_spread_sum", "f"),
    ("b_last", "f"),
    ("center", "f"), ("sigma", "f"), ("sc", "f"), ("t1", "f"), ("t2", "f"), ("t3", "f"),
    ("ewma_z", "f"), ("ewma_w", "f"), ("ewma_a", "f"), ("ewma_ucl", "f"), ("ewma_lcl", "f"),
    ("ewma_const", "i"),
    ("cusum_p", "f"), ("cusum_n", "f"), ("cusum_hik", "f"), ("cusum_lok", "f"), ("cusum_h", "f"),
    ("has_prev", "i"), ("prev", "f"), ("run_above", "i"), ("run_below", "i"), ("run_up", "i"),
    ("run_down", "i"), ("alt_run", "i"), ("last_dir", "i"), ("within_run", "i"), ("beyond_run", "i"),
    ("h2_hi", "i"), ("h2_lo", "i"), ("h1_hi", "i"), ("h1_lo", "i"), ("last_rules", "i"),
)
SCALAR_NAMES = tuple(name for name, _ in SCALARS)
ARRAYS = ("buf", "smax", "smin", "sg_buf", "r_ring", "s_ring")

_PARAM_KEYS = ("window", "lsl", "usl", "subgroup_size", "rules", "center", "sigma", "baseline",
               "ewma_lambda", "ewma_l", "cusum_k", "cusum_h", "characteristic")


def _number(name: str, value: Any, *, allow_none: bool = False) -> float:
    if value is None and allow_none:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return int(value)


def capability(mean: float, sigma_within: float, s: float, lsl: float | None, usl: float | None
               ) -> tuple[float, float, float, float]:
    """Cp, Cpk (from σ̂ within) and Pp, Ppk (from the overall s); NaN where undefined.

    A one-sided spec has no Cp/Pp and takes Cpk/Ppk from its one side. The worked example of the AIAG
    manual (n = 5, X̿ = 10.05, R̄ = 0.2326, so σ̂ = R̄/d2 = 0.1):

    >>> cp, cpk, _, _ = capability(10.05, 0.2326 / 2.326, math.nan, lsl=9.5, usl=10.5)
    >>> round(cp, 3), round(cpk, 3)
    (1.667, 1.5)
    >>> [round(v, 3) for v in capability(10.05, 0.1, 0.1, lsl=None, usl=10.5)]
    [nan, 1.5, nan, 1.5]
    """
    lo = math.nan if lsl is None else lsl
    hi = math.nan if usl is None else usl

    def pair(sig: float) -> tuple[float, float]:
        if not (sig > 0 and math.isfinite(mean)):
            return math.nan, math.nan
        cp = (hi - lo) / (6 * sig)
        sides = [v for v in ((hi - mean) / (3 * sig), (mean - lo) / (3 * sig)) if not math.isnan(v)]
        return cp, (min(sides) if sides else math.nan)

    return (*pair(sigma_within), *pair(s))


def readings(values: Any, ok: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Values as a contiguous float64 vector and ``ok`` as a uint8 vector (empty when not given)."""
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"values must be a one-dimensional array, got shape {arr.shape}")
    if ok is None:
        return arr, np.empty(0, dtype=np.uint8)
    ok_arr = np.ascontiguousarray(ok, dtype=np.bool_)
    if ok_arr.shape != arr.shape:
        raise ValueError(f"ok has shape {ok_arr.shape} but values has {arr.shape}")
    return arr, ok_arr.view(np.uint8)


def _enc_float(v: float) -> str:
    return float(v).hex()


def _enc_array(a: Any) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode("ascii")


def _dec_array(name: str, text: Any, size: int) -> np.ndarray:
    if not isinstance(text, str):
        raise ValueError(f"statistics state: array {name!r} must be a base64 string")
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    a = np.frombuffer(raw, dtype="<f8").astype(np.float64)
    if a.size != size:
        raise ValueError(f"statistics state: array {name!r} holds {a.size} values, expected {size}")
    return a


class RollingStatsApi:
    """Rolling SPC statistics and control-chart state of one characteristic, updated per reading.

    One object per characteristic, river-style: ``push(x)`` learns one reading and returns the bitmask
    (see :mod:`floorwatch.edge.stats.rules`) of the rules and signals it fired; ``push_many(values)`` does the same
    for a numpy array in one loop without the GIL; ``snapshot()`` returns an immutable
    ``floorwatch.edge.model.StatsSnapshot``; ``state()``/``from_state()`` save and restore it bit-identically.

    Control limits (centre line and σ) are given (``center``, ``sigma``) or learned from the first
    ``baseline`` accepted readings (centre = their mean, σ = MR̄/d2, or R̄/d2 for subgroups) and then
    frozen until ``rebaseline()``. Readings that are not finite, or pushed with ``ok=False``, never enter
    the statistics: they only count in ``n_rejected``.

    >>> from floorwatch.edge.stats import RollingStats, rules
    >>> rs = RollingStats(window=50, lsl=9.5, usl=10.5, center=10.0, sigma=0.1,
    ...                   rules=["nelson_1", "nelson_2"], characteristic="bore_diameter")
    >>> [rs.push(x) for x in (10.02, 9.97, 10.01, 9.99, 10.03)]
    [0, 0, 0, 0, 0]
    >>> rules.names(rs.push(10.45))
    ['nelson_1']
    >>> rules.names(rs.push(float("nan")))
    ['rejected']
    >>> snap = rs.snapshot()
    >>> snap.n, snap.n_rejected, round(snap.mean, 3), round(snap.ucl, 3), round(snap.cpk, 2)
    (6, 1, 10.078, 10.3, 1.39)
    >>> restored = RollingStats.from_state(rs.state())
    >>> restored.push(10.2) == rs.push(10.2) and restored.snapshot() == rs.snapshot()
    True
    """

    def __init__(
        self,
        window: int = 1000,
        lsl: float | None = None,
        usl: float | None = None,
        subgroup_size: int = 1,
        rules: Iterable[str] = ("nelson_1", "nelson_2", "nelson_3", "nelson_5"),
        center: float | None = None,
        sigma: float | None = None,
        baseline: int = 100,
        ewma_lambda: float = 0.2,
        ewma_l: float = 3.0,
        cusum_k: float = 0.5,
        cusum_h: float = 5.0,
        characteristic: str = "",
    ) -> None:
        k = _integer("subgroup_size", subgroup_size, 1, 10)
        n = _integer("window", window, 2, 10_000_000)
        if n < 2 * k:
            raise ValueError(f"window ({n}) must hold at least two subgroups of {k} readings")
        m = _integer("baseline", baseline, 2, 100_000_000)
        lo = _number("lsl", lsl, allow_none=True)
        hi = _number("usl", usl, allow_none=True)
        if lo >= hi:
            raise ValueError(f"usl ({hi:g}) must be greater than lsl ({lo:g})")
        if isinstance(rules, str):
            raise ValueError(f"rules must be a list of rule names, got the string {rules!r}")
        rules = tuple(rules)
        for name in rules:
            if name not in RULE_NAMES:
                raise ValueError(unknown_rule_message(name))
        if (center is None) != (sigma is None):
            raise ValueError("give both center and sigma, or neither (then they are learned from the baseline)")
        c = _number("center", center, allow_none=True)
        sg = _number("sigma", sigma, allow_none=True)
        if sigma is not None and not sg > 0:
            raise ValueError(f"sigma must be greater than 0, got {sigma!r}")
        lam = _number("ewma_lambda", ewma_lambda)
        if not 0 < lam <= 1:
            raise ValueError(f"ewma_lambda must be in (0, 1], got {lam}")
        ll = _number("ewma_l", ewma_l)
        ck = _number("cusum_k", cusum_k)
        ch = _number("cusum_h", cusum_h)
        if not ll > 0 or ck < 0 or not ch > 0:
            raise ValueError("ewma_l and cusum_h must be greater than 0 and cusum_k at least 0")
        if not isinstance(characteristic, str):
            raise ValueError(f"characteristic must be a string, got {characteristic!r}")
        self._params = {
            "window": n, "lsl": lsl if lsl is None else lo, "usl": usl if usl is None else hi,
            "subgroup_size": k, "rules": rules, "center": center if center is None else c,
            "sigma": sigma if sigma is None else sg, "baseline": m, "ewma_lambda": lam, "ewma_l": ll,
            "cusum_k": ck, "cusum_h": ch, "characteristic": characteristic,
        }
        self.characteristic = characteristic
        # A subgroup chart learns from baseline // k subgroups (at least two).
        chart_baseline = m if k == 1 else max(2, m // k)
        d2k = MR_D2 if k == 1 else D2[k]
        self._setup(n, k, lo, hi, _rules.mask_of(rules), c, sg, chart_baseline, lam, ll, ck, ch, d2k)

    # --- construction -----------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: Any) -> RollingStatsApi:
        """One ``RollingStats`` for one ``floorwatch.edge.config.CharacteristicConfig``."""
        return cls(
            window=config.window, lsl=config.lsl, usl=config.usl, subgroup_size=config.subgroup_size,
            rules=tuple(config.rules), center=config.control.center, sigma=config.control.sigma,
            baseline=config.control.baseline, ewma_lambda=config.ewma_lambda, ewma_l=config.ewma_l,
            cusum_k=config.cusum_k, cusum_h=config.cusum_h, characteristic=config.name,
        )

    @property
    def params(self) -> dict[str, Any]:
        """The constructor arguments (what ``from_state`` rebuilds the object from)."""
        return dict(self._params, rules=list(self._params["rules"]))

    def __repr__(self) -> str:
        p = self._params
        return (f"RollingStats(characteristic={p['characteristic']!r}, window={p['window']}, "
                f"subgroup_size={p['subgroup_size']}, n_total={self._scalar('n_total')})")

    def rebaseline(self, center: float | None = None, sigma: float | None = None) -> None:
        """New control limits: the given ``center``/``sigma``, or learned from the next baseline readings.

        The window and counters stay; EWMA, CUSUM and the rules' run history start again.
        """
        if center is None and sigma is None:
            self._unknown_limits()
            return
        if center is None or sigma is None:
            raise ValueError("give both center and sigma, or neither (then they are learned again)")
        c = _number("center", center)
        s = _number("sigma", sigma)
        if not s > 0:
            raise ValueError(f"sigma must be greater than 0, got {sigma!r}")
        self._set_limits(c, s)

    # --- state ----------------------------------------------------------------------------------------

    def _scalar(self, name: str) -> Any:
        return self._get_scalars()[SCALAR_NAMES.index(name)]

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this object is: a JSON-able dict.

        Floats are stored as ``float.hex`` strings and arrays as base64 of little-endian doubles, so
        that ``from_state(state())`` continues bit-identically (JSON itself would lose NaN and infinity).
        """
        values = self._get_scalars()
        scalars = {name: (_enc_float(v) if kind == "f" else int(v))
                   for (name, kind), v in zip(SCALARS, values, strict=True)}
        arrays = {name: _enc_array(a) for name, a in zip(ARRAYS, self._get_arrays(), strict=True)}
        return {"format": STATE_FORMAT, "params": self.params, "scalars": scalars, "arrays": arrays}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RollingStatsApi:
        """Rebuild an object from ``state()``; a clear ``ValueError`` if the state is damaged."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a statistics state (expected format {STATE_FORMAT!r})")
        try:
            params = {key: state["params"][key] for key in _PARAM_KEYS}
            obj = cls(**params)
            scalars = []
            for name, kind in SCALARS:
                v = state["scalars"][name]
                if kind == "f":
                    if not isinstance(v, str):
                        raise ValueError(f"scalar {name!r} must be a float.hex string")
                    scalars.append(float.fromhex(v))
                else:
                    if isinstance(v, bool) or not isinstance(v, int):
                        raise ValueError(f"scalar {name!r} must be an integer")
                    scalars.append(v)
            sizes = [len(a) for a in obj._get_arrays()]
            arrays = [_dec_array(name, state["arrays"][name], size)
                      for name, size in zip(ARRAYS, sizes, strict=True)]
            obj._set_scalars(tuple(scalars))
            obj._set_arrays(arrays)
        except KeyError as exc:
            raise ValueError(f"statistics state lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ValueError(f"statistics state is damaged: {exc}") from None
        return obj

    # --- snapshot -------------------------------------------------------------------------------------

    def snapshot(self, ts_ns: int = 0, seq: int | None = None) -> StatsSnapshot:
        """The figures after the latest reading, as an immutable ``StatsSnapshot`` (NaN where undefined);
        ``seq`` None: not numbered yet (the gateway's outbox numbers what it publishes)."""
        p = self._params
        st = dict(zip(SCALAR_NAMES, self._get_scalars(), strict=True))
        k = p["subgroup_size"]
        nan = math.nan
        n = st["n"]
        mean = st["shift"] + st["mean_y"] if n >= 1 else nan
        std = math.sqrt(max(st["m2"], 0.0) / (n - 1)) if n >= 2 else nan
        wmin, wmax = self._window_extremes() if n >= 1 else (nan, nan)
        mr_bar = max(st["mr_sum"], 0.0) / (n - 1) if n >= 2 else nan
        g = st["g_n"]
        r_bar = max(st["r_sum"], 0.0) / g if k > 1 and g >= 1 else nan
        s_bar = max(st["s_sum"], 0.0) / g if k > 1 and g >= 1 else nan
        sigma_within = mr_bar / MR_D2 if k == 1 else r_bar / D2[k]
        cp, cpk, pp, ppk = capability(mean, sigma_within, std, p["lsl"], p["usl"])
        known = bool(st["limits_known"])
        center = st["center"] if known else nan
        sigma = st["sigma"] if known else nan
        sc = st["sc"] if known else nan
        sub: dict[str, Any] = {"subgroup_size": k}
        if k > 1:
            rbar_c = D2[k] * sigma
            sbar_c = C4[k] * sigma
            sub.update(
                xbar=st["xbar"], r=st["r"], s=st["s"], r_bar=r_bar, s_bar=s_bar,
                xbar_ucl=center + 3 * sc, xbar_lcl=center - 3 * sc,
                r_ucl=D4[k] * rbar_c, r_lcl=D3[k] * rbar_c, s_ucl=B4[k] * sbar_c, s_lcl=B3[k] * sbar_c,
            )
        return StatsSnapshot(
            ts_ns=ts_ns, seq=seq, characteristic=p["characteristic"],
            n=n, n_total=st["n_total"], n_rejected=st["n_rejected"],
            mean=mean, std=std, min=wmin, max=wmax, mr_bar=mr_bar, sigma_within=sigma_within,
            ewma=st["ewma_z"] if known else nan,
            ewma_ucl=st["ewma_ucl"] if known else nan, ewma_lcl=st["ewma_lcl"] if known else nan,
            cusum_pos=st["cusum_p"] if known else nan, cusum_neg=st["cusum_n"] if known else nan,
            center=center, sigma=sigma, ucl=center + 3 * sc, lcl=center - 3 * sc,
            cp=cp, cpk=cpk, pp=pp, ppk=ppk, n_below_lsl=st["n_below"], n_above_usl=st["n_above"],
            rules=st["last_rules"], baseline_done=known, **sub,
        )
