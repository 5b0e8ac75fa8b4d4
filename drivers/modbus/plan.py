"""Read planning: which unit each point is read from, the channel it is emitted on, and the few requests
that read them all.

On a bus, requests go one at a time and each costs a round trip, so points of one unit and one table that
lie next to each other are read by one request (at most 125 registers or 2000 bits, as the Modbus
specification allows; ``max_registers`` lowers that for devices that refuse long reads).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from floorwatch.drivers.modbus.points import (
    BIT_FUNCTIONS,
    FUNCTION_CODES,
    MAX_BITS,
    MAX_REGISTERS,
    Function,
    Point,
)


@dataclass(frozen=True)
class BoundPoint:
    """A point as read from one unit, with the channel it is emitted on."""

    point: Point
    unit_id: int
    channel: str


@dataclass(frozen=True)
class ReadGroup:
    """Adjacent points of one unit and function read by one request."""

    unit_id: int
    function: Function
    start: int
    count: int
    members: tuple[BoundPoint, ...]

    def describe(self) -> str:
        return f"unit {self.unit_id} {self.function} {self.start}..{self.start + self.count - 1}"


def bind_points(points: Iterable[Point], unit_ids: Sequence[int], instrument: str) -> list[BoundPoint]:
    """Each point on each unit it is read from. A point without its own ``unit_id`` is read from every unit;
    with several units its channel gets the unit in front (``u2.temperature``, ``u2`` for the main value).

    >>> [b.channel for b in bind_points([Point(name="", address=0), Point(name="t", address=1)], [1, 2], "c")]
    ['u1', 'u2', 'u1.t', 'u2.t']
    """
    bound: list[BoundPoint] = []
    for p in points:
        for unit in [p.unit_id] if p.unit_id is not None else unit_ids:
            prefix = f"u{unit}" if p.unit_id is None and len(unit_ids) > 1 else ""
            channel = f"{prefix}.{p.name}" if prefix and p.name else prefix or p.name
            bound.append(BoundPoint(p, unit, channel))
    channels = [b.channel for b in bound]
    if len(set(channels)) != len(channels):
        dup = next(c for c in channels if channels.count(c) > 1)
        raise ValueError(f"instrument {instrument!r}: two points emit channel {dup!r}; rename one")
    return bound


def plan_reads(bound: list[BoundPoint], max_registers: int = MAX_REGISTERS, max_gap: int = 0) -> list[ReadGroup]:
    """Group points into as few requests as possible: same unit and function, adjacent (or within
    ``max_gap`` unused registers), at most ``max_registers`` registers (2000 bits) a request.

    >>> pts = [BoundPoint(Point(name=n, address=a, type=t), 1, n) for n, a, t in
    ...        [("a", 0, "u32"), ("b", 2, "u16"), ("c", 10, "u16"), ("d", 124, "u16")]]
    >>> [(g.start, g.count, len(g.members)) for g in plan_reads(pts)]
    [(0, 3, 2), (10, 1, 1), (124, 1, 1)]
    >>> [(g.start, g.count) for g in plan_reads(pts, max_gap=10)]
    [(0, 11), (124, 1)]
    """
    groups: list[ReadGroup] = []
    current: list[BoundPoint] = []

    def order(b: BoundPoint) -> tuple[int, int, int]:
        return b.unit_id, FUNCTION_CODES[b.point.function], b.point.address

    def end_of(members: list[BoundPoint]) -> int:
        return max(m.point.address + m.point.register_count for m in members)

    def close() -> None:
        if current:
            head = current[0]
            start = head.point.address
            groups.append(ReadGroup(head.unit_id, head.point.function, start, end_of(current) - start, tuple(current)))

    for b in sorted(bound, key=order):
        limit = MAX_BITS if b.point.function in BIT_FUNCTIONS else max_registers
        if current:
            head = current[0]
            same = head.unit_id == b.unit_id and head.point.function == b.point.function
            fits = (b.point.address <= end_of(current) + max_gap
                    and b.point.address + b.point.register_count - head.point.address <= limit)
            if same and fits:
                current.append(b)
                continue
            close()
        current = [b]
    close()
    return groups
