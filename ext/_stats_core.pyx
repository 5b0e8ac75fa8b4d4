# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -ffp-contract=off -fno-math-errno -fno-trapping-math
"""Compiled statistics core: the arithmetic half of ``floorwatch.edge.stats.RollingStats``.

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

One place departs from the reference's shape, not its results: the twelve chart rules. The reference
keeps run counters and shift registers updated point by point; ``_chart_words`` takes up to 48 chart
points at once, records each point's zone tests as one bit per test in 64-bit words, and evaluates
"9 in a row", "2 of 3 beyond 2σ" and the rest with a few shifts and ANDs per word, then turns the words
back into the same counters and registers (integer logic only, so nothing can round differently).
``_chart_point`` is the reference's per-point logic, kept for the states the words do not cover.
The zone tests and the CUSUM's C+/C- run on pairs of doubles (``fw_v2``: SSE2 on x86-64, plain C
elsewhere; per-lane IEEE operations, so the same results either way; ``PAIRS`` says which).
tests/test_stats_wordwise.py holds all of this to the reference on long streams that fire every rule.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport INFINITY, NAN, fabs, sqrt
from libc.stdint cimport int64_t, uint32_t, uint64_t

import numpy as np


def _readings(values, ok=None):
    """Values as a contiguous float64 vector and ``ok`` as a uint8 vector (empty when not given).

    The same checks as floorwatch.edge.stats._api.readings; repeated here so that this module imports nothing from
    floorwatch.edge.stats (which imports this module).
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
    WORD = 48  # chart points per word of _chart_words (64 bits less 16 of history)
    CHUNK = WORD  # readings per chunk of _run (its point buffers live on the stack)

cdef uint32_t POP3_GE2 = 0xE8
cdef double CANCELLATION = 9.5367431640625e-07  # 2**-20
cdef uint32_t POP5_GE4 = (1u << 15) | (1u << 23) | (1u << 27) | (1u << 29) | (1u << 30) | (1u << 31)

# How the chart loop's pairs of doubles are computed: "sse2" or "portable" (plain C; same results).
PAIRS = FW_PAIRS.decode()

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


cdef extern from *:
    """
    /* Two doubles side by side: one SSE2 register on x86-64, a plain pair elsewhere (or with
       -DFW_NO_SIMD). Every operation is the same IEEE operation on each lane, so both give the same
       results; comparisons come back as a 2-bit mask, bit 0 for lane 0. */
    #if defined(__SSE2__) && !defined(FW_NO_SIMD)
    #include <emmintrin.h>
    #define FW_PAIRS "sse2"
    typedef __m128d fw_v2;
    static inline fw_v2 fw_set(double lo, double hi) { return _mm_set_pd(hi, lo); }
    static inline fw_v2 fw_dup(double x) { return _mm_set1_pd(x); }
    /* p[1] in lane 0, p[0] in lane 1: the later point first, as the rule words want it */
    static inline fw_v2 fw_load_rev(const double* p) { __m128d v = _mm_loadu_pd(p); return _mm_shuffle_pd(v, v, 1); }
    /* lane 0: lane 1 of cur; lane 1: lane 0 of last */
    static inline fw_v2 fw_before(fw_v2 cur, fw_v2 last) { return _mm_shuffle_pd(cur, last, 1); }
    static inline fw_v2 fw_sub(fw_v2 a, fw_v2 b) { return _mm_sub_pd(a, b); }
    static inline fw_v2 fw_add(fw_v2 a, fw_v2 b) { return _mm_add_pd(a, b); }
    static inline fw_v2 fw_abs(fw_v2 a) { return _mm_and_pd(a, _mm_castsi128_pd(_mm_set1_epi64x(0x7fffffffffffffffLL))); }
    /* a > 0 ? a : 0 per lane (NaN and -0.0 give +0.0), like fw_pos */
    static inline fw_v2 fw_pos2(fw_v2 a) { return _mm_max_pd(a, _mm_setzero_pd()); }
    static inline unsigned fw_gt(fw_v2 a, fw_v2 b) { return (unsigned) _mm_movemask_pd(_mm_cmpgt_pd(a, b)); }
    static inline unsigned fw_lt(fw_v2 a, fw_v2 b) { return (unsigned) _mm_movemask_pd(_mm_cmplt_pd(a, b)); }
    static inline double fw_lo(fw_v2 a) { return _mm_cvtsd_f64(a); }
    static inline double fw_hi(fw_v2 a) { return _mm_cvtsd_f64(_mm_unpackhi_pd(a, a)); }
    #else
    #define FW_PAIRS "portable"
    typedef struct { double l, h; } fw_v2;
    static inline fw_v2 fw_set(double lo, double hi) { fw_v2 r = {lo, hi}; return r; }
    static inline fw_v2 fw_dup(double x) { fw_v2 r = {x, x}; return r; }
    static inline fw_v2 fw_load_rev(const double* p) { fw_v2 r = {p[1], p[0]}; return r; }
    static inline fw_v2 fw_before(fw_v2 cur, fw_v2 last) { fw_v2 r = {cur.h, last.l}; return r; }
    static inline fw_v2 fw_sub(fw_v2 a, fw_v2 b) { fw_v2 r = {a.l - b.l, a.h - b.h}; return r; }
    static inline fw_v2 fw_add(fw_v2 a, fw_v2 b) { fw_v2 r = {a.l + b.l, a.h + b.h}; return r; }
    static inline fw_v2 fw_abs(fw_v2 a) { fw_v2 r = {fabs(a.l), fabs(a.h)}; return r; }
    static inline fw_v2 fw_pos2(fw_v2 a) { fw_v2 r = {fw_pos(a.l), fw_pos(a.h)}; return r; }
    static inline unsigned fw_gt(fw_v2 a, fw_v2 b) { return (unsigned) (a.l > b.l) | ((unsigned) (a.h > b.h) << 1); }
    static inline unsigned fw_lt(fw_v2 a, fw_v2 b) { return (unsigned) (a.l < b.l) | ((unsigned) (a.h < b.h) << 1); }
    static inline double fw_lo(fw_v2 a) { return a.l; }
    static inline double fw_hi(fw_v2 a) { return a.h; }
    #endif
    """
    const char* FW_PAIRS
    ctypedef struct fw_v2:
        pass
    fw_v2 _set "fw_set"(double lo, double hi) noexcept nogil
    fw_v2 _dup "fw_dup"(double x) noexcept nogil
    fw_v2 _load_rev "fw_load_rev"(const double* p) noexcept nogil
    fw_v2 _before "fw_before"(fw_v2 cur, fw_v2 last) noexcept nogil
    fw_v2 _sub2 "fw_sub"(fw_v2 a, fw_v2 b) noexcept nogil
    fw_v2 _add2 "fw_add"(fw_v2 a, fw_v2 b) noexcept nogil
    fw_v2 _abs2 "fw_abs"(fw_v2 a) noexcept nogil
    fw_v2 _pos2 "fw_pos2"(fw_v2 a) noexcept nogil
    unsigned _gt2 "fw_gt"(fw_v2 a, fw_v2 b) noexcept nogil
    unsigned _lt2 "fw_lt"(fw_v2 a, fw_v2 b) noexcept nogil
    double _lo "fw_lo"(fw_v2 a) noexcept nogil
    double _hi "fw_hi"(fw_v2 a) noexcept nogil


cdef extern from *:
    """
    /* Index of the lowest set bit of a non-zero word (one tzcnt/bsf or rbit+clz). */
    static inline Py_ssize_t fw_ctz(unsigned long long v) { return __builtin_ctzll(v); }
    """
    Py_ssize_t _ctz "fw_ctz"(unsigned long long v) noexcept nogil

# The rule bits of each word of _chart_words, in its order.
cdef uint32_t _WORD_BITS[9]
_WORD_BITS[:] = [B_NELSON_1 | B_WE_1, B_NELSON_2, B_NELSON_3, B_NELSON_4, B_NELSON_5 | B_WE_2,
                 B_NELSON_6 | B_WE_3, B_NELSON_7, B_NELSON_8, B_WE_4]


cdef double* _alloc(Py_ssize_t size) except NULL:
    cdef double* p = <double*> PyMem_Malloc((size if size > 0 else 1) * sizeof(double))
    if p == NULL:
        raise MemoryError(f"cannot allocate {size} doubles for the statistics window")
    return p


cdef struct State:
    # parameters, buffers, then the state (same names, meaning and order as floorwatch.edge.stats._api.SCALARS)
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

cdef uint32_t _chart_point(State* s, double v) noexcept nogil:
    """One chart point with limits known, one comparison at a time: the reference's ``_chart_point``
    word for word. Used for the first point after limits are set (no previous point yet) and for
    states the word-wise path does not cover (see ``_words_apply``); ``_chart_words`` does the rest."""
    cdef uint32_t rb = 0, hi1, lo1, hi2, lo2
    cdef int64_t direction
    cdef double d = v - s.center, z, q, f, cp, cn
    hi1 = d > s.t1
    lo1 = d < -s.t1
    hi2 = d > s.t2
    lo2 = d < -s.t2
    if d > s.t3 or d < -s.t3:
        rb |= B_NELSON_1 | B_WE_1
    s.run_above = s.run_above + 1 if d > 0.0 else 0
    s.run_below = s.run_below + 1 if d < 0.0 else 0
    if s.run_above >= 9 or s.run_below >= 9:
        rb |= B_NELSON_2
    if s.run_above >= 8 or s.run_below >= 8:
        rb |= B_WE_4
    if s.has_prev:
        if v > s.prev:
            s.run_up += 1
            s.run_down = 0
            direction = 1
        elif v < s.prev:
            s.run_down += 1
            s.run_up = 0
            direction = -1
        else:
            s.run_up = s.run_down = 0
            direction = 0
        if direction != 0 and direction == -s.last_dir:
            s.alt_run += 1
        elif direction != 0:
            s.alt_run = 1
        else:
            s.alt_run = 0
        s.last_dir = direction
        if s.run_up >= 5 or s.run_down >= 5:
            rb |= B_NELSON_3
        if s.alt_run >= 13:
            rb |= B_NELSON_4
    s.prev = v
    s.has_prev = 1
    s.h2_hi = ((s.h2_hi << 1) | hi2) & 7
    s.h2_lo = ((s.h2_lo << 1) | lo2) & 7
    if (hi2 and (POP3_GE2 >> s.h2_hi) & 1) or (lo2 and (POP3_GE2 >> s.h2_lo) & 1):
        rb |= B_NELSON_5 | B_WE_2
    s.h1_hi = ((s.h1_hi << 1) | hi1) & 31
    s.h1_lo = ((s.h1_lo << 1) | lo1) & 31
    if (hi1 and (POP5_GE4 >> s.h1_hi) & 1) or (lo1 and (POP5_GE4 >> s.h1_lo) & 1):
        rb |= B_NELSON_6 | B_WE_3
    s.within_run = s.within_run + 1 if (d < s.t1 and d > -s.t1) else 0
    s.beyond_run = s.beyond_run + 1 if (hi1 or lo1) else 0
    if s.within_run >= 15:
        rb |= B_NELSON_7
    if s.beyond_run >= 8:
        rb |= B_NELSON_8
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
    cp = _pos(cp)
    cn = s.cusum_lok - v + s.cusum_n
    cn = _pos(cn)
    s.cusum_p = cp
    s.cusum_n = cn
    if cp > s.cusum_h:
        rb |= B_CUSUM_HIGH
    if cn > s.cusum_h:
        rb |= B_CUSUM_LOW
    return rb


cdef inline bint _words_apply(State* s) noexcept nogil:
    """Whether ``_chart_words`` gives exactly what ``_chart_point`` gives from this state: there is a
    previous point, the zone widths are not negative (so ``d > t`` is ``d > 0 and |d| > t``) and the
    counters hold what the core itself can produce. Always true except right after limits are set
    (no previous point) or for a hand-made state."""
    return (s.has_prev == 1 and s.t1 >= 0.0 and s.t2 >= 0.0 and s.t3 >= 0.0
            and (s.run_above | s.run_below | s.run_up | s.run_down | s.alt_run | s.within_run
                 | s.beyond_run) >= 0
            and -1 <= s.last_dir <= 1 and (s.alt_run > 0) == (s.last_dir != 0)
            and 0 <= s.h2_hi <= 7 and 0 <= s.h2_lo <= 7 and 0 <= s.h1_hi <= 31 and 0 <= s.h1_lo <= 31)


cdef inline uint64_t _hist(int64_t run) noexcept nogil:
    """A run counter as its last 16 points of history: bit b set if the point b+1 back was in the run."""
    return 0xFFFF if run >= 16 else (<uint64_t> 1 << run) - 1


cdef inline uint64_t _run8(uint64_t f) noexcept nogil:
    """Bit b set where bits b..b+7 of f are all set: 8 points in a row ending at point b."""
    f &= f >> 1
    f &= f >> 2
    return f & (f >> 4)


cdef inline int64_t _trail(uint64_t m, uint64_t valid, Py_ssize_t count, int64_t run) noexcept nogil:
    """A run counter after ``count`` points whose membership is ``m`` (bit 0 the latest point)."""
    if m == valid:
        return run + count
    return _ctz(~m)


cdef inline uint32_t _signals(State* s, double pt, double* z, double* ucl, double* lcl, fw_v2* cusum,
                              double lam, double oml, double center, double hik, double lok,
                              fw_v2 vh) noexcept nogil:
    """EWMA and CUSUM bits of one chart point: the reference's operations, C+ and C- in the two lanes
    ([v - K+, K- - v] + [C+, C-], then max with 0), all four comparisons as two 2-bit masks."""
    cdef double q, f
    z[0] = lam * pt + oml * z[0]
    if not s.ewma_const:
        s.ewma_w *= s.oml2
        q = 1.0 - s.ewma_w
        f = s.ewma_a * sqrt(s.ewma_c * q)
        ucl[0] = center + f
        lcl[0] = center - f
        if q == 1.0:
            s.ewma_const = 1
    cusum[0] = _pos2(_add2(_sub2(_set(pt, lok), _set(hik, pt)), cusum[0]))
    # bit 0: z > UCL, bit 1: z < LCL; then bit 2: C+ > H, bit 3: C- > H
    return (_lt2(_set(ucl[0], z[0]), _set(z[0], lcl[0])) | (_gt2(cusum[0], vh) << 2)) * B_EWMA_HIGH


cdef void _chart_words(State* s, const double* pts, const Py_ssize_t* idx, const uint32_t* pbits,
                       Py_ssize_t m, uint32_t* out) noexcept nogil:
    """``m`` (at most WORD) chart points with limits known, all twelve rules at once on bit words.

    The point loop only classifies each point (one bit per zone test, shifted into a word: bit 0 is the
    latest point, bit b the point b back) and runs the EWMA and CUSUM recurrences, which are the only
    floating-point state. Above the ``m`` point bits each word carries the history the state's run
    counters and shift registers stand for, so "9 in a row", "2 of 3" and the rest become a few shifts
    and ANDs per word instead of counter updates per point. Rule firings are rare in control; each one
    sets its bit in the output with one OR. The state comes out exactly as ``_chart_point`` leaves it."""
    cdef double center = s.center, t1 = s.t1, t2 = s.t2, t3 = s.t3
    cdef double lam = s.lam, oml = s.oml, z = s.ewma_z, ucl = s.ewma_ucl, lcl = s.ewma_lcl
    cdef double hik = s.cusum_hik, lok = s.cusum_lok
    cdef fw_v2 v, before, last, d2, ad2, zero = _dup(0.0), vc = _dup(center), vt1 = _dup(t1)
    cdef fw_v2 vt2 = _dup(t2), vt3 = _dup(t3), vh = _dup(s.cusum_h), cusum = _set(s.cusum_p, s.cusum_n)
    cdef uint64_t a = 0, b = 0, s1 = 0, s2 = 0, s3 = 0, w = 0, up = 0, dn = 0
    cdef uint64_t valid = (<uint64_t> 1 << m) - 1, fa, fb, fup, fdn, flip, fh2, fl2, fh1, fl1, fw, fs1, x
    cdef uint64_t r4a, r4b, c1, c2, c3, c4, word
    cdef uint64_t words[9]
    cdef uint32_t rb, rule_mask = s.rule_mask
    cdef Py_ssize_t j, k
    last = _dup(s.prev)
    # Zone tests two points at a time (lane 0 the later point, so each 2-bit mask shifts straight into
    # the words); an odd first point alone. Then EWMA and CUSUM point by point ([C+, C-] side by side).
    j = 0
    if m & 1:
        v = _dup(pts[0])
        before = _before(last, last)
        last = v
        j = 1
        d2 = _sub2(v, vc)
        ad2 = _abs2(d2)
        a = _gt2(d2, zero) & 1
        b = _lt2(d2, zero) & 1
        s1 = _gt2(ad2, vt1) & 1
        s2 = _gt2(ad2, vt2) & 1
        s3 = _gt2(ad2, vt3) & 1
        w = _lt2(ad2, vt1) & 1
        up = _gt2(v, before) & 1
        dn = _lt2(v, before) & 1
        out[idx[0]] = pbits[0] | _signals(s, pts[0], &z, &ucl, &lcl, &cusum, lam, oml, center, hik, lok, vh)
    while j < m:
        v = _load_rev(pts + j)
        before = _before(v, last)
        last = v
        d2 = _sub2(v, vc)
        ad2 = _abs2(d2)
        a = a * 4 + _gt2(d2, zero)
        b = b * 4 + _lt2(d2, zero)
        s1 = s1 * 4 + _gt2(ad2, vt1)
        s2 = s2 * 4 + _gt2(ad2, vt2)
        s3 = s3 * 4 + _gt2(ad2, vt3)
        w = w * 4 + _lt2(ad2, vt1)
        up = up * 4 + _gt2(v, before)
        dn = dn * 4 + _lt2(v, before)
        out[idx[j]] = pbits[j] | _signals(s, pts[j], &z, &ucl, &lcl, &cusum, lam, oml, center, hik, lok, vh)
        out[idx[j + 1]] = pbits[j + 1] | _signals(s, pts[j + 1], &z, &ucl, &lcl, &cusum, lam, oml, center,
                                                  hik, lok, vh)
        j += 2
    s.prev = pts[m - 1]
    s.ewma_z = z
    s.ewma_ucl = ucl
    s.ewma_lcl = lcl
    s.cusum_p = _lo(cusum)
    s.cusum_n = _hi(cusum)

    # Words with history: bit m + b is the point b + 1 before this block (m <= WORD leaves 16 bits).
    fa = a | (_hist(s.run_above) << m)
    fb = b | (_hist(s.run_below) << m)
    fup = up | (_hist(s.run_up) << m)
    fdn = dn | (_hist(s.run_down) << m)
    fw = w | (_hist(s.within_run) << m)
    fs1 = s1 | (_hist(s.beyond_run) << m)
    # a flip: a move opposite to the one before (the move before the block is last_dir)
    flip = ((up & ((dn | (<uint64_t> (s.last_dir == -1) << m)) >> 1))
            | (dn & ((up | (<uint64_t> (s.last_dir == 1) << m)) >> 1)))
    # alt_run r >= 1 means the last r - 1 points were flips
    flip = flip | (_hist(s.alt_run - 1 if s.alt_run > 0 else 0) << m)
    fh2 = (s2 & a) | (<uint64_t> s.h2_hi << m)
    fl2 = (s2 & b) | (<uint64_t> s.h2_lo << m)
    fh1 = (s1 & a) | (<uint64_t> s.h1_hi << m)
    fl1 = (s1 & b) | (<uint64_t> s.h1_lo << m)

    r4a = fa & (fa >> 1)
    r4a &= r4a >> 2
    r4b = fb & (fb >> 1)
    r4b &= r4b >> 2
    words[0] = s3                                                    # N1, WE1: beyond 3 sigma
    x = (r4a & (r4a >> 4)) | (r4b & (r4b >> 4))                      # 8 in a row on one side
    words[8] = x                                                     # WE4
    words[1] = (r4a & (r4a >> 4) & (fa >> 8)) | (r4b & (r4b >> 4) & (fb >> 8))  # N2: 9 in a row
    c1 = fup & (fup >> 1)
    c1 &= c1 >> 2
    c2 = fdn & (fdn >> 1)
    c2 &= c2 >> 2
    words[2] = (c1 & (fup >> 4)) | (c2 & (fdn >> 4))                 # N3: 5 moves (6 points) one way
    c3 = _run8(flip)
    words[3] = c3 & (c3 >> 4)                                        # N4: 12 flips (14 points)
    words[4] = ((fh2 & ((fh2 >> 1) | (fh2 >> 2)))
                | (fl2 & ((fl2 >> 1) | (fl2 >> 2))))                 # N5, WE2: 2 of 3 beyond 2 sigma
    c1 = fh1 >> 1
    c2 = fh1 >> 2
    c3 = fh1 >> 3
    c4 = fh1 >> 4
    x = fh1 & ((c1 & c2 & (c3 | c4)) | (c3 & c4 & (c1 | c2)))
    c1 = fl1 >> 1
    c2 = fl1 >> 2
    c3 = fl1 >> 3
    c4 = fl1 >> 4
    words[5] = x | (fl1 & ((c1 & c2 & (c3 | c4)) | (c3 & c4 & (c1 | c2))))  # N6, WE3: 4 of 5 beyond 1
    c1 = _run8(fw)
    words[6] = c1 & (c1 >> 7)                                        # N7: 15 within 1 sigma
    words[7] = _run8(fs1)                                            # N8: 8 beyond 1 sigma
    # One pass over the points where any enabled rule fired (one hard-to-predict loop, not nine).
    word = 0
    for k in range(9):
        words[k] &= valid & -<uint64_t> ((rule_mask & _WORD_BITS[k]) != 0)
        word |= words[k]
    while word:
        j = _ctz(word)
        rb = 0
        for k in range(9):
            rb |= _WORD_BITS[k] * <uint32_t> ((words[k] >> j) & 1)
        out[idx[m - 1 - j]] |= rb & rule_mask
        word &= word - 1

    s.run_above = _trail(a, valid, m, s.run_above)
    s.run_below = _trail(b, valid, m, s.run_below)
    s.run_up = _trail(up, valid, m, s.run_up)
    s.run_down = _trail(dn, valid, m, s.run_down)
    s.within_run = _trail(w, valid, m, s.within_run)
    s.beyond_run = _trail(s1, valid, m, s.beyond_run)
    x = flip & valid
    if x == valid:
        s.alt_run = s.alt_run + m
    elif x & 1:
        s.alt_run = _ctz(~x) + 1
    else:
        s.alt_run = (up | dn) & 1
    s.last_dir = <int64_t> (up & 1) - <int64_t> (dn & 1)
    s.h2_hi = fh2 & 7
    s.h2_lo = fl2 & 7
    s.h1_hi = fh1 & 31
    s.h1_lo = fl1 & 31


cdef void _run(State* s, const double* values, const unsigned char* okp, uint32_t* out,
               Py_ssize_t count, double* o_mean, double* o_sd, double* o_lo, double* o_hi) noexcept nogil:
    """Push ``count`` readings. ``okp`` may be NULL (all ok); the ``o_*`` outputs may be NULL.

    The hot state lives in C locals (nothing can alias them, so the compiler keeps them in registers)
    and goes back to ``s`` only around the rare calls that work on ``s`` and at the end. Readings are
    taken in chunks of CHUNK (= WORD, so a chunk's chart points fit one word), each in two tight loops:
    the window figures, then the control chart over that chunk's chart points (the two never depend on
    each other). Shorter loop bodies let the processor overlap more iterations; the arithmetic and its
    order are unchanged."""
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
    cdef uint32_t bits
    cdef double x, y, d, old, nxt, yo, mo
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
        j = 0
        while j < npts:
            if not s.limits_known:
                out[ptidx[j]] = ptbits[j]
                _baseline_point(s, pts[j], ptr[j])
                j += 1
            elif not _words_apply(s):
                out[ptidx[j]] = ptbits[j] | _chart_point(s, pts[j])
                j += 1
            else:
                _chart_words(s, pts + j, ptidx + j, ptbits + j, npts - j, out)
                j = npts
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
    """The window is exactly buf[0..N-1] in order: suffix extremes and an exact recomputation.

    The reference's three loops (suffix extremes, ``_exact_moments``, moving ranges) fused into two,
    with the same operations in the same order for every sum: each running sum is a chain of dependent
    additions, and chains side by side in one loop overlap instead of running one after another."""
    cdef Py_ssize_t j, N = s.N
    cdef double* buf = s.buf
    cdef double* smax = s.smax
    cdef double* smin = s.smin
    cdef double mx = -INFINITY, mn = INFINITY, v, mr = 0.0
    cdef double shift = s.shift + s.mean_y, t = 0.0, mean, s2, c, d
    for j in range(N):
        t += buf[j] - shift
        v = buf[N - 1 - j]
        mx = v if v > mx else mx
        mn = v if v < mn else mn
        smax[N - 1 - j] = mx
        smin[N - 1 - j] = mn
    mean = t / <double> N
    d = (buf[0] - shift) - mean
    s2 = 0.0 + d * d  # the reference's first step of each sum, from 0.0
    c = 0.0 + d
    for j in range(1, N):
        d = (buf[j] - shift) - mean
        s2 += d * d
        c += d
        mr += fabs(buf[j] - buf[j - 1])
    s.m2 = s2 - c * c / <double> N
    s.mean_y = mean
    s.shift = shift
    s.m2_peak = s.m2
    s.pmax = -INFINITY
    s.pmin = INFINITY
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
    """State and per-reading arithmetic; see floorwatch.edge.stats.reference.RollingStats for the specification."""

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
        """Add one reading; returns the bitmask (floorwatch.edge.stats.rules) of what this reading fired."""
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

    # --- state access for the shared API (order: floorwatch.edge.stats._api.SCALARS / ARRAYS) ----------------------

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
