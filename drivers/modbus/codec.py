"""Modbus register values: 16-bit registers on the wire <-> numbers, for every common type and word order.

Modbus only defines 16-bit registers; a 32-bit or 64-bit value spans two or four of them, and device makers
disagree on the order. We name an order by where the value's bytes travel on the wire, most significant
byte ``A`` first (the table in ``shared/reference/instruments.md``):

* ``ABCD`` big-endian words and bytes (the Modbus convention; most PLCs)
* ``CDAB`` low word first ("word swap": Autonics CT counters, Advantech ADAM counters, many meters)
* ``BADC`` bytes swapped inside each word
* ``DCBA`` fully little-endian

The two swaps are independent and each undoes itself, so the same operation encodes and decodes.

Reference vectors (IEEE 123.456 is ``42F6E979``, int32 100000 is ``000186A0``):

>>> round(decode([0x42F6, 0xE979], "f32", "ABCD"), 3), round(decode([0xE979, 0x42F6], "f32", "CDAB"), 3)
(123.456, 123.456)
>>> round(decode([0xF642, 0x79E9], "f32", "BADC"), 3), round(decode([0x79E9, 0xF642], "f32", "DCBA"), 3)
(123.456, 123.456)
>>> [hexwords(encode(100000, "i32", order)) for order in ORDERS]
['0001 86A0', '86A0 0001', '0100 A086', 'A086 0100']
>>> decode([0x86A0, 0x0001], "u32", "CDAB")
100000
>>> decode([0xFFFF], "i16"), decode([0xFFFF], "u16")
(-1, 65535)
>>> physical(decode([0x00FA], "i16"), scale=0.1, offset=-5)
20.0
"""

from __future__ import annotations

import struct
from typing import Literal

RegisterType = Literal["u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"]
WordOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]

ORDERS: tuple[WordOrder, ...] = ("ABCD", "CDAB", "BADC", "DCBA")
# struct format (big-endian) and number of 16-bit registers of each type
_FORMATS: dict[str, tuple[str, int]] = {
    "u16": (">H", 1),
    "i16": (">h", 1),
    "u32": (">I", 2),
    "i32": (">i", 2),
    "u64": (">Q", 4),
    "i64": (">q", 4),
    "f32": (">f", 2),
    "f64": (">d", 4),
}
TYPES: tuple[str, ...] = tuple(_FORMATS)
INTEGER_TYPES = frozenset(t for t in TYPES if not t.startswith("f"))


class CodecError(ValueError):
    """Registers that cannot be a value of the requested type (wrong count, out of 16-bit range)."""


def register_count(kind: str) -> int:
    """How many 16-bit registers a value of ``kind`` occupies.

    >>> register_count("u16"), register_count("f32"), register_count("f64")
    (1, 2, 4)
    """
    try:
        return _FORMATS[kind][1]
    except KeyError:
        raise CodecError(f"unknown register type {kind!r}; use one of {', '.join(TYPES)}") from None


def bit_width(kind: str) -> int:
    """Width in bits of an integer type (a counter wraps at 2**width).

    >>> bit_width("u16"), bit_width("u32")
    (16, 32)
    """
    return register_count(kind) * 16


def _reorder(data: bytes, order: str) -> bytes:
    """Swap words and/or bytes: wire order <-> big-endian (the operation is its own inverse)."""
    if order not in ORDERS:
        raise CodecError(f"unknown word order {order!r}; use one of {', '.join(ORDERS)}")
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return b"".join(words)


def decode(registers: list[int] | tuple[int, ...], kind: str = "u16", order: str = "ABCD") -> int | float:
    """The value carried by ``registers`` (as read from the device, in wire order).

    >>> decode([0x0001, 0x86A0], "u32")
    100000
    >>> decode([0x0001], "u32")
    Traceback (most recent call last):
    ...
    floorwatch.drivers.modbus.codec.CodecError: u32 needs 2 registers, got 1
    """
    fmt, count = _FORMATS.get(kind, (None, 0))
    if fmt is None:
        raise CodecError(f"unknown register type {kind!r}; use one of {', '.join(TYPES)}")
    if len(registers) != count:
        raise CodecError(f"{kind} needs {count} register{'s' if count > 1 else ''}, got {len(registers)}")
    for r in registers:
        if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r <= 0xFFFF:
            raise CodecError(f"register value {r!r} is not a 16-bit unsigned integer")
    wire = b"".join(r.to_bytes(2, "big") for r in registers)
    return struct.unpack(fmt, _reorder(wire, order))[0]


def encode(value: int | float, kind: str = "u16", order: str = "ABCD") -> list[int]:
    """The registers (wire order) that carry ``value``; the inverse of :func:`decode`.

    >>> hexwords(encode(123.456, "f32", "CDAB"))
    'E979 42F6'
    >>> encode(70000, "u16")
    Traceback (most recent call last):
    ...
    floorwatch.drivers.modbus.codec.CodecError: 70000 does not fit in u16
    """
    fmt, _count = _FORMATS.get(kind, (None, 0))
    if fmt is None:
        raise CodecError(f"unknown register type {kind!r}; use one of {', '.join(TYPES)}")
    if kind in INTEGER_TYPES:
        if isinstance(value, float):
            if not value.is_integer():
                raise CodecError(f"{value!r} is not an integer; {kind} holds whole numbers")
            value = int(value)
    try:
        data = struct.pack(fmt, value)
    except (struct.error, OverflowError):
        raise CodecError(f"{value!r} does not fit in {kind}") from None
    wire = _reorder(data, order)
    return [int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2)]


def physical(raw: int | float, scale: float = 1.0, offset: float = 0.0) -> float:
    """Engineering value from a raw register value: ``raw * scale + offset``.

    >>> physical(1234, scale=0.01)
    12.34
    """
    value = raw * scale + offset
    # Scaling an integer by 0.1 gives 20.000000000000004; round off the binary noise the device never sent.
    return round(value, 12) if isinstance(raw, int) else value


def raw_from_physical(value: float, kind: str, scale: float = 1.0, offset: float = 0.0) -> int | float:
    """Inverse of :func:`physical` (for the simulator and tests): the raw value a device would store.

    >>> raw_from_physical(20.0, "i16", scale=0.1, offset=-5)
    250
    """
    raw = (value - offset) / scale
    return round(raw) if kind in INTEGER_TYPES else raw


def hexwords(registers: list[int]) -> str:
    """Registers as the hex words a protocol analyser shows (``'42F6 E979'``)."""
    return " ".join(f"{r:04X}" for r in registers)
