# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -ffp-contract=off -fno-math-errno -fno-trapping-math
"""Compiled statistics core: the arithmetic half of ``edge.stats.RollingStats``.

This is ``edge/stats/reference.py`` written again in C terms, operation for operation and in the same
order, so both give the same numbers (``-ffp-contract=off`` keeps the compiler from fusing a multiply and
an add into one differently rounded FMA; ``-fno-math-errno``/``-fno-trapping-math`` change no value).
Keep the two in step; tests/test_stats_property.py holds this module to the reference bit for bit.
Argument checks, snapshots and state encoding live in ``edge/stats/_api.py``, shared by both.

Every reading goes through ``_run``, which touches only C doubles and integers and runs without the GIL:
``push(x)`` calls it for one reading, ``push_many`` for a whole numpy array in one ``nogil`` block.
Algorithms and papers: docs/statistics.md. Buffers are allocated once per
characteristic: the window ring (N doubles), the van Herk suffix extremes (2·(N+1) doubles) and, for
subgroup charts, the subgroup ranges and standard deviations (2·N/k doubles).
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport INFINITY, NAN, fabs, sqrt
from libc.stdint cimport int64_t, uint32_t

import numpy as np


def _readings(values, ok=None):
    """Values as a contiguous float64 vector and ``ok`` as a uint8 vector (empty when not given).

    The same checks as edge.stats._api.readings; repeated here so that this module imports nothing from
    edge.stats (which imports this module).
    """
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"values must be a one-dimensional array, got shape {arr.shape}")
    if ok is None:
        return arr, np.empty(0, dtype=np.uint8)
    ok_arr = np.ascontiguousarray(ok, dtype=np.bool_)
    if ok_arr.shape != arr.shape:
        raise ValueError(f"ok has shape {ok_arr.shape} but values has {arr.shape}")
    return arr, ok_arr.view(np.uint8)

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

cdef enum:
    CHUNK = 256  # readings per chunk of _run (its point buffers live on the stack)

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


cdef extern from *:
    """
    /* c > 0 ? c : 0 (NaN and -0.0 give +0.0), as one maxsd on x86-64. Written in C because the compiler
       turns the plain expression into a branch, which in-control data (C+ at 0 about half the time)
       mispredicts, or into a cmov through integer registers that lengthens the CUSUM's dependency chain. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline double fw_pos(double c) { return _mm_cvtsd_f64(_mm_max_sd(_mm_set_sd(c), _mm_setzero_pd())); }
    #else
    static inline double fw_pos(double c) { return c > 0.0 ? c : 0.0; }
    #endif
    """
    double _pos "fw_pos"(double c) noexcept nogil


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

cdef void _run(State* s, const double* values, const unsigned char* okp, uint32_t* out,
               Py_ssize_t count, double* o_mean, double* o_sd, double* o_lo, double* o_hi) noexcept nogil:
    """Push ``count`` readings. ``okp`` may be NULL (all ok); the ``o_*`` outputs may be NULL.

    The hot state lives in C locals (nothing can alias them, so the compiler keeps them in registers)
    and goes back to ``s`` only around the rare calls that work on ``s`` and at the end. Readings are
    taken in chunks of CHUNK, each in two tight loops: the window figures, then the control chart over
    that chunk's chart points (the two never depend on each other). Shorter loop bodies let the
    processor overlap more iterations; the arithmetic and its order are unchanged."""
    cdef Py_ssize_t N = s.N, k = s.k, i
    cdef double inv_n = s.inv_n, lsl = s.lsl, usl = s.usl, lam = s.lam, oml = s.oml, oml2 = s.oml2
    cdef double ewma_c = s.ewma_c
    cdef uint32_t rule_mask = s.rule_mask
    cdef double* buf = s.buf
    cdef double* smax = s.smax
    cdef double* smin = s.smin
    cdef int64_t n = s.n
    cdef int64_t pos = s.pos
    cdef double shift = s.shift
    cdef double mean_y = s.mean_y
    cdef double m2 = s.m2
    cdef double m2_peak = s.m2_peak
    cdef double mr_sum = s.mr_sum
    cdef double last_x = s.last_x
    cdef double pmax = s.pmax
    cdef double pmin = s.pmin
    cdef int64_t n_total = s.n_total
    cdef int64_t n_rejected = s.n_rejected
    cdef int64_t n_below = s.n_below
    cdef int64_t n_above = s.n_above
    cdef int64_t last_rules = s.last_rules
    cdef int64_t limits_known = s.limits_known
    cdef double center = s.center
    cdef double t1 = s.t1
    cdef double t2 = s.t2
    cdef double t3 = s.t3
    cdef double ewma_z = s.ewma_z
    cdef double ewma_w = s.ewma_w
    cdef double ewma_a = s.ewma_a
    cdef double ewma_ucl = s.ewma_ucl
    cdef double ewma_lcl = s.ewma_lcl
    cdef int64_t ewma_const = s.ewma_const
    cdef double cusum_p = s.cusum_p
    cdef double cusum_n = s.cusum_n
    cdef double cusum_hik = s.cusum_hik
    cdef double cusum_lok = s.cusum_lok
    cdef double cusum_h = s.cusum_h
    cdef int64_t has_prev = s.has_prev
    cdef double prev = s.prev
    cdef int64_t run_above = s.run_above
    cdef int64_t run_below = s.run_below
    cdef int64_t run_up = s.run_up
    cdef int64_t run_down = s.run_down
    cdef int64_t alt_run = s.alt_run
    cdef int64_t last_dir = s.last_dir
    cdef int64_t within_run = s.within_run
    cdef int64_t beyond_run = s.beyond_run
    cdef int64_t h2_hi = s.h2_hi
    cdef int64_t h2_lo = s.h2_lo
    cdef int64_t h1_hi = s.h1_hi
    cdef int64_t h1_lo = s.h1_lo
    cdef uint32_t bits, rb, hi1, lo1, hi2, lo2
    cdef int64_t ra, rbl, up, down, direction, nz, flip
    cdef double x, y, d, old, nxt, yo, mo, pt, z, q, f, cp, cn
    cdef Py_ssize_t p, start, end, j, npts, last_acc
    cdef double pts[CHUNK]
    cdef double ptr[CHUNK]
    cdef Py_ssize_t ptidx[CHUNK]
    cdef uint32_t ptbits[CHUNK]
    start = 0
    while start < count:
        end = start + CHUNK if count - start > CHUNK else count
        npts = 0
        last_acc = -1
        # pass 1: rejection, spec limits, window figures; collect the chart points
        for i in range(start, end):
            x = values[i]
            if (okp != NULL and okp[i] == 0) or not (x - x == 0.0):  # x - x is NaN for NaN and for ±inf
                n_rejected += 1
                out[i] = B_REJECTED
            else:
                bits = 0
                if x < lsl:
                    bits |= B_BELOW_LSL
                    n_below += 1
                if x > usl:
                    bits |= B_ABOVE_USL
                    n_above += 1
                p = pos
                if n == 0:
                    shift = x
                y = x - shift
                if n < N:
                    if n > 0:
                        mr_sum += fabs(x - last_x)
                    n += 1
                    d = y - mean_y
                    mean_y += d / <double> n
                    m2 += d * (y - mean_y)
                else:
                    old = buf[p]
                    nxt = buf[p + 1] if p + 1 < N else buf[0]
                    mr_sum += fabs(x - last_x) - fabs(nxt - old)
                    yo = old - shift
                    d = y - yo
                    mo = mean_y
                    mean_y = mo + d * inv_n
                    m2 += d * ((y - mean_y) + (yo - mo))
                buf[p] = x
                # Removing readings far from the rest (a level change leaving the window) makes M2 collapse
                # by cancellation: recompute exactly once it fell by 2^20 from its peak since the last one.
                m2_peak = m2 if m2 > m2_peak else m2_peak
                if m2 < m2_peak * CANCELLATION:
                    s.shift = shift
                    s.mean_y = mean_y
                    s.m2 = m2
                    s.m2_peak = m2_peak
                    _exact_moments(s, n)
                    shift = s.shift
                    mean_y = s.mean_y
                    m2 = s.m2
                    m2_peak = s.m2_peak
                pmax = x if x > pmax else pmax
                pmin = x if x < pmin else pmin
                last_x = x
                p += 1
                if p == N:
                    s.shift = shift
                    s.mean_y = mean_y
                    s.m2 = m2
                    s.m2_peak = m2_peak
                    s.pmax = pmax
                    s.pmin = pmin
                    s.mr_sum = mr_sum
                    _block_end(s)
                    shift = s.shift
                    mean_y = s.mean_y
                    m2 = s.m2
                    m2_peak = s.m2_peak
                    pmax = s.pmax
                    pmin = s.pmin
                    mr_sum = s.mr_sum
                    p = 0
                pos = p
                n_total += 1

                if k == 1:
                    pts[npts] = x
                    ptidx[npts] = i
                    ptbits[npts] = bits
                    npts += 1
                else:
                    s.sg_buf[s.sg_fill] = x
                    s.sg_fill += 1
                    if s.sg_fill == k:
                        s.sg_fill = 0
                        _subgroup_end(s)
                        pts[npts] = s.xbar
                        ptr[npts] = s.r
                        ptidx[npts] = i
                        ptbits[npts] = bits
                        npts += 1
                    else:
                        out[i] = bits
                last_acc = i
            if o_mean != NULL:
                if n == 0:
                    o_mean[i] = o_sd[i] = o_lo[i] = o_hi[i] = NAN
                else:
                    o_mean[i] = shift + mean_y
                    o_sd[i] = sqrt((m2 if m2 > 0.0 else 0.0) / <double> (n - 1)) if n >= 2 else NAN
                    o_lo[i] = smin[pos] if smin[pos] < pmin else pmin
                    o_hi[i] = smax[pos] if smax[pos] > pmax else pmax
        # pass 2: the control chart (baseline learning, rules, EWMA, CUSUM) over the chunk's points
        for j in range(npts):
            pt = pts[j]
            if not limits_known:
                out[ptidx[j]] = ptbits[j]
                _baseline_point(s, pt, ptr[j])
                limits_known = s.limits_known
                center = s.center
                t1 = s.t1
                t2 = s.t2
                t3 = s.t3
                ewma_z = s.ewma_z
                ewma_w = s.ewma_w
                ewma_a = s.ewma_a
                ewma_ucl = s.ewma_ucl
                ewma_lcl = s.ewma_lcl
                ewma_const = s.ewma_const
                cusum_p = s.cusum_p
                cusum_n = s.cusum_n
                cusum_hik = s.cusum_hik
                cusum_lok = s.cusum_lok
                cusum_h = s.cusum_h
                has_prev = s.has_prev
                prev = s.prev
                run_above = s.run_above
                run_below = s.run_below
                run_up = s.run_up
                run_down = s.run_down
                alt_run = s.alt_run
                last_dir = s.last_dir
                within_run = s.within_run
                beyond_run = s.beyond_run
                h2_hi = s.h2_hi
                h2_lo = s.h2_lo
                h1_hi = s.h1_hi
                h1_lo = s.h1_lo
                continue
            # Integer logic without data-dependent branches (random data would mispredict them half
            # the time); edge/stats/reference.py spells out the same logic with if/else.
            rb = 0
            d = pt - center
            hi1 = d > t1
            lo1 = d < -t1
            hi2 = d > t2
            lo2 = d < -t2
            rb |= (B_NELSON_1 | B_WE_1) * <uint32_t> ((d > t3) | (d < -t3))
            # (r + 1) & -cond: a run counter that restarts at 0, with a 2-cycle dependency chain
            ra = (run_above + 1) & -<int64_t> (d > 0.0)
            rbl = (run_below + 1) & -<int64_t> (d < 0.0)
            run_above = ra
            run_below = rbl
            rb |= B_NELSON_2 * <uint32_t> ((ra >= 9) | (rbl >= 9))
            rb |= B_WE_4 * <uint32_t> ((ra >= 8) | (rbl >= 8))
            if has_prev:
                up = pt > prev
                down = pt < prev
                run_up = (run_up + 1) & -up
                run_down = (run_down + 1) & -down
                direction = up - down
                nz = direction != 0
                flip = nz & (direction == -last_dir)
                alt_run = (alt_run & -flip) + nz
                last_dir = direction
                rb |= B_NELSON_3 * <uint32_t> ((run_up >= 5) | (run_down >= 5))
                rb |= B_NELSON_4 * <uint32_t> (alt_run >= 13)
            prev = pt
            has_prev = 1
            h2_hi = ((h2_hi << 1) | hi2) & 7
            h2_lo = ((h2_lo << 1) | lo2) & 7
            rb |= (B_NELSON_5 | B_WE_2) * (((hi2 & (POP3_GE2 >> h2_hi)) | (lo2 & (POP3_GE2 >> h2_lo))) & 1)
            h1_hi = ((h1_hi << 1) | hi1) & 31
            h1_lo = ((h1_lo << 1) | lo1) & 31
            rb |= (B_NELSON_6 | B_WE_3) * (((hi1 & (POP5_GE4 >> h1_hi)) | (lo1 & (POP5_GE4 >> h1_lo))) & 1)
            within_run = (within_run + 1) & -<int64_t> ((d < t1) & (d > -t1))
            beyond_run = (beyond_run + 1) & -<int64_t> (hi1 | lo1)
            rb |= B_NELSON_7 * <uint32_t> (within_run >= 15)
            rb |= B_NELSON_8 * <uint32_t> (beyond_run >= 8)
            rb &= rule_mask

            z = lam * pt + oml * ewma_z
            ewma_z = z
            if not ewma_const:
                ewma_w *= oml2
                q = 1.0 - ewma_w
                f = ewma_a * sqrt(ewma_c * q)
                ewma_ucl = center + f
                ewma_lcl = center - f
                if q == 1.0:
                    ewma_const = 1
            rb |= B_EWMA_HIGH * <uint32_t> (z > ewma_ucl)
            rb |= B_EWMA_LOW * <uint32_t> (z < ewma_lcl)

            cp = pt - cusum_hik + cusum_p
            cp = _pos(cp)
            cn = cusum_lok - pt + cusum_n
            cn = _pos(cn)
            cusum_p = cp
            cusum_n = cn
            rb |= B_CUSUM_HIGH * <uint32_t> (cp > cusum_h)
            rb |= B_CUSUM_LOW * <uint32_t> (cn > cusum_h)
            out[ptidx[j]] = ptbits[j] | rb
        if last_acc >= 0:
            last_rules = out[last_acc]
        start = end
    s.n = n
    s.pos = pos
    s.shift = shift
    s.mean_y = mean_y
    s.m2 = m2
    s.m2_peak = m2_peak
    s.mr_sum = mr_sum
    s.last_x = last_x
    s.pmax = pmax
    s.pmin = pmin
    s.n_total = n_total
    s.n_rejected = n_rejected
    s.n_below = n_below
    s.n_above = n_above
    s.last_rules = last_rules
    s.limits_known = limits_known
    s.center = center
    s.t1 = t1
    s.t2 = t2
    s.t3 = t3
    s.ewma_z = ewma_z
    s.ewma_w = ewma_w
    s.ewma_a = ewma_a
    s.ewma_ucl = ewma_ucl
    s.ewma_lcl = ewma_lcl
    s.ewma_const = ewma_const
    s.cusum_p = cusum_p
    s.cusum_n = cusum_n
    s.cusum_hik = cusum_hik
    s.cusum_lok = cusum_lok
    s.cusum_h = cusum_h
    s.has_prev = has_prev
    s.prev = prev
    s.run_above = run_above
    s.run_below = run_below
    s.run_up = run_up
    s.run_down = run_down
    s.alt_run = alt_run
    s.last_dir = last_dir
    s.within_run = within_run
    s.beyond_run = beyond_run
    s.h2_hi = h2_hi
    s.h2_lo = h2_lo
    s.h1_hi = h1_hi
    s.h1_lo = h1_lo


cdef void _baseline_point(State* s, double v, double r) noexcept nogil:
    """A chart point while control limits are being learned (centre = mean, σ = mean spread / d2)."""
    s.b_n += 1
    s.b_mean += (v - s.b_mean) / <double> s.b_n
    if s.k == 1:
        if s.b_n > 1:
            s.b_spread_sum += fabs(v - s.b_last)
            s.b_spread_n += 1
        s.b_last = v
    else:
        s.b_spread_sum += r
        s.b_spread_n += 1
    if s.b_n >= s.Mg and s.b_spread_sum > 0.0:
        _limits(s, s.b_mean, (s.b_spread_sum / <double> s.b_spread_n) / s.d2k)


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
        cdef uint32_t out
        cdef unsigned char flag = ok
        _run(&self.st, &x, &flag, &out, 1, NULL, NULL, NULL, NULL)
        return out

    def push_many(self, values, ok=None):
        """Add many readings (``ok``: optional array of booleans); returns the bitmask of each (uint32).

        The loop runs without the GIL.
        """
        arr, ok_arr = _readings(values, ok)
        cdef const double[::1] v = arr
        cdef const unsigned char[::1] okv = ok_arr
        cdef Py_ssize_t size = v.shape[0]
        out = np.empty(size, dtype=np.uint32)
        cdef uint32_t[::1] o = out
        if size == 0:
            return out
        with nogil:
            _run(&self.st, &v[0], &okv[0] if ok is not None else NULL, &o[0], size, NULL, NULL, NULL, NULL)
        return out

    def push_many_series(self, values, ok=None):
        """Like ``push_many``, and also the window's mean, std, min and max after every reading.

        Returns a dict of arrays: ``rules`` (uint32), ``mean``, ``std``, ``min``, ``max`` (float64; NaN
        while undefined) — what a chart of the whole file needs, in the same single pass.
        """
        arr, ok_arr = _readings(values, ok)
        cdef const double[::1] v = arr
        cdef const unsigned char[::1] okv = ok_arr
        cdef Py_ssize_t size = v.shape[0]
        out = {"rules": np.empty(size, dtype=np.uint32), "mean": np.empty(size), "std": np.empty(size),
               "min": np.empty(size), "max": np.empty(size)}
        cdef uint32_t[::1] o = out["rules"]
        cdef double[::1] m = out["mean"], sd = out["std"], lo = out["min"], hi = out["max"]
        if size == 0:
            return out
        with nogil:
            _run(&self.st, &v[0], &okv[0] if ok is not None else NULL, &o[0], size, &m[0], &sd[0], &lo[0],
                 &hi[0])
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
