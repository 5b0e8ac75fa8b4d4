"""Bit layout of the per-point result of the statistics core, and helpers to read it.

Every accepted reading yields one unsigned 32-bit mask. The layout is stable (it is stored in spools,
published in snapshots and read by the alerting), so bits are only ever added, never moved:

====  ==============  =====================================================================
bit   name            meaning (zones are measured from the centre line in σ of the charted value)
====  ==============  =====================================================================
0     nelson_1        one point beyond 3σ
1     nelson_2        9 points in a row on one side of the centre line
2     nelson_3        6 points in a row steadily increasing or decreasing
3     nelson_4        14 points in a row alternating up and down
4     nelson_5        2 of 3 points beyond 2σ on the same side (the latest among them)
5     nelson_6        4 of 5 points beyond 1σ on the same side (the latest among them)
6     nelson_7        15 points in a row within 1σ, either side
7     nelson_8        8 points in a row beyond 1σ, either side, none within 1σ
8     we_1            Western Electric 1: one point beyond 3σ
9     we_2            Western Electric 2: 2 of 3 beyond 2σ, same side
10    we_3            Western Electric 3: 4 of 5 beyond 1σ, same side
11    we_4            Western Electric 4: 8 in a row on one side
12    ewma_high       EWMA above its upper control limit (slow upward drift)
13    ewma_low        EWMA below its lower control limit (slow downward drift)
14    cusum_high      upper tabular CUSUM C⁺ above H = h·σ
15    cusum_low       lower tabular CUSUM C⁻ above H = h·σ
16    below_lsl       this reading is below the lower spec limit
17    above_usl       this reading is above the upper spec limit
18    rejected        not used for statistics: value not finite or status not ok
====  ==============  =====================================================================

Bits 0–11 are reported only for the rules a characteristic enables; bits 12–17 whenever they apply
(EWMA and CUSUM once control limits are known, spec bits whenever a limit is set). With subgroups the
chart bits (0–15) come with the reading that completes a subgroup; spec bits come with every reading.

>>> mask = bit("nelson_1") | bit("we_1") | bit("above_usl")
>>> names(mask)
['nelson_1', 'we_1', 'above_usl']
>>> sorted(alert_kinds(mask))
['nelson_1', 'out_of_spec', 'we_1']
>>> mask_of(["nelson_2", "we_4"]) == bit("nelson_2") | bit("we_4")
True
"""

from __future__ import annotations

from collections.abc import Iterable

from edge.config import RULE_NAMES

# Order is the bit number. Never reorder; append only.
BIT_NAMES: tuple[str, ...] = RULE_NAMES + (
    "ewma_high",
    "ewma_low",
    "cusum_high",
    "cusum_low",
    "below_lsl",
    "above_usl",
    "rejected",
)
BITS: dict[str, int] = {name: 1 << i for i, name in enumerate(BIT_NAMES)}

NELSON_1, NELSON_2, NELSON_3, NELSON_4, NELSON_5, NELSON_6, NELSON_7, NELSON_8 = (
    BITS[f"nelson_{i}"] for i in range(1, 9)
)
WE_1, WE_2, WE_3, WE_4 = (BITS[f"we_{i}"] for i in range(1, 5))
EWMA_HIGH = BITS["ewma_high"]
EWMA_LOW = BITS["ewma_low"]
CUSUM_HIGH = BITS["cusum_high"]
CUSUM_LOW = BITS["cusum_low"]
BELOW_LSL = BITS["below_lsl"]
ABOVE_USL = BITS["above_usl"]
REJECTED = BITS["rejected"]

RULE_MASK = sum(BITS[name] for name in RULE_NAMES)  # bits 0..11: the configurable rules
EWMA = EWMA_HIGH | EWMA_LOW
CUSUM = CUSUM_HIGH | CUSUM_LOW
OUT_OF_SPEC = BELOW_LSL | ABOVE_USL

# Bit name -> the Alert.kind the gateway raises for it (edge.model.Alert).
ALERT_KIND: dict[str, str] = {name: name for name in RULE_NAMES} | {
    "ewma_high": "ewma",
    "ewma_low": "ewma",
    "cusum_high": "cusum",
    "cusum_low": "cusum",
    "below_lsl": "out_of_spec",
    "above_usl": "out_of_spec",
}


def bit(name: str) -> int:
    """The mask bit of one rule or signal name; a clear error for an unknown name."""
    try:
        return BITS[name]
    except KeyError:
        raise ValueError(f"unknown rule or signal {name!r}; known: {', '.join(BIT_NAMES)}") from None


def mask_of(names_: Iterable[str]) -> int:
    """The mask with the bits of the given names set (e.g. the rules a characteristic enables)."""
    out = 0
    for name in names_:
        out |= bit(name)
    return out


def names(mask: int) -> list[str]:
    """Names of the bits set in ``mask``, in bit order."""
    mask = int(mask)
    return [name for i, name in enumerate(BIT_NAMES) if mask >> i & 1]


def alert_kinds(mask: int) -> set[str]:
    """The distinct ``Alert.kind`` values a point's mask calls for (``rejected`` raises none)."""
    return {ALERT_KIND[n] for n in names(mask) if n in ALERT_KIND}
