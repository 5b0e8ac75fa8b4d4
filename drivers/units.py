"""Unit conversion between what an instrument sends and the unit a characteristic is configured in.

Scales report in whatever unit the operator selected on the keypad (g, kg, lb, oz, ct …) and gauges in mm
or inch. The gateway converts each value to the characteristic's unit; a pair that cannot be converted
(``g`` to ``mm``, an unknown unit) raises :class:`ValueError` naming both units, and the gateway turns
that into an error reading rather than a silently wrong number.

Spellings instruments use are accepted in any letter case and with surrounding blanks (``in``, ``"``,
``inch``; ``µm``/``um``; ``lbs``, ``kgs``; ``PC``/``pcs``). A unit whose size depends on a setting of the
balance (the tael) is an error, never a guess.

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
    "lbs": "lb", "ozt.": "ozt", "kgs": "kg", "grams": "g",
    "in": "inch", "in.": "inch", '"': "inch", "inches": "inch",
    "µm": "um", "μm": "um", "micron": "um", "microns": "um",
    "pc": "pcs", "pieces": "pcs",
}
# Case does not matter (instruments print KG, Kg, kg, LBS, INCH …), except where two units differ only by case.
_BY_FOLDED: dict[str, str] = {}
for _name in (*_UNITS, *_ALIASES):
    _BY_FOLDED[_name.casefold()] = _ALIASES.get(_name, _name)
# Units whose size depends on a setting of the balance: converting them would be a guess.
_AMBIGUOUS = {
    "tl": "the tael ('tl') is 37.429 g (Hong Kong), 37.799 g (Singapore) or 37.5 g (Taiwan) depending on the "
          "balance's setting; set the balance to g",
}
_EXAMPLES = {"mass": "g, kg, mg, lb, oz, ct", "length": "mm, inch, um", "count": "pcs", "ratio": "%"}


def canonical(unit: str) -> str:
    """The canonical spelling of ``unit``; raises ValueError for an unknown unit.

    Whitespace around the unit and letter case are ignored (``" KG "``, ``"Lbs"``, ``"INCH"``, ``"µM"``).

    >>> canonical("LBS"), canonical("in"), canonical(" kg "), canonical("Inch"), canonical("µM")
    ('lb', 'inch', 'kg', 'inch', 'um')
    >>> canonical("tl")
    Traceback (most recent call last):
    ...
    ValueError: unit 'tl': the tael ('tl') is 37.429 g (Hong Kong), 37.799 g (Singapore) or 37.5 g (Taiwan) depending on the balance's setting; set the balance to g
    """
    u = unit.strip(" \t\r\n\x00")
    if u in _UNITS:
        return u
    if u in _ALIASES:
        return _ALIASES[u]
    folded = u.casefold()
    if folded in _AMBIGUOUS:
        raise ValueError(f"unit {unit!r}: {_AMBIGUOUS[folded]}")
    # 'M' alone is not metres on any gauge we know (the U-WAVE's 'M' means mm and is handled by its driver)
    if folded in _BY_FOLDED and u != "M":
        return _BY_FOLDED[folded]
    raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(_UNITS)}")


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
