"""The signal catalogue: every rule and signal the statistics compute, in one place.

Each accepted reading yields a 32-bit mask of the signals it fired. This table is the one home of what
those signals are: their bit (the order of ``CATALOGUE``; bits are only ever appended), what each means,
which of them are the configurable control-chart rules (and which are on by default), and the alert kind
and severity a fired signal raises. Configuration validation, the pure-Python reference, the gateway's
alerting, ``floorwatch analyze`` and ``docs/statistics.md`` all read it; the compiled core keeps its own
bit constants for speed and ``tests/test_signals.py`` holds them, and the docs' table, to this one.

It imports only the data model, so that every layer (configuration included) can read it.

>>> [s.name for s in CATALOGUE[:3]]
['nelson_1', 'nelson_2', 'nelson_3']
>>> by_name("above_usl").bit, by_name("above_usl").alert_kind
(17, 'out_of_spec')
>>> RULE_NAMES[-1], DEFAULT_RULES
('we_4', ('nelson_1', 'nelson_2', 'nelson_3', 'nelson_5'))
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from floorwatch.edge.model import Severity


@dataclass(frozen=True)
class Signal:
    """One bit of the per-reading mask.

    ``rule``: a control-chart rule a characteristic enables in ``rules = [...]`` (bits 0–11); the other
    signals apply whenever they can (EWMA and CUSUM once control limits are known, spec bits whenever a
    limit is set). ``alert_kind`` is the ``Alert.kind`` raised while the signal fires (several signals may
    share one, e.g. both spec limits raise ``out_of_spec``); ``None`` raises no alert.
    """

    name: str
    bit: int
    fires_when: str
    rule: bool = False
    default_rule: bool = False
    alert_kind: str | None = None
    severity: Severity = Severity.WARNING

    @property
    def mask(self) -> int:
        return 1 << self.bit


def _catalogue(*rows: tuple) -> tuple[Signal, ...]:
    return tuple(Signal(name, bit, *rest) for bit, (name, *rest) in enumerate(rows))


W, C = Severity.WARNING, Severity.CRITICAL
# Order is the bit number. Never reorder; append only (the masks are stored in spools and published).
CATALOGUE: tuple[Signal, ...] = _catalogue(
    ("nelson_1", "the point is beyond 3σ", True, True, "nelson_1", W),
    ("nelson_2", "9 points in a row on one side of the centre line", True, True, "nelson_2", W),
    ("nelson_3", "6 points in a row steadily increasing or steadily decreasing (5 rises or 5 falls)",
     True, True, "nelson_3", W),
    ("nelson_4", "14 points in a row alternating up and down (13 alternating changes)", True, False, "nelson_4", W),
    ("nelson_5", "the point is beyond 2σ and so are 2 of the last 3, same side", True, True, "nelson_5", W),
    ("nelson_6", "the point is beyond 1σ and so are 4 of the last 5, same side", True, False, "nelson_6", W),
    ("nelson_7", "15 points in a row within 1σ, either side", True, False, "nelson_7", W),
    ("nelson_8", "8 points in a row beyond 1σ, either side", True, False, "nelson_8", W),
    ("we_1", "Western Electric 1: beyond 3σ", True, False, "we_1", W),
    ("we_2", "WE 2: 2 of 3 beyond 2σ, same side (as `nelson_5`)", True, False, "we_2", W),
    ("we_3", "WE 3: 4 of 5 beyond 1σ, same side (as `nelson_6`)", True, False, "we_3", W),
    ("we_4", "WE 4: 8 in a row on one side", True, False, "we_4", W),
    ("ewma_high", "the EWMA is above its UCL", False, False, "ewma", W),
    ("ewma_low", "the EWMA is below its LCL", False, False, "ewma", W),
    ("cusum_high", "C⁺ exceeds H = hσ", False, False, "cusum", W),
    ("cusum_low", "C⁻ exceeds H = hσ", False, False, "cusum", W),
    ("below_lsl", "the reading is below the lower spec limit (checked for every reading)", False, False,
     "out_of_spec", C),
    ("above_usl", "the reading is above the upper spec limit (checked for every reading)", False, False,
     "out_of_spec", C),
    ("rejected", "the reading was kept out of the statistics (not finite, or status not ok)", False, False, None, W),
)
del W, C

SIGNAL_NAMES: tuple[str, ...] = tuple(s.name for s in CATALOGUE)
RULE_NAMES: tuple[str, ...] = tuple(s.name for s in CATALOGUE if s.rule)
DEFAULT_RULES: tuple[str, ...] = tuple(s.name for s in CATALOGUE if s.default_rule)
_BY_NAME: dict[str, Signal] = {s.name: s for s in CATALOGUE}


def by_name(name: str) -> Signal:
    """The signal called ``name``; a clear error (with the nearest name) for an unknown one."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(unknown_rule_message(name, SIGNAL_NAMES, "rule or signal")) from None


def unknown_rule_message(name: str, known: tuple[str, ...] = RULE_NAMES, what: str = "rule") -> str:
    """``unknown rule 'nelson_9'; did you mean 'nelson_1'?`` (or the list of known names)."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known {what}s: {', '.join(known)}"
    return f"unknown {what} {name!r}; {hint}"


def alert_masks(names: tuple[str, ...] | list[str]) -> dict[str, tuple[int, Severity]]:
    """Alert kind -> (mask of the signals that raise it, severity), for the given signal names in bit order.

    >>> alert_masks(["nelson_1", "ewma_high", "ewma_low"])["ewma"]
    (12288, <Severity.WARNING: 'warning'>)
    """
    out: dict[str, tuple[int, Severity]] = {}
    for name in names:
        s = by_name(name)
        if s.alert_kind is not None:
            mask, _ = out.get(s.alert_kind, (0, s.severity))
            out[s.alert_kind] = (mask | s.mask, s.severity)
    return out
