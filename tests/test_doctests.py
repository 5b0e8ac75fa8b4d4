"""The runnable examples in the modules' docstrings, run against the installed ``floorwatch`` package.

Collected by import name (not by file path, as ``--doctest-modules`` would), so the examples exercise the
same modules the rest of the suite imports, whether the package is installed editable or not.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The parts of the floorwatch namespace, one per top-level folder that is a package (setup.py's rule; an
# editable install's namespace path cannot be listed).
PARTS = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists())


def _modules() -> list[str]:
    out = []
    for part in PARTS:
        package = importlib.import_module(f"floorwatch.{part}")
        out.append(package.__name__)
        out += [info.name for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    return sorted(name for name in out if not name.endswith("_stats_core"))


# A module whose import needs something missing fails here, as it would for a user.
MODULES = _modules()


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder().find(module, name, module=module) if t.examples]


WITH_EXAMPLES = [name for name in MODULES if _examples(name)]


def test_the_package_has_examples_to_run() -> None:
    # Guards the collection itself: a change that hid every module from walk_packages would pass silently.
    assert len(WITH_EXAMPLES) >= 20, WITH_EXAMPLES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name: str) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
