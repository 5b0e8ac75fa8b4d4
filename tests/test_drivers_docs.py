"""The driver pages and module docstrings stay true: every option is documented with its default, the
factory port setting is stated, and every configuration sample is valid."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from floorwatch.drivers import registry
from floorwatch.edge.config import InstrumentConfig

DOCS = Path(__file__).parent.parent / "docs" / "drivers"
SERIAL = [n for n in registry.names() if registry.get(n).transport == "serial"]
TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.S)


def _samples(text: str) -> list[dict]:
    return [tomllib.loads(block) for block in TOML_BLOCK.findall(text)]


def _check_instruments(data: dict) -> int:
    n = 0
    for raw in data.get("instruments", []):
        inst = InstrumentConfig.model_validate(raw)
        registry.parse_options(registry.get(inst.driver), inst)
        n += 1
    return n


@pytest.mark.parametrize("name", SERIAL)
def test_driver_page_documents_options_defaults_and_port_settings(name):
    page = DOCS / f"{name}.md"
    text = page.read_text()
    spec = registry.get(name)
    d = spec.serial_defaults
    assert f"**{d.baudrate} {d.bytesize}{d.parity}{d.stopbits}" in text, "factory port setting missing"
    for field, info in spec.options.model_fields.items():
        assert f"| `{field}` |" in text, f"{page}: option {field} is not in the options table"
        if not info.is_required() and info.default_factory is None:
            default = info.default
            shown = {True: "true", False: "false", None: "unset"}.get(default, None) if not isinstance(
                default, int | float) or isinstance(default, bool) else f"{default}"
            shown = shown if shown is not None else f'"{default}"'
            row = next(line for line in text.splitlines() if line.startswith(f"| `{field}` |"))
            assert shown.replace("\\", "\\\\") in row or shown in row, f"{page}: default of {field} ({shown}) not shown"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md") if p.stem in SERIAL or p.stem == "serial"))
def test_configuration_samples_in_driver_pages_are_valid(page):
    samples = _samples((DOCS / page).read_text())
    assert samples, f"{page} has no configuration sample"
    assert sum(_check_instruments(s) for s in samples) >= 1


@pytest.mark.parametrize("name", SERIAL)
def test_configuration_sample_in_module_docstring_is_valid(name):
    doc = __import__(registry.get(name).driver.__module__, fromlist=["_"]).__doc__
    block = doc.split("::\n\n", 1)[1].split("\n\n")
    lines = []
    for para in block:
        if not para.startswith("    "):
            break
        lines.append(para)
    text = "\n\n".join(lines)
    sample = tomllib.loads("\n".join(line[4:] for line in text.splitlines()))
    assert _check_instruments(sample) >= 1
