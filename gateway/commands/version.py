from __future__ import annotations

import argparse
import platform

from floorwatch import edge


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from floorwatch.edge import stats

    print(f"floorwatch {edge.__version__} (Python {platform.python_version()}, {platform.machine()})")
    print(f"statistics core: {stats.IMPLEMENTATION}" + ("" if stats.IMPLEMENTATION == "compiled" else
          f" (compiled core unavailable: {stats.FALLBACK_REASON})"))
    return 0
