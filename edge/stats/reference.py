"""Pure-Python reference of the statistics core: the specification the compiled core is held to.

``ext/_stats_core.pyx`` does exactly what this module does, operation for operation, in C. Keep the two
in step: the property tests compare them reading by reading. This one is used when the compiled core
is unavailable (then the gateway works, only slower), and in tests.

Algorithms (details and references in docs/statistics.md):

- Rolling mean and variance: Welford's update (Welford 1962), extended to replace the oldest reading of
  the window, applied to readings minus a shift ``K`` taken from the data; at the end of every block of
  ``window`` readings, mean, M2 and the moving-range sum are recomputed exactly (shifted two-pass
  with the compensating term of Chan, Golub and LeVeque 1983), so rounding cannot accumulate.
- Rolling min/max: van Herk (1992) / Gil and Werman (1993) blocks: suffix extremes of the previous block
  plus running extremes of the current one; O(1) amortised and free of data-dependent branches.
- EWMA (Roberts 1959) with exact time-varying limits; two-sided tabular CUSUM (Page 1954);
  Nelson (1984) and Western Electric (1956) rules from run counters and short shift registers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from floorwatch.edge.stats import rules as R
from floorwatch.edge.stats._api import ARRAYS, SCALAR_NAMES, RollingStatsApi, readings

_INF = math.inf
_CANCELLATION = 2.0**-20
# (0xE8 >> b) & 1: at least 2 of the 3 bits of b are set. (_POP5_GE4 >> b) & 1: at least 4 of 5.
_POP3_GE2 = 0xE8
_POP5_GE4 = (1 << 15) | (1 << 23) | (1 << 27) | (1 << 29) | (1 << 30) | (1 << 31)
_CHART_BITS = R.RULE_MASK | R.EWMA | R.CUSUM


class RollingStats(RollingStatsApi):
    """Rolling SPC statistics of one characteristic (pure-Python reference; see ``floorwatch.edge.stats``)."""

    # --- set-up ---------------------------------------------------------------------------------------

    def _setup(self, window: int, k: int, lsl: float, usl: float, rule_mask: int, cfg_center: float,
               cfg_sigma: float, chart_baseline: int, lam: float, ewma_l: float, cusum_k: float,
               cusum_h: float, d2k: float) -> None:
        self.N = window
        self.inv_n = 1.0 / window  # a multiply per reading instead of a division
        self.k = k
        self.G = window // k if k > 1 else 1
        self.lsl = lsl
        self.usl = usl
        self.rule_mask = rule_mask
        self.cfg_center = cfg_center
        self.cfg_sigma = cfg_sigma
        self.Mg = chart_baseline
        self.lam = lam
        self.oml = 1.0 - lam
        self.oml2 = self.oml * self.oml
        self.ewma_c = lam / (2.0 - lam)
        self.ewma_L = ewma_l
        self.ck = cusum_k
        self.ch = cusum_h
        self.d2k = d2k
        self.sqrt_k = math.sqrt(k)
        self.buf = [0.0] * window
        self.smax = [0.0] * (window + 1)
        self.smin = [0.0] * (window + 1)
        self.sg_buf = [0.0] * 10
        self.r_ring = [0.0] * self.G
        self.s_ring = [0.0] * self.G
        self.reset()

    def reset(self) -> None:
        """Forget every reading: an empty window, counters at zero, limits as configured (or to learn)."""
        for name in SCALAR_NAMES:
            setattr(self, name, 0)
        for name in ("shift", "mean_y", "m2", "m2_peak", "mr_sum", "last_x", "xbar", "r", "s", "r_sum", "s_sum",
                     "b_mean", "b_spread_sum", "b_last", "prev"):
            setattr(self, name, 0.0)
        self.pmax, self.pmin = -_INF, _INF
        for j in range(self.N + 1):
            self.smax[j] = -_INF
            self.smin[j] = _INF
        for j in range(self.N):
            self.buf[j] = 0.0
        for j in range(self.G):
            self.r_ring[j] = 0.0
            self.s_ring[j] = 0.0
        for j in range(10):
            self.sg_buf[j] = 0.0
        self.xbar = self.r = self.s = math.nan
        self._unknown_limits()
        if self.cfg_sigma > 0:
            self._set_limits(self.cfg_center, self.cfg_sigma)

    def _unknown_limits(self) -> None:
        self.limits_known = 0
        self.b_n = self.b_spread_n = 0
        self.b_mean = self.b_spread_sum = self.b_last = 0.0
        for name in ("center", "sigma", "sc", "t1", "t2", "t3", "ewma_z", "ewma_ucl", "ewma_lcl",
                     "cusum_p", "cusum_n", "cusum_hik", "cusum_lok", "cusum_h", "ewma_a"):
            setattr(self, name, math.nan)
        self.ewma_w = 1.0
        self.ewma_const = 0

    def _set_limits(self, center: float, sigma: float) -> None:
        sc = sigma / self.sqrt_k
        self.limits_known = 1
        self.center = center
        self.sigma = sigma
        self.sc = sc
        self.t1 = sc
        self.t2 = 2.0 * sc
        self.t3 = 3.0 * sc
        self.ewma_z = center
        self.ewma_w = 1.0
        self.ewma_a = self.ewma_L * sc
        self.ewma_ucl = center
        self.ewma_lcl = center
        self.ewma_const = 0
        self.cusum_p = 0.0
        self.cusum_n = 0.0
        self.cusum_hik = center + self.ck * sc
        self.cusum_lok = center - self.ck * sc
        self.cusum_h = self.ch * sc
        self.has_prev = 0
        self.prev = 0.0
        self.run_above = self.run_below = self.run_up = self.run_down = 0
        self.alt_run = self.last_dir = self.within_run = self.beyond_run = 0
        self.h2_hi = self.h2_lo = self.h1_hi = self.h1_lo = 0

    # --- per reading ----------------------------------------------------------------------------------

    def push(self, x: float, ok: bool = True) -> int:
        """Add one reading; returns the bitmask (floorwatch.edge.stats.rules) of what this reading fired."""
        if isinstance(x, str | bytes):
            raise TypeError(f"a reading must be a number, got {x!r}")
        x = float(x)
        if not ok or not (x - x == 0.0):  # x - x is NaN for NaN and for ±inf
            self.n_rejected += 1
            return R.REJECTED
        bits = 0
        if x < self.lsl:
            bits |= R.BELOW_LSL
            self.n_below += 1
        if x > self.usl:
            bits |= R.ABOVE_USL
            self.n_above += 1
        N = self.N
        p = self.pos
        if self.n == 0:
            self.shift = x
        y = x - self.shift
        if self.n < N:
            if self.n > 0:
                self.mr_sum += abs(x - self.last_x)
            self.n += 1
            d = y - self.mean_y
            self.mean_y += d / self.n
            self.m2 += d * (y - self.mean_y)
        else:
            old = self.buf[p]
            nxt = self.buf[p + 1] if p + 1 < N else self.buf[0]
            self.mr_sum += abs(x - self.last_x) - abs(nxt - old)
            yo = old - self.shift
            d = y - yo
            mo = self.mean_y
            self.mean_y = mo + d * self.inv_n
            self.m2 += d * ((y - self.mean_y) + (yo - mo))
        self.buf[p] = x
        # Removing readings far from the rest (a level change leaving the window) makes M2 collapse by
        # cancellation: recompute exactly as soon as it fell by 2^20 from its peak since the last one.
        if self.m2 > self.m2_peak:
            self.m2_peak = self.m2
        if self.m2 < self.m2_peak * _CANCELLATION:
            self._exact_moments(self.n)
        if x > self.pmax:
            self.pmax = x
        if x < self.pmin:
            self.pmin = x
        self.last_x = x
        p += 1
        if p == N:
            self._block_end()
            p = 0
        self.pos = p
        self.n_total += 1

        if self.k == 1:
            bits |= self._chart_point(x)
        else:
            self.sg_buf[self.sg_fill] = x
            self.sg_fill += 1
            if self.sg_fill == self.k:
                self.sg_fill = 0
                self._subgroup_end()
                bits |= self._chart_point(self.xbar)
        self.last_rules = bits
        return bits

    def push_many(self, values: Any, ok: Any = None) -> np.ndarray:
        """Add many readings (``ok``: optional array of booleans); returns the bitmask of each (uint32)."""
        arr, ok_arr = readings(values, ok)
        flags = [True] * arr.size if ok is None else ok_arr.astype(bool).tolist()
        push = self.push
        return np.array([push(x, f) for x, f in zip(arr.tolist(), flags, strict=True)], dtype=np.uint32)

    def push_many_series(self, values: Any, ok: Any = None) -> dict[str, np.ndarray]:
        """Like ``push_many``, and also the window's mean, std, min and max after every reading."""
        arr, ok_arr = readings(values, ok)
        flags = [True] * arr.size if ok is None else ok_arr.astype(bool).tolist()
        out = {"rules": np.empty(arr.size, dtype=np.uint32), "mean": np.empty(arr.size),
               "std": np.empty(arr.size), "min": np.empty(arr.size), "max": np.empty(arr.size)}
        for i, (x, f) in enumerate(zip(arr.tolist(), flags, strict=True)):
            out["rules"][i] = self.push(x, f)
            n = self.n
            if n == 0:
                out["mean"][i] = out["std"][i] = out["min"][i] = out["max"][i] = math.nan
                continue
            out["mean"][i] = self.shift + self.mean_y
            out["std"][i] = math.sqrt((self.m2 if self.m2 > 0.0 else 0.0) / (n - 1)) if n >= 2 else math.nan
            out["min"][i], out["max"][i] = self._window_extremes()
        return out

    def _block_end(self) -> None:
        """The window is exactly buf[0..N-1] in order: suffix extremes and an exact recomputation."""
        N = self.N
        buf = self.buf
        mx, mn = -_INF, _INF
        for j in range(N - 1, -1, -1):
            v = buf[j]
            if v > mx:
                mx = v
            if v < mn:
                mn = v
            self.smax[j] = mx
            self.smin[j] = mn
        self.pmax, self.pmin = -_INF, _INF
        self._exact_moments(N)
        mr = 0.0
        for j in range(1, N):
            mr += abs(buf[j] - buf[j - 1])
        self.mr_sum = mr

    def _exact_moments(self, count: int) -> None:
        """Mean and M2 of buf[0..count-1] recomputed exactly, about a new shift (the current mean)."""
        buf = self.buf
        shift = self.shift + self.mean_y
        t = 0.0
        for j in range(count):
            t += buf[j] - shift
        mean = t / count
        s2 = 0.0
        c = 0.0
        for j in range(count):
            d = (buf[j] - shift) - mean
            s2 += d * d
            c += d
        self.m2 = s2 - c * c / count
        self.mean_y = mean
        self.shift = shift
        self.m2_peak = self.m2

    def _subgroup_end(self) -> None:
        k = self.k
        g = self.sg_buf
        first = g[0]
        lo = hi = first
        t = 0.0
        for j in range(k):
            v = g[j]
            t += v - first
            if v > hi:
                hi = v
            if v < lo:
                lo = v
        xbar = first + t / k
        ss = 0.0
        for j in range(k):
            d = g[j] - xbar
            ss += d * d
        s = math.sqrt(ss / (k - 1))
        r = hi - lo
        self.xbar, self.r, self.s = xbar, r, s
        q = self.g_pos
        if self.g_n < self.G:
            self.g_n += 1
            self.r_sum += r
            self.s_sum += s
        else:
            self.r_sum += r - self.r_ring[q]
            self.s_sum += s - self.s_ring[q]
        self.r_ring[q] = r
        self.s_ring[q] = s
        q += 1
        if q == self.G:
            q = 0
            tr = 0.0
            ts = 0.0
            for j in range(self.G):
                tr += self.r_ring[j]
                ts += self.s_ring[j]
            self.r_sum = tr
            self.s_sum = ts
        self.g_pos = q

    def _chart_point(self, v: float) -> int:
        """One point of the control chart (a reading, or a subgroup mean): baseline, or rules."""
        if not self.limits_known:
            self.b_n += 1
            self.b_mean += (v - self.b_mean) / self.b_n
            if self.k == 1:
                if self.b_n > 1:
                    self.b_spread_sum += abs(v - self.b_last)
                    self.b_spread_n += 1
                self.b_last = v
            else:
                self.b_spread_sum += self.r
                self.b_spread_n += 1
            if self.b_n >= self.Mg and self.b_spread_sum > 0.0:
                self._set_limits(self.b_mean, (self.b_spread_sum / self.b_spread_n) / self.d2k)
            return 0

        rb = 0
        d = v - self.center
        t1, t2, t3 = self.t1, self.t2, self.t3
        hi1 = d > t1
        lo1 = d < -t1
        hi2 = d > t2
        lo2 = d < -t2
        if d > t3 or d < -t3:
            rb |= R.NELSON_1 | R.WE_1
        self.run_above = self.run_above + 1 if d > 0.0 else 0
        self.run_below = self.run_below + 1 if d < 0.0 else 0
        if self.run_above >= 9 or self.run_below >= 9:
            rb |= R.NELSON_2
        if self.run_above >= 8 or self.run_below >= 8:
            rb |= R.WE_4
        if self.has_prev:
            if v > self.prev:
                self.run_up += 1
                self.run_down = 0
                direction = 1
            elif v < self.prev:
                self.run_down += 1
                self.run_up = 0
                direction = -1
            else:
                self.run_up = self.run_down = 0
                direction = 0
            if direction != 0 and direction == -self.last_dir:
                self.alt_run += 1
            elif direction != 0:
                self.alt_run = 1
            else:
                self.alt_run = 0
            self.last_dir = direction
            if self.run_up >= 5 or self.run_down >= 5:
                rb |= R.NELSON_3
            if self.alt_run >= 13:
                rb |= R.NELSON_4
        self.prev = v
        self.has_prev = 1
        self.h2_hi = ((self.h2_hi << 1) | hi2) & 7
        self.h2_lo = ((self.h2_lo << 1) | lo2) & 7
        if (hi2 and (_POP3_GE2 >> self.h2_hi) & 1) or (lo2 and (_POP3_GE2 >> self.h2_lo) & 1):
            rb |= R.NELSON_5 | R.WE_2
        self.h1_hi = ((self.h1_hi << 1) | hi1) & 31
        self.h1_lo = ((self.h1_lo << 1) | lo1) & 31
        if (hi1 and (_POP5_GE4 >> self.h1_hi) & 1) or (lo1 and (_POP5_GE4 >> self.h1_lo) & 1):
            rb |= R.NELSON_6 | R.WE_3
        self.within_run = self.within_run + 1 if (d < t1 and d > -t1) else 0
        self.beyond_run = self.beyond_run + 1 if (hi1 or lo1) else 0
        if self.within_run >= 15:
            rb |= R.NELSON_7
        if self.beyond_run >= 8:
            rb |= R.NELSON_8
        rb &= self.rule_mask

        z = self.lam * v + self.oml * self.ewma_z
        self.ewma_z = z
        if not self.ewma_const:
            self.ewma_w *= self.oml2
            q = 1.0 - self.ewma_w
            f = self.ewma_a * math.sqrt(self.ewma_c * q)
            self.ewma_ucl = self.center + f
            self.ewma_lcl = self.center - f
            if q == 1.0:
                self.ewma_const = 1
        if z > self.ewma_ucl:
            rb |= R.EWMA_HIGH
        if z < self.ewma_lcl:
            rb |= R.EWMA_LOW

        cp = v - self.cusum_hik + self.cusum_p
        cp = cp if cp > 0.0 else 0.0
        cn = self.cusum_lok - v + self.cusum_n
        cn = cn if cn > 0.0 else 0.0
        self.cusum_p = cp
        self.cusum_n = cn
        if cp > self.cusum_h:
            rb |= R.CUSUM_HIGH
        if cn > self.cusum_h:
            rb |= R.CUSUM_LOW
        return rb

    # --- state access for the shared API --------------------------------------------------------------

    def _get_scalars(self) -> tuple:
        return tuple(getattr(self, name) for name in SCALAR_NAMES)

    def _set_scalars(self, values: tuple) -> None:
        for name, v in zip(SCALAR_NAMES, values, strict=True):
            setattr(self, name, v)
        # Indices must stay inside the buffers whatever the state file says.
        if not (0 <= self.pos < self.N and 0 <= self.n <= self.N and 0 <= self.sg_fill < self.k
                and 0 <= self.g_pos < self.G and 0 <= self.g_n <= self.G):
            self.reset()
            raise ValueError("statistics state: window positions out of range for this window size")

    def _get_arrays(self) -> list[list[float]]:
        return [getattr(self, name) for name in ARRAYS]

    def _set_arrays(self, arrays: list[Any]) -> None:
        for name, a in zip(ARRAYS, arrays, strict=True):
            setattr(self, name, [float(v) for v in a])

    def _window_extremes(self) -> tuple[float, float]:
        p = self.pos
        lo = self.smin[p] if self.smin[p] < self.pmin else self.pmin
        hi = self.smax[p] if self.smax[p] > self.pmax else self.pmax
        return lo, hi
