"""Spec limits for the points: which characteristic of which gateway has which nominal, LSL and USL.

The bridge reads them from the gateways' own configuration files (``[bridge] gateway_configs``), so the
limits on the dashboards are the ones the gateway alerts on: readings outside them are marked
``out_of_spec`` and the statistics carry ``nominal``/``lsl``/``usl`` for the charts' limit lines.

>>> from pathlib import Path
>>> limits = SpecLimits.load([Path(__file__).resolve().parents[1] / "gateway" / "example.toml"])
>>> limits.get(Origin("dongguan-2", "line-3", "gw-01"), "bore_diameter")
Spec(nominal=12.0, lsl=11.95, usl=12.05)
>>> limits.get(Origin("dongguan-2", "line-3", "gw-02"), "bore_diameter") is None
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from floorwatch.bridge.points import Origin, Spec
from floorwatch.edge.config import load_config


@dataclass(frozen=True, slots=True)
class _Key:
    origin: Origin
    characteristic: str


@dataclass
class SpecLimits:
    """The spec of each measured characteristic, by gateway; none for counters or unknown gateways."""

    by_key: dict[_Key, Spec] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: Iterable[Path]) -> SpecLimits:
        """From gateway configuration files (validated as ``floorwatch run`` would: a mistake is a
        :class:`~floorwatch.edge.config.ConfigError` naming the file and key)."""
        limits = cls()
        for path in paths:
            cfg = load_config(path)
            origin = Origin(cfg.gateway.site, cfg.gateway.line, cfg.gateway.id)
            for c in cfg.characteristics:
                if c.kind == "measurement":
                    limits.by_key[_Key(origin, c.name)] = Spec(nominal=c.nominal, lsl=c.lsl, usl=c.usl)
        return limits

    def get(self, origin: Origin, characteristic: str) -> Spec | None:
        return self.by_key.get(_Key(origin, characteristic))

    def __len__(self) -> int:
        return len(self.by_key)
