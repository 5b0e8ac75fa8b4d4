# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -ffp-contract=off --param=max-inline-insns-single=1000 --param=inline-unit-growth=400
"""Compiled statistics core: the arithmetic half of ``edge.stats.RollingStats``.

This is ``edge/stats/reference.py`` written again in C terms, operation for operation and in the same
order, so both give the same numbers (``-ffp-contract=off`` keeps the compiler from fusing a multiply and
an add into one differently rounded FMA). Keep the two in step; tests/test_stats_property.py holds this
module to the reference. Argument checks, snapshots and state encoding live in ``edge/stats/_api.py``,
shared by both.

The per-reading path ``_push`` touches only C doubles and integers and runs without the GIL;
``push_many`` loops over a numpy array in one ``nogil`` block. Buffers are allocated once per
characteristic: the window ring (N doubles), the van Herk suffix extremes (2·(N+1) doubles) and, for
subgroup charts, the subgroup ranges and standard deviations (2·N/k doubles).
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport INFINITY, NAN, fabs, sqrt
from libc.stdint cimport int64_t, uint32_t

import numpy as np

from edge.stats._api import readings as _readings

# Bit numbers: edge/stats/rules.py (the layout is stable; the test suite checks these against it).
cdef enum:
    B_NELSON_1 = 1 << 0
    B_NELSON_2 = 1 << 1
    B_NELSON_3 = 1 << 2
    B_NELSON_4 = 1 << 3
    B_NELSON_5 = 1 << 4
    B_NELSON_6 = 1 << 5
    B_NELSON_7 = 1 << 6
    B_NELSON_8 = 1 << 7
    B_WE_1 = 1 << 8
    B_WE_2 = 1 << 9
    B_WE_3 = 1 << 10
    B_WE_4 = 1 << 11
    B_EWMA_HIGH = 1 << 12
    B_EWMA_LOW = 1 << 13
    B_CUSUM_HIGH = 1 << 14
    B_CUSUM_LOW = 1 << 15
    B_BELOW_LSL = 1 << 16
    B_ABOVE_USL = 1 << 17
    B_REJECTED = 1 << 18

cdef uint32_t POP3_GE2 = 0xE8
cdef double CANCELLATION = 9.5367431640625e-07  # 2**-20
cdef uint32_t POP5_GE4 = (1u << 15) | (1u << 23) | (1u << 27) | (1u << 29) | (1u << 30) | (1u << 31)

BIT_VALUES = {
    "nelson_1": B_NELSON_1, "nelson_2": B_NELSON_2, "nelson_3": B_NELSON_3, "nelson_4": B_NELSON_4,
    "nelson_5": B_NELSON_5, "nelson_6": B_NELSON_6, "nelson_7": B_NELSON_7, "nelson_8": B_NELSON_8,
    "we_1": B_WE_1, "we_2": B_WE_2, "we_3": B_WE_3, "we_4": B_WE_4,
    "ewma_high": B_EWMA_HIGH, "ewma_low": B_EWMA_LOW, "cusum_high": B_CUSUM_HIGH,
    "cusum_low": B_CUSUM_LOW, "below_lsl": B_BELOW_LSL, "above_usl": B_ABOVE_USL,
    "rejected": B_REJECTED,
}


cdef double* _alloc(Py_ssize_t size) except NULL:
    cdef double* p = <double*> PyMem_Malloc((size if size > 0 else 1) * sizeof(double))
    if p == NULL:
        raise MemoryError(f"cannot allocate {size} doubles for the statistics window")
    return p


cdef struct State:
    # parameters, buffers, then the state (same names, meaning and order as edge.stats._api.SCALARS)
    Py_ssize_t N
    Py_ssize_t k
    Py_ssize_t G
    int64_t Mg
    double lsl
    double usl
    double cfg_center
    double inv_n
    double cfg_sigma
    double lam
    double oml
    double oml2
    double ewma_c
    double ewma_L
    double ck
    double ch
    double d2k
    double sqrt_k
    uint32_t rule_mask
    double* buf
    double* smax
    double* smin
    double* r_ring
    double* s_ring
    double sg_buf[10]
    int64_t n
    int64_t pos
    int64_t n_total
    int64_t n_rejected
    int64_t n_below
    int64_t n_above
    double shift
    double mean_y
    double m2
    double m2_peak
    double mr_sum
    double last_x
    double pmax
    double pmin
    int64_t sg_fill
    int64_t g_pos
    int64_t g_n
    double xbar
    double r
    double s
    double r_sum
    double s_sum
    int64_t limits_known
    int64_t b_n
    int64_t b_spread_n
    double b_mean
    double b_spread_sum
    double b_last
    double center
    double sigma
    double sc
    double t1
    double t2
    double t3
    double ewma_z
    double ewma_w
    double ewma_a
    double ewma_ucl
    double ewma_lcl
    int64_t ewma_const
    double cusum_p
    double cusum_n
    double cusum_hik
    double cusum_lok
    double cusum_h
    int64_t has_prev
    double prev
    int64_t run_above
    int64_t run_below
    int64_t run_up
    int64_t run_down
    int64_t alt_run
    int64_t last_dir
    int64_t within_run
    int64_t beyond_run
    int64_t h2_hi
    int64_t h2_lo
    int64_t h1_hi
    int64_t h1_lo
    int64_t last_rules


cdef void _limits(State* s, double center, double sigma) noexcept nogil:
    cdef double sc = sigma / s.sqrt_k
    s.limits_known = 1
    s.center = center
    s.sigma = sigma
    s.sc = sc
    s.t1 = sc
    s.t2 = 2.0 * sc
    s.t3 = 3.0 * sc
    s.ewma_z = center
    s.ewma_w = 1.0
    s.ewma_a = s.ewma_L * sc
    s.ewma_ucl = center
    s.ewma_lcl = center
    s.ewma_const = 0
    s.cusum_p = 0.0
    s.cusum_n = 0.0
    s.cusum_hik = center + s.ck * sc
    s.cusum_lok = center - s.ck * sc
    s.cusum_h = s.ch * sc
    s.has_prev = 0
    s.prev = 0.0
    s.run_above = s.run_below = s.run_up = s.run_down = 0
    s.alt_run = s.last_dir = s.within_run = s.beyond_run = 0
    s.h2_hi = s.h2_lo = s.h1_hi = s.h1_lo = 0

cdef inline uint32_t _push(State* s, double x, bint ok) noexcept nogil:
    cdef uint32_t bits = 0
    cdef Py_ssize_t N = s.N, p = s.pos
    cdef double y, d, old, nxt, yo, mo
    if not ok or not (x - x == 0.0):  # x - x is NaN for NaN and for ±inf
        s.n_rejected += 1
        return B_REJECTED
    if x < s.lsl:
        bits |= B_BELOW_LSL
        s.n_below += 1
    if x > s.usl:
        bits |= B_ABOVE_USL
        s.n_above += 1
    if s.n == 0:
        s.shift = x
    y = x - s.shift
    if s.n < N:
        if s.n > 0:
            s.mr_sum += fabs(x - s.last_x)
        s.n += 1
        d = y - s.mean_y
        s.mean_y += d / <double> s.n
        s.m2 += d * (y - s.mean_y)
    else:
        old = s.buf[p]
        nxt = s.buf[p + 1] if p + 1 < N else s.buf[0]
        s.mr_sum += fabs(x - s.last_x) - fabs(nxt - old)
        yo = old - s.shift
        d = y - yo
        mo = s.mean_y
        s.mean_y = mo + d * s.inv_n
        s.m2 += d * ((y - s.mean_y) + (yo - mo))
    s.buf[p] = x
    # Removing readings far from the rest (a level change leaving the window) makes M2 collapse by
    # cancellation: recompute exactly as soon as it fell by 2^20 from its peak since the last recompute.
    if s.m2 > s.m2_peak:
        s.m2_peak = s.m2
    elif s.m2 < s.m2_peak * CANCELLATION:
        _exact_moments(s, s.n)
    if x > s.pmax:
        s.pmax = x
    if x < s.pmin:
        s.pmin = x
    s.last_x = x
    p += 1
    if p == N:
        _block_end(s)
        p = 0
    s.pos = p
    s.n_total += 1

    if s.k == 1:
        bits |= _chart_point(s, x)
    else:
        s.sg_buf[s.sg_fill] = x
        s.sg_fill += 1
        if s.sg_fill == s.k:
            s.sg_fill = 0
            _subgroup_end(s)
            bits |= _chart_point(s, s.xbar)
    s.last_rules = bits
    return bits

cdef inline void _window_now(State* s, double* mean, double* sd, double* lo, double* hi) noexcept nogil:
    """Mean, std, min and max of the window as it is now (the same formulas as the snapshot)."""
    cdef Py_ssize_t p = s.pos
    cdef int64_t n = s.n
    if n == 0:
        mean[0] = sd[0] = lo[0] = hi[0] = NAN
        return
    mean[0] = s.shift + s.mean_y
    sd[0] = sqrt((s.m2 if s.m2 > 0.0 else 0.0) / <double> (n - 1)) if n >= 2 else NAN
    lo[0] = s.smin[p] if s.smin[p] < s.pmin else s.pmin
    hi[0] = s.smax[p] if s.smax[p] > s.pmax else s.pmax


cdef void _exact_moments(State* s, Py_ssize_t count) noexcept nogil:
    """Mean and M2 of buf[0..count-1] recomputed exactly, about a new shift (the current mean)."""
    cdef Py_ssize_t j
    cdef double* buf = s.buf
    cdef double shift = s.shift + s.mean_y, t = 0.0, mean, s2 = 0.0, c = 0.0, d
    for j in range(count):
        t += buf[j] - shift
    mean = t / <double> count
    for j in range(count):
        d = (buf[j] - shift) - mean
        s2 += d * d
        c += d
    s.m2 = s2 - c * c / <double> count
    s.mean_y = mean
    s.shift = shift
    s.m2_peak = s.m2


cdef void _block_end(State* s) noexcept nogil:
    cdef Py_ssize_t j, N = s.N
    cdef double* buf = s.buf
    cdef double mx = -INFINITY, mn = INFINITY, v, mr
    for j in range(N - 1, -1, -1):
        v = buf[j]
        if v > mx:
            mx = v
        if v < mn:
            mn = v
        s.smax[j] = mx
        s.smin[j] = mn
    s.pmax = -INFINITY
    s.pmin = INFINITY
    _exact_moments(s, N)
    mr = 0.0
    for j in range(1, N):
        mr += fabs(buf[j] - buf[j - 1])
    s.mr_sum = mr

cdef void _subgroup_end(State* s) noexcept nogil:
    cdef Py_ssize_t j, q, k = s.k
    cdef double first = s.sg_buf[0], lo, hi, t = 0.0, v, xbar, ss, d, sd, r, tr, ts
    lo = first
    hi = first
    for j in range(k):
        v = s.sg_buf[j]
        t += v - first
        if v > hi:
            hi = v
        if v < lo:
            lo = v
    xbar = first + t / <double> k
    ss = 0.0
    for j in range(k):
        d = s.sg_buf[j] - xbar
        ss += d * d
    sd = sqrt(ss / <double> (k - 1))
    r = hi - lo
    s.xbar = xbar
    s.r = r
    s.s = sd
    q = s.g_pos
    if s.g_n < s.G:
        s.g_n += 1
        s.r_sum += r
        s.s_sum += sd
    else:
        s.r_sum += r - s.r_ring[q]
        s.s_sum += sd - s.s_ring[q]
    s.r_ring[q] = r
    s.s_ring[q] = sd
    q += 1
    if q == s.G:
        q = 0
        tr = 0.0
        ts = 0.0
        for j in range(s.G):
            tr += s.r_ring[j]
            ts += s.s_ring[j]
        s.r_sum = tr
        s.s_sum = ts
    s.g_pos = q

cdef inline uint32_t _chart_point(State* s, double v) noexcept nogil:
    cdef uint32_t rb = 0
    cdef double d, t1, t2, t3, z, q, f, cp, cn
    cdef uint32_t hi1, lo1, hi2, lo2
    cdef int64_t ra, rbl, up, down, direction, nz, flip
    if not s.limits_known:
        s.b_n += 1
        s.b_mean += (v - s.b_mean) / <double> s.b_n
        if s.k == 1:
            if s.b_n > 1:
                s.b_spread_sum += fabs(v - s.b_last)
                s.b_spread_n += 1
            s.b_last = v
        else:
            s.b_spread_sum += s.r
            s.b_spread_n += 1
        if s.b_n >= s.Mg and s.b_spread_sum > 0.0:
            _limits(s, s.b_mean, (s.b_spread_sum / <double> s.b_spread_n) / s.d2k)
        return 0

    # Integer logic without data-dependent branches (random data would mispredict them half the time);
    # the reference spells out the same logic with if/else.
    d = v - s.center
    t1 = s.t1
    t2 = s.t2
    t3 = s.t3
    hi1 = d > t1
    lo1 = d < -t1
    hi2 = d > t2
    lo2 = d < -t2
    rb |= (B_NELSON_1 | B_WE_1) * <uint32_t> ((d > t3) | (d < -t3))
    ra = (s.run_above + 1) * (d > 0.0)
    rbl = (s.run_below + 1) * (d < 0.0)
    s.run_above = ra
    s.run_below = rbl
    rb |= B_NELSON_2 * <uint32_t> ((ra >= 9) | (rbl >= 9))
    rb |= B_WE_4 * <uint32_t> ((ra >= 8) | (rbl >= 8))
    if s.has_prev:
        up = v > s.prev
        down = v < s.prev
        s.run_up = (s.run_up + 1) * up
        s.run_down = (s.run_down + 1) * down
        direction = up - down
        nz = direction != 0
        flip = nz & (direction == -s.last_dir)
        s.alt_run = s.alt_run * flip + nz
        s.last_dir = direction
        rb |= B_NELSON_3 * <uint32_t> ((s.run_up >= 5) | (s.run_down >= 5))
        rb |= B_NELSON_4 * <uint32_t> (s.alt_run >= 13)
    s.prev = v
    s.has_prev = 1
    s.h2_hi = ((s.h2_hi << 1) | hi2) & 7
    s.h2_lo = ((s.h2_lo << 1) | lo2) & 7
    rb |= (B_NELSON_5 | B_WE_2) * (((hi2 & (POP3_GE2 >> s.h2_hi)) | (lo2 & (POP3_GE2 >> s.h2_lo))) & 1)
    s.h1_hi = ((s.h1_hi << 1) | hi1) & 31
    s.h1_lo = ((s.h1_lo << 1) | lo1) & 31
    rb |= (B_NELSON_6 | B_WE_3) * (((hi1 & (POP5_GE4 >> s.h1_hi)) | (lo1 & (POP5_GE4 >> s.h1_lo))) & 1)
    s.within_run = (s.within_run + 1) * ((d < t1) & (d > -t1))
    s.beyond_run = (s.beyond_run + 1) * (hi1 | lo1)
    rb |= B_NELSON_7 * <uint32_t> (s.within_run >= 15)
    rb |= B_NELSON_8 * <uint32_t> (s.beyond_run >= 8)
    rb &= s.rule_mask

    z = s.lam * v + s.oml * s.ewma_z
    s.ewma_z = z
    if not s.ewma_const:
        s.ewma_w *= s.oml2
        q = 1.0 - s.ewma_w
        f = s.ewma_a * sqrt(s.ewma_c * q)
        s.ewma_ucl = s.center + f
        s.ewma_lcl = s.center - f
        if q == 1.0:
            s.ewma_const = 1
    if z > s.ewma_ucl:
        rb |= B_EWMA_HIGH
    if z < s.ewma_lcl:
        rb |= B_EWMA_LOW

    cp = v - s.cusum_hik + s.cusum_p
    if cp < 0.0:
        cp = 0.0
    cn = s.cusum_lok - v + s.cusum_n
    if cn < 0.0:
        cn = 0.0
    s.cusum_p = cp
    s.cusum_n = cn
    if cp > s.cusum_h:
        rb |= B_CUSUM_HIGH
    if cn > s.cusum_h:
        rb |= B_CUSUM_LOW
    return rb


cdef class Core:
    """State and per-reading arithmetic; see edge.stats.reference.RollingStats for the specification."""

    cdef State st

    def __cinit__(self, *args, **kwargs):
        self.st.buf = self.st.smax = self.st.smin = self.st.r_ring = self.st.s_ring = NULL
        self.st.N = 0

    def __dealloc__(self):
        PyMem_Free(self.st.buf)
        PyMem_Free(self.st.smax)
        PyMem_Free(self.st.smin)
        PyMem_Free(self.st.r_ring)
        PyMem_Free(self.st.s_ring)

    def __sizeof__(self):
        """Bytes held by this characteristic's statistics (object plus buffers)."""
        return object.__sizeof__(self) + (self.st.N + 2 * (self.st.N + 1) + 2 * self.st.G) * sizeof(double)

    def _setup(self, Py_ssize_t window, Py_ssize_t k, double lsl, double usl, uint32_t rule_mask,
               double cfg_center, double cfg_sigma, int64_t chart_baseline, double lam, double ewma_l,
               double cusum_k, double cusum_h, double d2k):
        if self.st.buf != NULL:
            raise RuntimeError("statistics core is already set up")
        self.st.N = window
        self.st.inv_n = 1.0 / <double> window
        self.st.k = k
        self.st.G = window // k if k > 1 else 1
        self.st.lsl = lsl
        self.st.usl = usl
        self.st.rule_mask = rule_mask
        self.st.cfg_center = cfg_center
        self.st.cfg_sigma = cfg_sigma
        self.st.Mg = chart_baseline
        self.st.lam = lam
        self.st.oml = 1.0 - lam
        self.st.oml2 = self.st.oml * self.st.oml
        self.st.ewma_c = lam / (2.0 - lam)
        self.st.ewma_L = ewma_l
        self.st.ck = cusum_k
        self.st.ch = cusum_h
        self.st.d2k = d2k
        self.st.sqrt_k = sqrt(<double> k)
        self.st.buf = _alloc(window)
        self.st.smax = _alloc(window + 1)
        self.st.smin = _alloc(window + 1)
        self.st.r_ring = _alloc(self.st.G)
        self.st.s_ring = _alloc(self.st.G)
        self.reset()

    def reset(self):
        """Forget every reading: an empty window, counters at zero, limits as configured (or to learn)."""
        cdef Py_ssize_t j
        self.st.n = self.st.pos = self.st.n_total = self.st.n_rejected = self.st.n_below = self.st.n_above = 0
        self.st.shift = self.st.mean_y = self.st.m2 = self.st.m2_peak = self.st.mr_sum = self.st.last_x = 0.0
        self.st.pmax = -INFINITY
        self.st.pmin = INFINITY
        self.st.sg_fill = self.st.g_pos = self.st.g_n = 0
        self.st.xbar = self.st.r = self.st.s = NAN
        self.st.r_sum = self.st.s_sum = 0.0
        self.st.has_prev = 0
        self.st.prev = 0.0
        self.st.run_above = self.st.run_below = self.st.run_up = self.st.run_down = 0
        self.st.alt_run = self.st.last_dir = self.st.within_run = self.st.beyond_run = 0
        self.st.h2_hi = self.st.h2_lo = self.st.h1_hi = self.st.h1_lo = self.st.last_rules = 0
        for j in range(self.st.N + 1):
            self.st.smax[j] = -INFINITY
            self.st.smin[j] = INFINITY
        for j in range(self.st.N):
            self.st.buf[j] = 0.0
        for j in range(self.st.G):
            self.st.r_ring[j] = 0.0
            self.st.s_ring[j] = 0.0
        for j in range(10):
            self.st.sg_buf[j] = 0.0
        self._unknown_limits()
        if self.st.cfg_sigma > 0:
            self._set_limits(self.st.cfg_center, self.st.cfg_sigma)

    def _unknown_limits(self):
        self.st.limits_known = 0
        self.st.b_n = self.st.b_spread_n = 0
        self.st.b_mean = self.st.b_spread_sum = self.st.b_last = 0.0
        self.st.center = self.st.sigma = self.st.sc = self.st.t1 = self.st.t2 = self.st.t3 = NAN
        self.st.ewma_z = self.st.ewma_ucl = self.st.ewma_lcl = NAN
        self.st.cusum_p = self.st.cusum_n = self.st.cusum_hik = self.st.cusum_lok = self.st.cusum_h = self.st.ewma_a = NAN
        self.st.ewma_w = 1.0
        self.st.ewma_const = 0

    def _set_limits(self, double center, double sigma):
        _limits(&self.st, center, sigma)

    # --- per reading ----------------------------------------------------------------------------------

    def push(self, double x, bint ok=True):
        """Add one reading; returns the bitmask (edge.stats.rules) of what this reading fired."""
        return _push(&self.st, x, ok)

    def push_many(self, values, ok=None):
        """Add many readings (``ok``: optional array of booleans); returns the bitmask of each (uint32).

        The loop runs without the GIL.
        """
        arr, ok_arr = _readings(values, ok)
        cdef const double[::1] v = arr
        cdef const unsigned char[::1] okv = ok_arr
        cdef Py_ssize_t i, size = v.shape[0]
        cdef bint has_ok = ok is not None
        out = np.empty(size, dtype=np.uint32)
        cdef uint32_t[::1] o = out
        if size == 0:
            return out
        with nogil:
            if has_ok:
                for i in range(size):
                    o[i] = _push(&self.st, v[i], okv[i])
            else:
                for i in range(size):
                    o[i] = _push(&self.st, v[i], 1)
        return out

    def push_many_series(self, values, ok=None):
        """Like ``push_many``, and also the window's mean, std, min and max after every reading.

        Returns a dict of arrays: ``rules`` (uint32), ``mean``, ``std``, ``min``, ``max`` (float64; NaN
        while undefined) — what a chart of the whole file needs, in the same single pass.
        """
        arr, ok_arr = _readings(values, ok)
        cdef const double[::1] v = arr
        cdef const unsigned char[::1] okv = ok_arr
        cdef Py_ssize_t i, size = v.shape[0]
        cdef bint has_ok = ok is not None
        out = {"rules": np.empty(size, dtype=np.uint32), "mean": np.empty(size), "std": np.empty(size),
               "min": np.empty(size), "max": np.empty(size)}
        cdef uint32_t[::1] o = out["rules"]
        cdef double[::1] m = out["mean"], sd = out["std"], lo = out["min"], hi = out["max"]
        if size == 0:
            return out
        with nogil:
            for i in range(size):
                o[i] = _push(&self.st, v[i], (okv[i] != 0) if has_ok else True)
                _window_now(&self.st, &m[i], &sd[i], &lo[i], &hi[i])
        return out

    # --- state access for the shared API (order: edge.stats._api.SCALARS / ARRAYS) ----------------------

    def _get_scalars(self):
        return (
            self.st.n, self.st.pos, self.st.n_total, self.st.n_rejected, self.st.n_below, self.st.n_above,
            self.st.shift, self.st.mean_y, self.st.m2, self.st.m2_peak, self.st.mr_sum, self.st.last_x,
            self.st.pmax, self.st.pmin,
            self.st.sg_fill, self.st.g_pos, self.st.g_n, self.st.xbar, self.st.r, self.st.s,
            self.st.r_sum, self.st.s_sum,
            self.st.limits_known, self.st.b_n, self.st.b_spread_n, self.st.b_mean, self.st.b_spread_sum,
            self.st.b_last,
            self.st.center, self.st.sigma, self.st.sc, self.st.t1, self.st.t2, self.st.t3,
            self.st.ewma_z, self.st.ewma_w, self.st.ewma_a, self.st.ewma_ucl, self.st.ewma_lcl,
            self.st.ewma_const,
            self.st.cusum_p, self.st.cusum_n, self.st.cusum_hik, self.st.cusum_lok, self.st.cusum_h,
            self.st.has_prev, self.st.prev, self.st.run_above, self.st.run_below, self.st.run_up,
            self.st.run_down, self.st.alt_run, self.st.last_dir, self.st.within_run, self.st.beyond_run,
            self.st.h2_hi, self.st.h2_lo, self.st.h1_hi, self.st.h1_lo, self.st.last_rules,
        )

    def _set_scalars(self, values):
        (
            self.st.n, self.st.pos, self.st.n_total, self.st.n_rejected, self.st.n_below, self.st.n_above,
            self.st.shift, self.st.mean_y, self.st.m2, self.st.m2_peak, self.st.mr_sum, self.st.last_x,
            self.st.pmax, self.st.pmin,
            self.st.sg_fill, self.st.g_pos, self.st.g_n, self.st.xbar, self.st.r, self.st.s,
            self.st.r_sum, self.st.s_sum,
            self.st.limits_known, self.st.b_n, self.st.b_spread_n, self.st.b_mean, self.st.b_spread_sum,
            self.st.b_last,
            self.st.center, self.st.sigma, self.st.sc, self.st.t1, self.st.t2, self.st.t3,
            self.st.ewma_z, self.st.ewma_w, self.st.ewma_a, self.st.ewma_ucl, self.st.ewma_lcl,
            self.st.ewma_const,
            self.st.cusum_p, self.st.cusum_n, self.st.cusum_hik, self.st.cusum_lok, self.st.cusum_h,
            self.st.has_prev, self.st.prev, self.st.run_above, self.st.run_below, self.st.run_up,
            self.st.run_down, self.st.alt_run, self.st.last_dir, self.st.within_run, self.st.beyond_run,
            self.st.h2_hi, self.st.h2_lo, self.st.h1_hi, self.st.h1_lo, self.st.last_rules,
        ) = values
        # Indices must stay inside the buffers whatever the state file says.
        if not (0 <= self.st.pos < self.st.N and 0 <= self.st.n <= self.st.N and 0 <= self.st.sg_fill < self.st.k
                and 0 <= self.st.g_pos < self.st.G and 0 <= self.st.g_n <= self.st.G):
            self.reset()
            raise ValueError("statistics state: window positions out of range for this window size")

    def _get_arrays(self):
        return [
            np.asarray(<double[:self.st.N]> self.st.buf).copy(),
            np.asarray(<double[:self.st.N + 1]> self.st.smax).copy(),
            np.asarray(<double[:self.st.N + 1]> self.st.smin).copy(),
            np.asarray(<double[:10]> self.st.sg_buf).copy(),
            np.asarray(<double[:self.st.G]> self.st.r_ring).copy(),
            np.asarray(<double[:self.st.G]> self.st.s_ring).copy(),
        ]

    def _set_arrays(self, arrays):
        cdef double[::1] a
        cdef Py_ssize_t j
        targets = [(0, self.st.N), (1, self.st.N + 1), (2, self.st.N + 1), (3, 10), (4, self.st.G), (5, self.st.G)]
        for (which, size), values in zip(targets, arrays, strict=True):
            a = np.ascontiguousarray(values, dtype=np.float64)
            if a.shape[0] != size:
                raise ValueError(f"statistics state: array {which} holds {a.shape[0]} values, expected {size}")
            for j in range(size):
                if which == 0:
                    self.st.buf[j] = a[j]
                elif which == 1:
                    self.st.smax[j] = a[j]
                elif which == 2:
                    self.st.smin[j] = a[j]
                elif which == 3:
                    self.st.sg_buf[j] = a[j]
                elif which == 4:
                    self.st.r_ring[j] = a[j]
                else:
                    self.st.s_ring[j] = a[j]

    def _window_extremes(self):
        cdef Py_ssize_t p = self.st.pos
        lo = self.st.smin[p] if self.st.smin[p] < self.st.pmin else self.st.pmin
        hi = self.st.smax[p] if self.st.smax[p] > self.st.pmax else self.st.pmax
        return lo, hi
