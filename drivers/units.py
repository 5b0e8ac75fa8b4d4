"""Unit conversion between what an instrument sends and the unit a characteristic is configured in.

Scales report in whatever unit the operator selected on the keypad (g, kg, lb, oz, ct …) and gauges in mm
or inch. The gateway converts each value to the characteristic's unit; a pair that cannot be converted
(``g`` to ``mm``, an unknown unit) raises :class:`ValueError` naming both units, and the gateway turns
that into an error reading rather than a silently wrong number.

Spellings instruments use are accepted (``in``, ``"``, ``inch``; ``µm``/``um``; ``lbs``; ``PC``/``pcs``).

>>> convert(1, "lb", "g")
453.59237
>>> convert(25.4, "mm", "inch")
1.0
>>> round(convert(100, "g", "oz"), 4)
3.5274
>>> convert(12.5, "um", "mm")
0.0125
>>> convert(3, "pcs", "PC")
3.0
>>> convert(1, "g", "mm")
Traceback (most recent call last):
...
ValueError: cannot convert g (mass) to mm (length); set the characteristic's unit to a mass unit (g, kg, mg, lb, oz, ct) or fix the instrument's unit
>>> convert(1, "furlong", "mm")
Traceback (most recent call last):
...
ValueError: unknown unit 'furlong'; known units: g, kg, mg, t, lb, oz, ct, gn, dwt, ozt, mm, cm, m, um, inch, mil, pcs, %
"""

from __future__ import annotations

# canonical unit -> (quantity, factor to the quantity's base unit)
_UNITS: dict[str, tuple[str, float]] = {
    "g": ("mass", 1.0),
    "kg": ("mass", 1000.0),
    "mg": ("mass", 0.001),
    "t": ("mass", 1_000_000.0),
    "lb": ("mass", 453.59237),
    "oz": ("mass", 28.349523125),
    "ct": ("mass", 0.2),
    "gn": ("mass", 0.06479891),
    "dwt": ("mass", 1.55517384),
    "ozt": ("mass", 31.1034768),
    "mm": ("length", 1.0),
    "cm": ("length", 10.0),
    "m": ("length", 1000.0),
    "um": ("length", 0.001),
    "inch": ("length", 25.4),
    "mil": ("length", 0.0254),
    "pcs": ("count", 1.0),
    "%": ("ratio", 1.0),
}
_ALIASES = {
    "G": "g", "KG": "kg", "Kg": "kg", "MG": "mg", "LB": "lb", "lbs": "lb", "LBS": "lb", "Lb": "lb", "OZ": "oz",
    "CT": "ct", "GN": "gn", "DWT": "dwt", "OZT": "ozt", "ozt.": "ozt", "tl": "ozt",
    "MM": "mm", "in": "inch", "IN": "inch", '"': "inch", "inches": "inch",
    "µm": "um", "μm": "um", "UM": "um", "CM": "cm",
    "PC": "pcs", "pc": "pcs", "PCS": "pcs", "Pcs": "pcs", "pieces": "pcs",
}
_EXAMPLES = {"mass": "g, kg, mg, lb, oz, ct", "length": "mm, inch, um", "count": "pcs", "ratio": "%"}


def canonical(unit: str) -> str:
    """The canonical spelling of ``unit``; raises ValueError for an unknown unit.

    >>> canonical("LBS"), canonical("in"), canonical(" kg ")
    ('lb', 'inch', 'kg')
    """
    u = unit.strip()
    u = _ALIASES.get(u, u)
    if u not in _UNITS:
        raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(_UNITS)}")
    return u


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``."""
    src, dst = canonical(from_unit), canonical(to_unit)
    if src == dst:
        return float(value)
    (q_src, f_src), (q_dst, f_dst) = _UNITS[src], _UNITS[dst]
    if q_src != q_dst:
        raise ValueError(
            f"cannot convert {src} ({q_src}) to {dst} ({q_dst}); set the characteristic's unit to a {q_src} unit "
            f"({_EXAMPLES[q_src]}) or fix the instrument's unit"
        )
    result = value * f_src / f_dst
    # 25.4 mm -> 1.0 inch, not 0.9999999999999999: round away binary noise far below any instrument's resolution
    return float(f"{result:.12g}")
