"""The InfluxDB schema's measurement names: what the bridge writes and the dashboards query.

The whole schema (tags, fields, timestamps) is documented in docs/influxdb-schema.md. The bridge builds its
points with these names (``floorwatch.bridge.points``) and ``dashboards/generate.py`` queries them, so both
sides of the database spell them alike; the dashboard tests run every query against a real InfluxDB loaded
with the bridge's own points, so a rename breaks a test, not a dashboard.

They live here, in the core library below both, because the dashboard generator must not need the bridge
(an application with its MQTT client, database client and service) to know what to query.

>>> MEASUREMENTS
('reading', 'stats', 'alert', 'event', 'presence', 'integrity')
"""

from __future__ import annotations

from typing import Final

READING: Final = "reading"  # one instrument reading
STATS: Final = "stats"  # a characteristic's statistics snapshot (with its spec limits when known)
ALERT: Final = "alert"  # an alert raised or cleared
EVENT: Final = "event"  # a change of state of an instrument, the spool or the gateway
PRESENCE: Final = "presence"  # a gateway online/offline (its retained presence topic)
INTEGRITY: Final = "integrity"  # numbers the bridge found missing, or the gateway reported dropped/skipped

MEASUREMENTS: Final = (READING, STATS, ALERT, EVENT, PRESENCE, INTEGRITY)
