"""The gateway application on the Pi: the `floorwatch` command, the service, the local web page."""

import floorwatch.edge  # noqa: F401  (first: it keeps the process's floating point IEEE-754, see there)
