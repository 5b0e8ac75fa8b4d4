"""Rolling SPC statistics per characteristic: ``from floorwatch.edge.stats import RollingStats``.

The compiled core (``floorwatch.edge._stats_core``, built from ``ext/_stats_core.pyx``) is used when it can be
imported; otherwise the pure-Python reference (``floorwatch.edge.stats.reference``) takes over, with one warning on
the ``floorwatch.stats`` logger, and the gateway keeps working, only slower. ``FLOORWATCH_PURE_PYTHON=1``
in the environment forces the reference. ``IMPLEMENTATION`` says which one is active ("compiled" or
"python") and ``FALLBACK_REASON`` why the compiled one is not ("" when it is); ``floorwatch version``
prints both.

The bit layout of the per-point results is in :mod:`floorwatch.edge.stats.rules`; the algorithms and their papers
are in ``docs/statistics.md``.
"""

from __future__ import annotations

import logging
import os

from floorwatch.edge.stats import reference, rules
from floorwatch.edge.stats._api import RollingStatsApi, capability

__all__ = ["RollingStats", "IMPLEMENTATION", "FALLBACK_REASON", "capability", "rules", "reference"]

log = logging.getLogger("floorwatch.stats")


def _load() -> tuple[type, str, str]:
    if os.environ.get("FLOORWATCH_PURE_PYTHON", "") not in ("", "0"):
        reason = "FLOORWATCH_PURE_PYTHON is set in the environment"
        log.info("statistics core: pure-Python reference (%s)", reason)
        return reference.RollingStats, "python", reason
    try:
        from floorwatch.edge import _stats_core
    except ImportError as exc:
        reason = (f"{exc}; build it with 'python3 setup.py build_ext --inplace' or reinstall with "
                  "'pip install .' (needs a C compiler)")
        log.warning("statistics core: compiled core unavailable, using the slower pure-Python reference: %s",
                    reason)
        return reference.RollingStats, "python", reason

    class RollingStats(RollingStatsApi, _stats_core.Core):
        __doc__ = RollingStatsApi.__doc__
        __qualname__ = "RollingStats"
        __module__ = "floorwatch.edge.stats"

    return RollingStats, "compiled", ""


RollingStats, IMPLEMENTATION, FALLBACK_REASON = _load()
