"""Store-and-forward spool: every message the gateway publishes is on disk before it leaves.

Why: a gateway beside a production line must not lose data when the broker, the network or the gateway
itself goes away. Each outgoing MQTT message (topic, payload, QoS, retain flag and the range of gateway
sequence numbers it carries) is written to a SQLite database in WAL mode before it is published, and
deleted only after the broker acknowledged it (QoS 1 PUBACK). A broker outage of hours therefore
loses nothing: the backlog is handed out again in order when the broker returns.

The spool also OWNS the gateway sequence counter, so that numbers and the data carrying them become
durable in the same transaction (``sequence``).

How it writes (details and SD-card care in ``docs/spool.md``):

* ``add()`` only appends to an in-memory list; ``flush()`` writes all of it in ONE transaction
  (``executemany``) together with the highest issued sequence number and the deletions of acknowledged
  records. The gateway calls ``flush()`` every ``[spool] flush_interval`` seconds: an SD card is never
  written per reading. A process crash (even SIGKILL) loses nothing committed; a power cut may lose the
  last commits, which the sequence reservation accounts for.
* ``pending()`` hands out the oldest committed records not yet handed out; ``ack()`` marks them
  delivered (deleted at the next flush); ``release()`` hands them out again (connection lost);
  ``undeliverable()`` drops one the broker can never take, counted and reported.
* Disk budget: beyond ``max_bytes`` the oldest records are dropped, counted, and a ``dropped`` event is
  queued for the gateway to report — never silently.
* Corruption: a file SQLite cannot read is moved aside as ``<path>.corrupt-<UTC time>`` (with its WAL),
  a ``corrupt`` event is queued, and a new spool starts, also when found while running (records still
  in memory are written to the new file).

The parts, one job each; ``Spool`` (``spool.py``) composes them and is the only one callers use:

============  ===========================================================================================
``database``  the SQLite file: connections, schema, WAL settings, the ``meta`` table, every SQL statement
``recovery``  recognising a damaged file and moving it aside
``sequence``  issuing numbers, resuming them after a restart, the fsynced reservation (``<path>.seq``)
``budget``    the disk budget, and the account of every drop (totals in ``meta``)
``buffer``    the in-memory write buffer, bounded while the disk refuses writes
``delivery``  handing records out, acknowledgements, releases, the listeners woken by a flush
``events``    the typed reports ``drain_events()`` returns (dropped, corrupt, sequence skipped)
``records``   ``SpoolRecord``, ``SpoolError`` and the records the parts pass between them
============  ===========================================================================================

Beyond the API agreed with the gateway service: ``Spool(..., seq_reserve=1_000_000)`` (how far ahead the
reservation reaches), ``add_listener(callback)`` (called after a flush committed new rows; the MQTT
publisher wakes up on it instead of polling), ``last_seq`` (the highest issued number), and ``stats()``
also reports ``last_seq``, ``buffered``, ``in_flight``, ``max_bytes``, ``file_bytes`` and
``sequence_skipped``.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "spool.sqlite"
>>> with Spool(path, max_bytes=8 * 1024**2) as spool:
...     first = spool.issue(3)
...     spool.add("fw/readings", b'{"rows":[]}', first_seq=first, last_seq=first + 2)
...     spool.flush()
...     [r.last_seq for r in spool.pending(10)]
1
[3]
>>> with Spool(path, max_bytes=8 * 1024**2) as spool:   # not acknowledged: still there after a restart
...     spool.backlog(), spool.issue()
(1, 4)
"""

from floorwatch.edge.spool.events import SequenceSkipped, SpoolCorrupt, SpoolDropped, SpoolEvent
from floorwatch.edge.spool.records import SpoolError, SpoolRecord
from floorwatch.edge.spool.spool import Spool

__all__ = ["Spool", "SpoolError", "SpoolRecord", "SpoolEvent", "SpoolDropped", "SpoolCorrupt", "SequenceSkipped"]
