"""Control-chart constants (AIAG SPC manual; see ``docs/statistics.md``).

``D2``, ``A2``, ``D3``, ``D4`` are the published three-decimal tables for subgroup sizes 2–10 (the ones in
the AIAG manual and in ``shared/reference/quality.md``); ``C4``, ``B3``, ``B4`` for the S chart are computed
exactly from their definitions, c4(n) = √(2/(n−1))·Γ(n/2)/Γ((n−1)/2), B3/B4 = 1 ∓ 3√(1−c4²)/c4.

>>> D2[5], A2[5], D4[2]
(2.326, 0.577, 3.267)
>>> round(C4[5], 4), round(B4[5], 3), B3[5]
(0.94, 2.089, 0.0)
"""

from __future__ import annotations

import math

# n: (d2, A2, D3, D4)
_TABLE = {
    2: (1.128, 1.880, 0.0, 3.267),
    3: (1.693, 1.023, 0.0, 2.574),
    4: (2.059, 0.729, 0.0, 2.282),
    5: (2.326, 0.577, 0.0, 2.114),
    6: (2.534, 0.483, 0.0, 2.004),
    7: (2.704, 0.419, 0.076, 1.924),
    8: (2.847, 0.373, 0.136, 1.864),
    9: (2.970, 0.337, 0.184, 1.816),
    10: (3.078, 0.308, 0.223, 1.777),
}
D2 = {n: v[0] for n, v in _TABLE.items()}
A2 = {n: v[1] for n, v in _TABLE.items()}
D3 = {n: v[2] for n, v in _TABLE.items()}
D4 = {n: v[3] for n, v in _TABLE.items()}


def _c4(n: int) -> float:
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


C4 = {n: _c4(n) for n in _TABLE}
B3 = {n: max(0.0, 1 - 3 * math.sqrt(1 - C4[n] ** 2) / C4[n]) for n in _TABLE}
B4 = {n: 1 + 3 * math.sqrt(1 - C4[n] ** 2) / C4[n] for n in _TABLE}

# Individuals (I-MR) chart: moving range of two consecutive readings.
MR_D2 = D2[2]  # σ̂ = MR̄ / 1.128
MR_E2 = 2.66  # limits X̄ ± 2.66·MR̄ (= 3/d2)
MR_D4 = D4[2]  # MR chart UCL = 3.267·MR̄

SUBGROUP_SIZES = range(2, 11)
