"""Configuration names → driver modules (Telegraf-style: one module per driver, loaded on demand).

>>> "mitutoyo" in names() and "modbus" in names()
True
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path

from pydantic import ValidationError

from floorwatch.drivers.base import DriverSpec
from floorwatch.edge.config import ConfigError, GatewayConfig, InstrumentConfig, load_config

# name -> module that defines DRIVER (or DRIVERS[name] where one module serves several names)
_MODULES: dict[str, str] = {
    "mitutoyo": "floorwatch.drivers.mitutoyo",
    "uwave": "floorwatch.drivers.mitutoyo",
    "sylvac": "floorwatch.drivers.sylvac",
    "mtsics": "floorwatch.drivers.mtsics",
    "aandd": "floorwatch.drivers.aandd",
    "sartorius": "floorwatch.drivers.sartorius",
    "ohaus": "floorwatch.drivers.ohaus",
    "indicator": "floorwatch.drivers.indicator",
    "xk3190": "floorwatch.drivers.xk3190",
    "regex": "floorwatch.drivers.regex",
    "modbus": "floorwatch.drivers.modbus",
}


class UnknownDriver(KeyError):
    def __str__(self) -> str:
        name = self.args[0]
        close = difflib.get_close_matches(name, _MODULES, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known drivers: {', '.join(names())}"
        return f"no driver named {name!r}; {hint}"


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> DriverSpec:
    """The spec of driver ``name``; raises :class:`UnknownDriver` with a suggestion."""
    if name not in _MODULES:
        raise UnknownDriver(name)
    module = importlib.import_module(_MODULES[name])
    specs = getattr(module, "DRIVERS", None)
    spec = specs[name] if specs else module.DRIVER
    assert spec.name == name, f"{module.__name__} registers {spec.name!r} under {name!r}"
    return spec


def parse_options(spec: DriverSpec, instrument: InstrumentConfig):
    """Validate an instrument's ``options`` table against the driver's model."""
    if spec.options is None:
        if instrument.options:
            raise ValueError(f"driver {spec.name!r} takes no options; remove the [options] table")
        return None
    return spec.options.model_validate(instrument.options)


def check(config: GatewayConfig, source: str) -> list[str]:
    """Driver-level problems of a structurally valid configuration, one line each."""
    problems: list[str] = []
    for n, inst in enumerate(config.instruments):
        where = f"{source}: instruments[{n}]"
        try:
            spec = get(inst.driver)
        except UnknownDriver as exc:
            problems.append(f"{where}.driver: {exc}")
            continue
        if spec.transport == "serial" and inst.host is not None:
            problems.append(f"{where}.host: {inst.driver} is a serial instrument; set 'port' instead of 'host'")
        if spec.transport == "serial" and inst.modbus is not None:
            problems.append(f"{where}.modbus: only the modbus driver takes a [modbus] table")
        if inst.simulate is not None and spec.scenarios and inst.simulate not in spec.scenarios:
            problems.append(
                f"{where}.simulate: unknown scenario {inst.simulate!r}; {inst.driver} simulates: "
                + ", ".join(spec.scenarios)
            )
        try:
            parse_options(spec, inst)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                problems.append(f"{where}.options.{loc}: {err['msg'].removeprefix('Value error, ')}")
        except ValueError as exc:
            problems.append(f"{where}.options: {exc}")
    return problems


def load_checked(path: Path) -> GatewayConfig:
    """:func:`floorwatch.edge.config.load_config` plus the driver-level checks: every problem of a gateway file, as one
    :class:`ConfigError` (one line each) — what ``floorwatch run`` and ``check-config`` start from."""
    config = load_config(path)
    problems = check(config, Path(path).name)
    if problems:
        raise ConfigError("\n".join(problems), problems)
    return config
