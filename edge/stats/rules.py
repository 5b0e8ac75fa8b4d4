"""Helpers to read the per-point result of the statistics core: masks to names and back.

Every accepted reading yields one unsigned 32-bit mask. What each bit means, which bits are the
configurable rules and which alert a bit raises is the signal catalogue, :mod:`floorwatch.edge.signals`
(and the table in ``docs/statistics.md``); this module gives the bits names and masks.

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

from floorwatch.edge.signals import CATALOGUE, RULE_NAMES, by_name

BIT_NAMES: tuple[str, ...] = tuple(s.name for s in CATALOGUE)
BITS: dict[str, int] = {s.name: s.mask for s in CATALOGUE}

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

# Bit name -> the Alert.kind the gateway raises for it (floorwatch.edge.model.Alert).
ALERT_KIND: dict[str, str] = {s.name: s.alert_kind for s in CATALOGUE if s.alert_kind is not None}


def bit(name: str) -> int:
    """The mask bit of one rule or signal name; a clear error for an unknown name."""
    return by_name(name).mask


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
