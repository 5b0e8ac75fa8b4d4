"""What `pip install` puts in site-packages: one import namespace, `floorwatch`, and the compiled core.

`edge` and `drivers` are names of unrelated packages on the package index; installing Floorwatch beside them
must break neither. The suite runs on an editable install (`make test`) and on a regular one
(`make test-installed`); these checks read whichever the interpreter has.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _installed() -> importlib.metadata.Distribution:
    # A RECORD file marks a real installation (a source checkout's egg-info has none).
    found = [d for d in importlib.metadata.distributions()
             if d.metadata["Name"] == "floorwatch" and d.read_text("RECORD") is not None]
    assert len(found) == 1, f"expected one installed floorwatch distribution, found {len(found)}"
    return found[0]


def test_only_floorwatch_at_the_top_of_site_packages():
    dist = _installed()
    tops = {f.parts[0] for f in dist.files
            if f.parts[0] not in ("..", "__pycache__") and not f.parts[0].endswith(".dist-info")}
    editable = {t for t in tops if t.startswith("__editable__")}
    if editable:
        # An editable install maps import names to the checkout's folders: every name is floorwatch.<part>.
        (finder,) = [t for t in editable if t.endswith("_finder.py")]
        mapping = importlib.import_module(finder.removesuffix(".py")).MAPPING
        assert mapping and all(name.startswith("floorwatch.") for name in mapping), mapping
        assert tops == editable, tops
    else:
        assert tops == {"floorwatch"}, tops


def test_every_top_level_package_folder_is_a_part_of_the_namespace():
    parts = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert {"edge", "drivers", "gateway", "dashboards"} <= parts
    for part in parts:
        module = importlib.import_module(f"floorwatch.{part}")
        assert module.__name__ == f"floorwatch.{part}"


def test_the_statistics_core_is_compiled_and_in_the_namespace():
    from floorwatch.edge import _stats_core, stats

    assert stats.IMPLEMENTATION == "compiled", stats.FALLBACK_REASON
    assert _stats_core.__name__ == "floorwatch.edge._stats_core"


def test_the_command_is_floorwatch_gateway_cli():
    (script,) = [e for e in _installed().entry_points if e.group == "console_scripts"]
    assert (script.name, script.value) == ("floorwatch", "floorwatch.gateway.cli:main")
