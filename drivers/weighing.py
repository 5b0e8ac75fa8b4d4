"""From a scale's stream of readings to one weight per part.

A scale sends many readings a second — zero, then the part settling, then the part stable, then zero again
when it is taken off. The buyer wants one weight per part. Three modes (option ``weighing`` of every scale
driver):

``all``
    every reading as the scale sent it (unstable ones carry status ``unstable``); for live display.
``part``
    one reading per part: the first stable reading at or above ``threshold`` after the scale has returned
    to within ``zero_band`` of zero (stable or not: on a fast line the next part arrives before the empty
    pan settles). The part must leave the pan before the next part counts, so a part left on the scale is
    weighed once, not fifty times.
``stable``
    check-weigher: every stable reading at or above ``threshold`` (a belt scale that weighs each pack as it
    passes and reports it stable once).

Overload, underload and instrument errors always pass through (once per change of state, so that a scale
stuck in overload does not flood the line with alarms).

Scales whose frames carry no stability flag (the XK3190 binary frame) report every reading as stable; for
them ``settle_readings`` > 1 asks for that many consecutive readings within ``settle_band`` of each other
before a reading counts as stable in ``part`` and ``stable`` modes.

>>> from floorwatch.edge.model import Measurement, MeasurementStatus
>>> OK, UNSTABLE = MeasurementStatus.OK, MeasurementStatus.UNSTABLE
>>> w = PartWeigher(WeighingOptions(weighing="part", threshold=5, zero_band=0.5))
>>> stream = [(0.0, OK), (80.1, UNSTABLE), (100.2, OK), (100.2, OK), (0.1, OK), (99.8, OK), (99.8, OK), (0.0, OK)]
>>> [d.value for v, s in stream if (d := w(Measurement(v, "g", s))) is not None]
[100.2, 99.8]
"""

from __future__ import annotations

import collections
import math
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from floorwatch.drivers.serial_port import SerialDriver, SerialLink
from floorwatch.edge.clock import SYSTEM_CLOCK, Clock
from floorwatch.edge.config import InstrumentConfig
from floorwatch.edge.model import Measurement, MeasurementStatus


class WeighingOptions(BaseModel):
    """Options every scale driver shares (they go in the instrument's ``[instruments.options]`` table)."""

    model_config = ConfigDict(extra="forbid")

    weighing: Literal["all", "part", "stable"] = Field(
        "all", description="all: every reading; part: one per part; stable: every stable reading (check-weigher)"
    )
    threshold: float = Field(0.0, description="A part counts from this weight up (in the scale's unit)")
    zero_band: float = Field(0.0, ge=0, description="The pan counts as empty within ±zero_band of zero")
    settle_readings: int = Field(
        1, ge=1, le=100, description="Consecutive readings within settle_band before a reading counts as stable"
    )
    settle_band: float = Field(0.0, ge=0, description="Largest spread of the settle_readings (scale unit)")

    @model_validator(mode="after")
    def _part_threshold(self) -> WeighingOptions:
        if self.weighing == "part" and self.threshold <= self.zero_band:
            raise ValueError(
                f"threshold ({self.threshold:g}) must be above zero_band ({self.zero_band:g}) in 'part' weighing, "
                "e.g. threshold = 5.0 and zero_band = 0.5 for parts of about 100 g"
            )
        return self


class PartWeigher:
    """The stage after a scale parser: call it with each decoded reading; returns the reading to emit or None."""

    __slots__ = ("mode", "threshold", "zero_band", "armed", "_last_fault", "_settle", "_band", "_recent")

    def __init__(self, options: WeighingOptions) -> None:
        self.mode = options.weighing
        self.threshold = options.threshold
        self.zero_band = options.zero_band
        self.armed = True  # an empty pan is assumed at start; a part already on the pan is weighed once
        self._last_fault: tuple[MeasurementStatus, str] | None = None
        self._settle = options.settle_readings
        self._band = options.settle_band
        self._recent: collections.deque[float] = collections.deque(maxlen=options.settle_readings)

    def __call__(self, d: Measurement) -> Measurement | None:
        if self.mode == "all":
            return d
        status = d.status
        if status is MeasurementStatus.UNSTABLE:
            self._recent.clear()
            # the pan is empty even if the scale has not called it stable yet: on a fast line the next part
            # is put on before that happens, and it must still count
            if self.mode == "part" and abs(d.value) <= self.zero_band:
                self.armed = True
            return None
        if status is not MeasurementStatus.OK or not math.isfinite(d.value):
            self._recent.clear()
            fault = (status, d.detail)
            if fault == self._last_fault:
                return None
            self._last_fault = fault
            return d
        self._last_fault = None
        value = d.value
        steady = True
        if self._settle > 1:
            recent = self._recent
            recent.append(value)
            steady = len(recent) == self._settle and max(recent) - min(recent) <= self._band
        if self.mode == "stable":
            return d if steady and value >= self.threshold else None
        if abs(value) <= self.zero_band:
            self.armed = True
            return None
        if self.armed and steady and value >= self.threshold:
            self.armed = False
            return d
        return None


def weighing_stage(options: BaseModel | None):
    """The stage a scale driver puts after its parser (None when every reading is wanted)."""
    if isinstance(options, WeighingOptions) and options.weighing != "all":
        return PartWeigher(options)
    return None


class ScaleOptions(WeighingOptions):
    """Options of scales that can be polled or send continuously."""

    mode: Literal["poll", "continuous"] = Field(
        "continuous", description="poll: ask every poll_interval; continuous: the scale streams"
    )


class ScaleDriver(SerialDriver):
    """A serial scale: polled or continuous, with the per-part weighing stage after the parser.

    Subclasses set ``poll_command`` (bytes to send per poll, or a dict option value -> bytes) and
    ``continuous_command`` (sent after each connect in continuous mode to start the stream, if any).
    """

    poll_command: ClassVar[bytes] = b""
    continuous_command: ClassVar[bytes | None] = None

    def __init__(self, config: InstrumentConfig, options: BaseModel | None, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(config, options, clock)
        self.stage = weighing_stage(options)

    @property
    def polled(self) -> bool:
        return getattr(self.options, "mode", "continuous") == "poll"

    def request_bytes(self) -> bytes:
        return self.poll_command

    async def request(self, link: SerialLink) -> None:
        link.write(self.request_bytes())

    async def on_connect(self, link: SerialLink) -> None:
        if not self.polled and self.continuous_command:
            link.write(self.continuous_command)
