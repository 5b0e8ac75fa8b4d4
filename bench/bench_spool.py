"""Benchmark: CPU time the spool costs per published message (a batch of 500 readings), write to delete.

The gateway aims at 50 000 readings/s in batches of 500, i.e. 100 messages/s: the spool's cost per message
decides how much of a Pi's core that takes. Each message is issued its numbers, added, flushed (every 20),
handed out in a window of 20, acknowledged one by one and deleted by the next flush (every 200), as the
gateway and its publisher do it. The named peer, in the same run on the same payloads, is the least any
SQLite spool must do: one INSERT per message in a transaction per 20, and one DELETE per message in a
transaction per 200, with the same WAL and synchronous settings — no numbering, no budget, no hand-out.

Run: ``python3 bench/bench_spool.py`` (``--messages``, ``--repeat``; the fastest round counts). The figures in
docs/benchmarks.md ("Spool") come from this script.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

from floorwatch.edge.model import Reading, encode_batch
from floorwatch.edge.spool import Spool

BATCH = 500


def payloads() -> list[bytes]:
    out = []
    for b in range(20):
        rows = [Reading(ts_ns=1_700_000_000_000_000_000 + i, seq=1 + b * BATCH + i, instrument="caliper-1",
                        characteristic="bore_diameter", value=12.0 + i * 1e-6, unit="mm") for i in range(BATCH)]
        out.append(json.dumps(encode_batch(rows), separators=(",", ":")).encode())
    return out


def floorwatch_spool(path: Path, data: list[bytes], n: int) -> float:
    """CPU seconds per message through floorwatch's Spool."""
    with Spool(path, max_bytes=2**31) as spool:
        start = time.process_time()
        for i in range(n):
            first = spool.issue(BATCH)
            spool.add("fw/readings", data[i % len(data)], first_seq=first, last_seq=first + BATCH - 1)
            if i % 20 == 19:
                spool.flush()
        window = spool.pending(20)
        acked = 0
        while window:
            spool.ack([window.pop(0).id])
            acked += 1
            window += spool.pending(1)
            if acked % 200 == 0:
                spool.flush()
        spool.flush()
        elapsed = time.process_time() - start
        if acked != n or spool.backlog() != 0:
            raise RuntimeError(f"spool benchmark lost messages: {acked} of {n}, backlog {spool.backlog()}")
    return elapsed / n


def bare_sqlite(path: Path, data: list[bytes], n: int) -> float:
    """CPU seconds per message for the peer: bare INSERTs and DELETEs on one table."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, topic TEXT, payload BLOB)")
    start = time.process_time()
    for i in range(0, n, 20):
        db.execute("BEGIN")
        db.executemany("INSERT INTO outbox (topic, payload) VALUES (?, ?)",
                       [("fw/readings", data[(i + j) % len(data)]) for j in range(min(20, n - i))])
        db.execute("COMMIT")
    ids = [row[0] for row in db.execute("SELECT id FROM outbox ORDER BY id")]
    for i in range(0, len(ids), 200):
        db.execute("BEGIN")
        db.executemany("DELETE FROM outbox WHERE id = ?", [(x,) for x in ids[i:i + 200]])
        db.execute("COMMIT")
    elapsed = time.process_time() - start
    db.close()
    return elapsed / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help=f"messages of {BATCH} readings per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the fastest counts")
    args = parser.parse_args(argv)
    data = payloads()
    ours, peer = [], []
    for r in range(args.repeat):  # interleaved, so that a busy moment does not favour one side
        with tempfile.TemporaryDirectory() as tmp:
            ours.append(floorwatch_spool(Path(tmp) / f"spool-{r}.sqlite", data, args.messages))
            peer.append(bare_sqlite(Path(tmp) / f"peer-{r}.sqlite", data, args.messages))
    best, best_peer = min(ours), min(peer)
    print(f"Python {platform.python_version()} on {platform.machine()}, SQLite {sqlite3.sqlite_version}; "
          f"{args.messages} messages of {BATCH} readings ({len(data[0])} bytes) x {args.repeat} rounds")
    print(f"floorwatch Spool : {best * 1e6:7.0f} us CPU per message "
          f"(100 messages/s = {best * 100 * 100:.1f} % of a core)")
    print(f"bare SQLite peer : {best_peer * 1e6:7.0f} us CPU per message")
    print(f"Spool / peer     : {best / best_peer:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
