"""The register map: which values a Modbus device holds where, and how to read them.

The register map lives in the instrument's ``options``: a list of points, each a named value at a PDU
address (0-based: register 40001 is holding address 0) with a type, a word order, scale, offset and unit.
A point's ``name`` becomes the measurement's channel. Points with ``counter = true`` are production
counters (see ``floorwatch.drivers.modbus.counters``).

The driver reads this map and the simulator serves it; both take it from here, so neither imports the other.

>>> p = Point(name="good_parts", address=1002, type="u32", order="CDAB", counter=True)
>>> p.function, p.register_count
('holding', 2)
>>> from pydantic import ValidationError
>>> try:
...     Point(name="x", address=40001)
... except ValidationError as exc:
...     print(exc.errors()[0]["msg"])
Value error, address 40001 looks like a register number (4xxxx), not a PDU address: Modbus addresses here count from 0 (register 40001 is address 0), so write address = 0; if the device manual really gives PDU address 40001, set address_is_pdu = true
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from floorwatch.drivers.modbus import codec

Function = Literal["coils", "discrete_inputs", "holding", "input"]
PointType = Literal["bool", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"]
BIT_FUNCTIONS = frozenset({"coils", "discrete_inputs"})
FUNCTION_CODES: dict[str, int] = {"coils": 1, "discrete_inputs": 2, "holding": 3, "input": 4}
# Largest read per request the Modbus specification allows: 125 registers, 2000 bits.
MAX_REGISTERS = 125
MAX_BITS = 2000
COUNTER_TYPES = ("u16", "u32", "u64")


@dataclass(frozen=True, slots=True)
class RegisterNumbers:
    """The register numbers manuals give for one table (5-digit and 6-digit forms), which people copy
    into the configuration where a 0-based PDU address belongs."""

    first: int  # 40001: the number of PDU address 0
    last: int
    first6: int  # 400001: the 6-digit form
    last6: int
    label: str

    def base_of(self, address: int) -> int | None:
        """The number of PDU address 0 if ``address`` looks like a register number of this table."""
        if self.first <= address <= self.last:
            return self.first
        if self.first6 <= address <= self.last6:
            return self.first6
        return None


_REGISTER_NUMBERS: dict[str, RegisterNumbers] = {
    "holding": RegisterNumbers(40001, 49999, 400001, 465536, "4xxxx"),
    "input": RegisterNumbers(30001, 39999, 300001, 365536, "3xxxx"),
    "discrete_inputs": RegisterNumbers(10001, 19999, 100001, 165536, "1xxxx"),
}


def default_type(function: str) -> str:
    """A point's type when the map leaves it out: a bit for coils and discrete inputs, else one u16."""
    return "bool" if function in BIT_FUNCTIONS else "u16"


class Point(BaseModel):
    """One value in a device's register map."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{0,64}$", description="Channel name ('' = the main value)")
    unit_id: int | None = Field(None, ge=0, le=247, description="Unit id; default: every id in [modbus].unit_ids")
    function: Function = "holding"
    address: int = Field(ge=0, le=65535, description="PDU address, 0-based (register 40001 is address 0)")
    type: PointType | None = Field(None, description="Default: 'bool' for coils/discrete inputs, else 'u16'")
    order: codec.WordOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    counter: bool = False
    wrap_at: int | None = Field(None, ge=2, description="Counter modulus if it wraps before 2**bits (e.g. 10000)")
    address_is_pdu: bool = Field(False, description="Accept an address that looks like a 4xxxx register number")

    @model_validator(mode="before")
    @classmethod
    def _register_number(cls, data: object) -> object:
        if not isinstance(data, dict) or data.get("address_is_pdu"):
            return data
        address, function = data.get("address"), data.get("function", "holding")
        numbers = _REGISTER_NUMBERS.get(function) if isinstance(function, str) else None
        if isinstance(address, int) and numbers is not None:
            base = numbers.base_of(address)
            if base is not None:
                raise ValueError(
                    f"address {address} looks like a register number ({numbers.label}), not a PDU address: "
                    f"Modbus addresses here count from 0 (register {base} is address 0), so write "
                    f"address = {address - base}; if the device manual really gives PDU address {address}, "
                    "set address_is_pdu = true"
                )
        return data

    @field_validator("scale", "offset")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        bits = self.function in BIT_FUNCTIONS
        kind = self.type or default_type(self.function)
        object.__setattr__(self, "type", kind)
        if bits and kind != "bool":
            raise ValueError(f"{self.function} are single bits: type must be 'bool' (or left out), not {kind!r}")
        if not bits and kind == "bool":
            raise ValueError(f"{self.function} registers hold numbers: use a register type such as 'u16', not 'bool'")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.address + self.register_count - 1 > 65535:
            raise ValueError(f"a {kind} at address {self.address} runs past the last address 65535")
        if self.counter:
            if kind not in COUNTER_TYPES:
                raise ValueError(f"a counter must be an unsigned integer ({', '.join(COUNTER_TYPES)}), not {kind!r}")
            if self.scale != 1 or self.offset != 0:
                raise ValueError("a counter counts parts: remove scale and offset from counter points")
            if self.wrap_at is not None and self.wrap_at > 2 ** codec.bit_width(kind):
                raise ValueError(f"wrap_at ({self.wrap_at}) is larger than a {kind} can hold")
        elif self.wrap_at is not None:
            raise ValueError("wrap_at applies only to counter points (counter = true)")
        return self

    @property
    def kind(self) -> str:
        """The point's type, with the default filled in."""
        return self.type or default_type(self.function)

    @property
    def register_count(self) -> int:
        """Registers (or bits, for coils and discrete inputs) this point occupies."""
        return 1 if self.kind == "bool" else codec.register_count(self.kind)

    @property
    def modulus(self) -> int:
        """Where a counter point wraps to 0: ``wrap_at``, else 2**bits of its type."""
        return self.wrap_at or 2 ** codec.bit_width(self.kind)


def derived_channel(base: str, suffix: str) -> str:
    """Channel of a counter's derived value: ``good_parts_rate``, or ``rate`` for the main counter.

    >>> derived_channel("good_parts", "rate"), derived_channel("", "stopped")
    ('good_parts_rate', 'stopped')
    """
    return f"{base}_{suffix}" if base else suffix


class ModbusOptions(BaseModel):
    """The modbus driver's ``[instruments.options]``: the register map and polling behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points: list[Point] = Field(default_factory=list)
    max_registers: int = Field(MAX_REGISTERS, ge=1, le=MAX_REGISTERS, description="Registers per read at most")
    max_gap: int = Field(0, ge=0, le=100, description="Unused registers a grouped read may span")
    backoff_max: float = Field(60.0, gt=0, le=3600, description="Longest wait before retrying a silent unit")
    max_rate: float = Field(6000.0, gt=0, description="Most parts per minute the line can make (counters)")
    rate_window: float = Field(60.0, gt=0, le=86400, description="Seconds the parts-per-minute rate averages")
    idle_after: float = Field(300.0, gt=0, description="Seconds without a new part before 'line stopped'")
    local_echo: bool = Field(False, description="The RS-485 adapter echoes what it sends (2-wire, no echo cancel)")
    rs485_rts_for_tx: bool = Field(True, description="Kernel RS-485 mode: RTS level while sending")
    rs485_delay_before_tx: float = Field(0.0, ge=0, le=1)
    rs485_delay_before_rx: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _unique_channels(self) -> ModbusOptions:
        seen: dict[tuple[int | None, str], int] = {}
        for n, p in enumerate(self.points):
            names = [p.name]
            if p.counter:
                names += [derived_channel(p.name, "rate"), derived_channel(p.name, "stopped")]
            for name in names:
                key = (p.unit_id, name)
                if key in seen:
                    raise ValueError(
                        f"points[{n}] ({p.name!r}) would emit channel {name!r}, already used by "
                        f"points[{seen[key]}]; give each point its own name"
                    )
                seen[key] = n
        return self


# The register map the simulator serves when an instrument gives none (and the demo uses).
DEFAULT_POINTS: tuple[Point, ...] = (
    Point(name="", function="holding", address=0, type="u32", order="CDAB", counter=True, unit="pcs"),
    Point(name="count16", function="holding", address=2, type="u16", counter=True, unit="pcs"),
    Point(name="temperature", function="input", address=0, type="f32", order="ABCD", unit="degC"),
    Point(name="pressure", function="input", address=2, type="f32", order="CDAB", unit="bar"),
    Point(name="speed", function="input", address=4, type="i16", scale=0.1, unit="m/min"),
    Point(name="running", function="discrete_inputs", address=0),
)
