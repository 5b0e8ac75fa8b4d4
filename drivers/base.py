"""What every driver shares: the parse result types, instrument health, the driver and simulator contracts.

A driver turns frames from one instrument into :class:`floorwatch.edge.model.Measurement` objects and hands them to
``emit``. It knows the data model and nothing of MQTT, spools or dashboards. A frame that does not parse is
counted in :class:`InstrumentHealth` and reported — never raised into the pipeline, never a number.

A parser returns a measurement that is not stamped yet (no time, no instrument: it sees only the frame);
:meth:`Driver.stamp` — the one place that stamps — gives it both before it is emitted.

Each driver module (``drivers/<name>.py``) defines ``DRIVER = DriverSpec(...)`` and carries its protocol
notes, its sample configuration and its test vectors; ``floorwatch.drivers.registry`` maps configuration names to
modules.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel

from floorwatch.edge.clock import SYSTEM_CLOCK, Clock
from floorwatch.edge.config import InstrumentConfig
from floorwatch.edge.model import Measurement


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame that did not match the protocol: counted and reported, never a number."""

    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid frame that carries no value (acknowledge, identification, echo of a command)."""

    what: str


# A frame that carried a value (possibly with a not-ok status, e.g. overload) is a Measurement, not stamped yet.
ParseResult = Measurement | Rejected | Ignored
Parser = Callable[[bytes], ParseResult]


@dataclass
class InstrumentHealth:
    """What the technician needs to debug wiring: connected, counts, the last raw frame, the last error."""

    instrument: str
    connected: bool = False
    frames_ok: int = 0
    frames_rejected: int = 0
    frames_ignored: int = 0
    last_raw: bytes = b""
    last_error: str = ""
    last_reject_reason: str = ""
    last_value_ns: int = 0
    reconnects: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def count(self, frame: bytes, result: ParseResult) -> None:
        self.last_raw = frame
        if isinstance(result, Measurement):
            self.frames_ok += 1
        elif isinstance(result, Rejected):
            self.frames_rejected += 1
            self.last_reject_reason = result.reason
        else:
            self.frames_ignored += 1

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["last_raw"] = self.last_raw.decode("latin-1")  # shown with escapes by json.dumps
        return d


class SerialDefaults(BaseModel):
    """A driver's default port settings (the instrument's factory settings)."""

    baudrate: int = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    rtscts: bool = False


class Driver(abc.ABC):
    """One running instrument connection.

    ``run(emit)`` connects, reads, decodes and calls ``emit`` for every measurement until cancelled. It
    handles its own I/O failures (reconnect with backoff, health updated) and never returns on them.
    """

    def __init__(self, config: InstrumentConfig, options: BaseModel | None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.options = options
        self.clock = clock
        self.health = InstrumentHealth(instrument=config.name)

    @abc.abstractmethod
    async def run(self, emit: Callable[[Measurement], None]) -> None: ...

    # Optional: state that must outlive the process (a production count). The gateway saves ``state()``
    # with its statistics and hands it to ``restore`` of the next run's driver, before ``run``; the driver
    # knows nothing of where it is kept. Drivers without such state keep these defaults.

    def state(self) -> dict[str, Any]:
        """What the next run needs to continue where this one stands: a JSON-ready mapping ({} = nothing)."""
        return {}

    def restore(self, state: dict[str, Any]) -> list[str]:
        """Take up ``state`` saved by an earlier run, before ``run`` starts. Returns one line per part that
        was not taken up and why (an older format, a changed configuration); ``[]`` when all of it was."""
        return ["this driver keeps no state between runs"] if state else []

    def stamp(self, m: Measurement, ts_ns: int | None = None) -> Measurement:
        """``m`` as the gateway takes it: with this instrument's name and the time it was read — now, or
        ``ts_ns`` for values read together (one Modbus request). Every driver emits only what this returned."""
        return replace(m, ts_ns=self.clock.now_ns() if ts_ns is None else ts_ns, instrument=self.config.name)


class Simulator(abc.ABC):
    """A simulated instrument serving its real protocol (serial ones on a pty, Modbus over TCP).

    Use as an async context manager; ``endpoint`` then says where the driver connects: ``{"port": path}``
    or ``{"host": "127.0.0.1", "tcp_port": n}`` — merged into the instrument's configuration.
    """

    endpoint: dict[str, Any]

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...


@dataclass(frozen=True)
class DriverSpec:
    """Registry entry of one driver (see floorwatch.drivers.registry)."""

    name: str
    summary: str
    transport: Literal["serial", "modbus"]
    driver: Callable[[InstrumentConfig, BaseModel | None, Clock], Driver]
    options: type[BaseModel] | None = None
    # The instrument's factory port settings and frame terminator; left out, they are the driver class's own
    # (``serial_defaults`` / ``terminator`` class attributes), so the two cannot drift apart.
    serial_defaults: SerialDefaults = None  # type: ignore[assignment]
    # parser(options) -> Parser; used by `floorwatch decode` and `floorwatch probe`. None for Modbus.
    parser: Callable[[BaseModel | None], Parser] | None = None
    terminator: bytes = None  # type: ignore[assignment]
    # The request that makes the instrument send (for probing).
    probe_request: bytes | None = None
    # simulator(scenario, options, clock) -> Simulator
    simulator: Callable[[str, BaseModel | None, Clock], Simulator] | None = None
    scenarios: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.serial_defaults is None:
            object.__setattr__(self, "serial_defaults", getattr(self.driver, "serial_defaults", SerialDefaults()))
        if self.terminator is None:
            object.__setattr__(self, "terminator", getattr(self.driver, "terminator", b"\r"))
