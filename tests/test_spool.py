"""The store-and-forward spool: durability, order, disk budget, corruption and the sequence counter.

The crash test runs a real writer process and kills it with SIGKILL in the middle of its load.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import floorwatch.edge.spool.database as spool_database
from floorwatch.edge.model import Reading, encode_batch
from floorwatch.edge.spool import Spool, SpoolError
from harness._util import spool_reports

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024**2


def batch_payload(first_seq: int, n: int) -> bytes:
    """A realistic readings message: n readings of one characteristic, as the gateway encodes them."""
    rows = [Reading(ts_ns=1_700_000_000_000_000_000 + i * 1_000_000, seq=first_seq + i, instrument="caliper-1",
                    characteristic="bore_diameter", value=12.0 + (i % 17) * 0.001, unit="mm") for i in range(n)]
    return json.dumps(encode_batch(rows), separators=(",", ":")).encode()


def add_batch(spool: Spool, n: int = 10, topic: str = "fw/readings") -> tuple[int, int]:
    first = spool.issue(n)
    spool.add(topic, batch_payload(first, n), first_seq=first, last_seq=first + n - 1)
    return first, first + n - 1


def all_records(path: Path) -> list[tuple[int, int | None, int | None]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT id, first_seq, last_seq FROM outbox ORDER BY id").fetchall()


def test_record_survives_until_acknowledged_and_sequence_resumes(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    with Spool(path, max_bytes=8 * MiB) as spool:
        for _ in range(3):
            add_batch(spool, 5)
        assert spool.pending(10) == [], "nothing is handed out before it is on disk"
        assert spool.backlog() == 3
        assert spool.flush() == 3
        records = spool.pending(10)
        assert [(r.first_seq, r.last_seq) for r in records] == [(1, 5), (6, 10), (11, 15)]
        assert records[0].topic == "fw/readings" and records[0].qos == 1 and records[0].retain is False
        spool.ack([records[0].id])
        assert spool.backlog() == 2
    # Not acknowledged records are still there after a restart; the counter resumes without a gap.
    with Spool(path, max_bytes=8 * MiB) as spool:
        assert spool.backlog() == 2
        assert [(r.first_seq, r.last_seq) for r in spool.pending(10)] == [(6, 10), (11, 15)]
        assert spool.issue() == 16
        assert spool.stats()["sequence_skipped"] == 0


def test_release_hands_records_out_again_in_order(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=8 * MiB) as spool:
        for _ in range(8):
            add_batch(spool, 1)
        spool.flush()
        first = spool.pending(5)
        assert [r.first_seq for r in first] == [1, 2, 3, 4, 5]
        assert [r.first_seq for r in spool.pending(2)] == [6, 7], "handed-out records are not handed out twice"
        spool.ack([first[1].id, first[2].id])  # PUBACK for 2 and 3 ...
        spool.release([first[0].id, first[3].id, first[4].id])  # ... then the connection was lost
        assert [r.first_seq for r in spool.pending(10)] == [1, 4, 5, 8]
        spool.flush()
        assert spool.backlog() == 6
        assert [row[1] for row in all_records(spool.path)] == [1, 4, 5, 6, 7, 8]


def test_unnumbered_and_retained_messages_keep_their_flags(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=8 * MiB) as spool:
        spool.add("fw/active/bore/out_of_spec", b"", first_seq=None, last_seq=None, retain=True, qos=1)
        spool.flush()
        (rec,) = spool.pending(1)
        assert rec.retain is True and rec.first_seq is None and rec.payload == b""


def test_disk_budget_drops_oldest_counts_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    budget = 512 * 1024
    with Spool(path, max_bytes=budget) as spool:
        for _ in range(60):  # 60 messages of 200 readings (~11 KB each): more than the budget
            add_batch(spool, 200)
            spool.flush()
        events = spool_reports(spool)
        drops = [d for kind, d in events if kind == "dropped"]
        assert drops, f"no drop reported: {events}"
        stats = spool.stats()
        assert stats["bytes"] <= budget
        assert stats["dropped_records"] == sum(d["records"] for d in drops)
        assert stats["dropped_count"] == sum(d["count"] for d in drops)
        assert stats["dropped_first_seq"] == 1
        # The oldest went first: what is left is the newest, contiguous, and together with the reported
        # drops it covers every number issued — a gap that is fully explained.
        left = [(fs, ls) for _, fs, ls in all_records(path)]
        assert left[-1][1] == spool.last_seq == 60 * 200
        assert left[0][0] == stats["dropped_last_seq"] + 1
        assert all(a[1] + 1 == b[0] for a, b in zip(left, left[1:], strict=False))
        assert stats["dropped_count"] + sum(ls - fs + 1 for fs, ls in left) == 60 * 200
        # Drops come in chunks down to 95 % of the budget, not once per flush.
        assert len(drops) < 20
    # The totals survive a restart (they are reported in status).
    with Spool(path, max_bytes=budget) as spool:
        assert spool.stats()["dropped_records"] == stats["dropped_records"]


def test_budget_never_drops_records_in_flight(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=256 * 1024) as spool:
        add_batch(spool, 200)
        spool.flush()
        (oldest,) = spool.pending(1)
        for _ in range(40):
            add_batch(spool, 200)
            spool.flush()
        assert spool.stats()["dropped_records"] > 0
        assert all_records(spool.path)[0][0] == oldest.id, "the record in the broker's hands was kept"
        spool.ack([oldest.id])
        spool.flush()
        assert oldest.id not in [row[0] for row in all_records(spool.path)]


def test_garbage_spool_file_is_moved_aside_and_numbers_are_not_reused(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    with Spool(path, max_bytes=8 * MiB, seq_reserve=1000) as spool:
        add_batch(spool, 50)
        spool.flush()
    path.write_bytes(b"this is not a database, the SD card ate it" * 100)
    with Spool(path, max_bytes=8 * MiB, seq_reserve=1000) as spool:
        events = dict(spool_reports(spool))
        assert "corrupt" in events, events
        moved = Path(events["corrupt"]["moved_to"])
        assert moved.exists() and moved.read_bytes().startswith(b"this is not a database")
        assert moved.name.startswith("spool.sqlite.corrupt-")
        assert spool.stats()["corrupt_moved"] == 1
        # Numbers up to 50 may have been published: the new spool continues above the fsynced reservation
        # (1..1050, since the reservation was taken 1000 ahead), and says which numbers it cannot vouch for.
        skipped = events["sequence_skipped"]
        assert skipped["first_seq"] == 1 and skipped["last_seq"] == 1050
        assert spool.issue() == 1051
        add_batch(spool, 3)
        spool.flush()
        assert spool.backlog() == 1


def _damage_table_pages(path: Path) -> None:
    """What a failing SD card does: bytes of the table's pages (from page 3 on) become garbage."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(4096 * 2)
        fh.write(b"\xff" * (size - 4096 * 3))


def test_damaged_pages_found_on_open_are_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    with Spool(path, max_bytes=64 * MiB) as spool:
        for _ in range(40):
            add_batch(spool, 200)
        spool.flush()
    _damage_table_pages(path)
    with Spool(path, max_bytes=64 * MiB) as spool:
        events = dict(spool_reports(spool))
        assert "malformed" in events["corrupt"]["error"] and events["corrupt"]["lost_records"] is None
        add_batch(spool, 5)
        spool.flush()
        assert [r.last_seq for r in spool.pending(100)] == [spool.last_seq], "new data kept in the new spool"


def test_damage_found_while_running_keeps_memory_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    with Spool(path, max_bytes=64 * MiB) as spool:
        for _ in range(40):
            add_batch(spool, 200)
        spool.flush()
        spool._database.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the rows are in the main file now
        _damage_table_pages(path)
        other = sqlite3.connect(path)  # any other write makes SQLite re-read the damaged pages
        other.execute("INSERT OR REPLACE INTO meta VALUES ('touched', 1)")
        other.commit()
        other.close()
        assert spool.pending(100) == []
        (kind, detail), = spool_reports(spool)
        assert kind == "corrupt" and detail["lost_records"] == 40
        add_batch(spool, 5)  # what was still in memory goes to the new file ...
        spool.flush()
        # ... and the numbers go on where they were: this process knows every number it issued.
        assert [(r.first_seq, r.last_seq) for r in spool.pending(10)] == [(8001, 8005)]
        assert spool.stats()["sequence_skipped"] == 0


def test_unclean_stop_after_reboot_skips_to_the_reservation(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "spool.sqlite"
    boot = tmp_path / "boot_id"
    boot.write_text("boot-A\n")
    monkeypatch.setattr(spool_database, "_BOOT_ID", boot)
    spool = Spool(path, max_bytes=8 * MiB, seq_reserve=500)
    spool.open()
    add_batch(spool, 20)
    spool.flush()
    spool._database.writer.close()  # no close(): the process "died"
    # Same boot (process crash, SIGKILL): the committed number is trusted, no gap.
    again = Spool(path, max_bytes=8 * MiB, seq_reserve=500)
    again.open()
    assert again.issue() == 21
    again.flush()
    again._database.writer.close()  # died again after the flush
    boot.write_text("boot-B\n")  # power cut: the last commits may not have reached the card
    with Spool(path, max_bytes=8 * MiB, seq_reserve=500) as after_reboot:
        (kind, detail), *_ = spool_reports(after_reboot)
        assert kind == "sequence_skipped" and detail["first_seq"] == 22
        assert after_reboot.issue() == detail["last_seq"] + 1 > 21


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from floorwatch.edge.spool import Spool
    spool = Spool(Path(sys.argv[1]), max_bytes=64 * 1024**2)
    spool.open()
    payload = b"x" * 2000
    while True:
        for _ in range(20):
            first = spool.issue(500)
            spool.add("fw/readings", payload, first_seq=first, last_seq=first + 499)
        spool.flush()
        print(spool.last_seq, flush=True)
""")


def _run_writer_and_kill(path: Path, flushes: int) -> int:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    last = 0
    try:
        for _ in range(flushes):
            line = proc.stdout.readline()
            assert line, f"writer died: rc={proc.poll()}"
            last = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return last


def test_sigkill_mid_load_neither_reuses_nor_skips_numbers(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    seen_flushed = _run_writer_and_kill(path, 15)
    seen_again = 0
    for round_ in range(2):
        rows = all_records(path)
        assert rows[0][1] == 1
        for (_, _, ls), (_, fs, _) in zip(rows, rows[1:], strict=False):
            assert fs == ls + 1, f"gap or overlap after SIGKILL round {round_}: {ls} -> {fs}"
        committed = rows[-1][2]
        assert committed >= max(seen_flushed, seen_again), "a flush reported done was lost"
        with Spool(path, max_bytes=64 * MiB) as spool:
            assert spool.issue() == committed + 1, "the counter resumes right after the last committed number"
            assert spool.stats()["sequence_skipped"] == 0
        # the probe above issued a number without data and closed: that number is committed and unused;
        # remove it so the contiguity check of the next round stays exact.
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (committed,))
        if round_ == 0:
            seen_again = _run_writer_and_kill(path, 10)


def test_the_publishers_cycle_leaves_nothing_behind(tmp_path: Path) -> None:
    """Add, flush, hand out in a window of 20, acknowledge one by one, delete at the next flush — the cycle
    bench/bench_spool.py times (its CPU cost per message is a benchmark figure, not asserted here): every
    message is handed out once, in order, and nothing stays behind."""
    payloads = [batch_payload(1 + i * 500, 500) for i in range(20)]
    with Spool(tmp_path / "s.sqlite", max_bytes=512 * MiB) as spool:
        n = 400
        firsts = []
        for i in range(n):
            first = spool.issue(500)
            firsts.append(first)
            spool.add("fw/readings", payloads[i % 20], first_seq=first, last_seq=first + 499)
            if i % 20 == 19:
                spool.flush()
        # Replay as the publisher does it: a window of 20, acknowledgements one by one, deletes flushed
        # once a second (here: every 200 acknowledgements).
        window = spool.pending(20)
        handed_out = [r.first_seq for r in window]
        acked = 0
        while window:
            spool.ack([window.pop(0).id])
            acked += 1
            more = spool.pending(1)
            handed_out += [r.first_seq for r in more]
            window += more
            if acked % 200 == 0:
                spool.flush()
        spool.flush()
        assert acked == n and spool.backlog() == 0
        assert handed_out == firsts, "every message handed out once, in order"


def test_bad_input_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too small"):
        Spool(tmp_path / "s.sqlite", max_bytes=1000)
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match="data_dir"):
        Spool(tmp_path / "file" / "s.sqlite", max_bytes=MiB).open()
    with Spool(tmp_path / "s.sqlite", max_bytes=MiB) as spool:
        with pytest.raises(TypeError, match="bytes"):
            spool.add("t", "text", first_seq=None, last_seq=None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at least one"):
            spool.issue(0)
    with pytest.raises(SpoolError, match="not open"):
        spool.pending(1)


def test_a_disk_that_refuses_writes_does_not_fill_the_memory(tmp_path: Path) -> None:
    """A full or failing SD card: every flush fails and the records stay in memory for the next try — but
    not without bound (the gateway would be killed for memory and lose them all). Beyond
    ``max_buffer_bytes`` the oldest buffered records are dropped, counted and reported like a disk-budget
    drop; when the disk takes writes again, the rest is written and every number is accounted for.
    The disk is made to refuse writes for real: a child process with a file-size limit (EFBIG)."""
    script = textwrap.dedent("""
        import json, resource, signal, sys
        from pathlib import Path
        from floorwatch.edge.spool import Spool, SpoolError
        sys.path.insert(0, sys.argv[2])
        from test_spool import add_batch
        from harness._util import spool_reports
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails with EFBIG instead
        out = {"errors": [], "buffered_bytes": []}
        with Spool(Path(sys.argv[1]), max_bytes=8 * 1024**2, max_buffer_bytes=256 * 1024) as spool:
            add_batch(spool, 10)
            spool.flush()
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
            for _ in range(200):  # about 1.3 MB of readings while the disk refuses them
                add_batch(spool, 100)
                try:
                    spool.flush()
                except SpoolError as exc:
                    out["errors"].append(str(exc))
                out["buffered_bytes"].append(spool.stats()["buffered_bytes"])
            resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            spool.flush()
            out["events"] = spool_reports(spool)
            out["stats"] = spool.stats()
        print(json.dumps(out))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "spool.sqlite"), str(ROOT / "tests")],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert len(out["errors"]) >= 150 and "check free space and the disk" in out["errors"][0]
    assert max(out["buffered_bytes"]) <= 256 * 1024 + 10_000  # one batch beyond the bound at most
    drops = [d for kind, d in out["events"] if kind == "dropped"]
    stats = out["stats"]
    assert drops and stats["dropped_count"] == sum(d["count"] for d in drops)
    # every number is on disk or in exactly one drop report, and the drops were the oldest waiting
    on_disk = [(first, last) for _, first, last in all_records(tmp_path / "spool.sqlite")]
    ranges = sorted(on_disk + [(d["first_seq"], d["last_seq"]) for d in drops])
    assert [r[0] for r in ranges] == [1] + [r[1] + 1 for r in ranges[:-1]]
    assert ranges[-1][1] == stats["last_seq"] == 10 + 200 * 100
    written_after = min(f for f, _ in on_disk if f > drops[0]["first_seq"])  # what waited, newest
    assert all(d["last_seq"] < written_after for d in drops)
    with contextlib.closing(sqlite3.connect(tmp_path / "spool.sqlite")) as db:  # the totals survive a restart
        assert dict(db.execute("SELECT key, value FROM meta"))["dropped_count"] == stats["dropped_count"]


def test_a_drop_is_counted_only_when_it_is_committed(tmp_path: Path) -> None:
    """The disk budget is applied inside the flush transaction. When that transaction cannot be committed
    (the disk refuses the write: EFBIG from a file-size limit in a child process), nothing was dropped:
    reporting a drop then — and again when the retry really drops — would tell the buyer that twice as many
    records were lost as were, about records that are in fact still delivered."""
    script = textwrap.dedent("""
        import json, os, resource, signal, sys
        from pathlib import Path
        from floorwatch.edge.spool import Spool, SpoolError
        sys.path.insert(0, sys.argv[2])
        from test_spool import add_batch
        from harness._util import spool_reports
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        path = Path(sys.argv[1])
        out = {}
        with Spool(path, max_bytes=256 * 1024) as spool:
            for _ in range(45):  # just under the budget
                add_batch(spool, 100)
                spool.flush()
            wal = os.path.getsize(f"{path}-wal")
            resource.setrlimit(resource.RLIMIT_FSIZE, (wal, resource.RLIM_INFINITY))  # the WAL cannot grow
            for _ in range(20):  # over the budget: this flush would drop the oldest
                add_batch(spool, 100)
            try:
                spool.flush()
            except SpoolError as exc:
                out["error"] = str(exc)
            out["failed"] = {"events": spool_reports(spool), "dropped_count": spool.stats()["dropped_count"]}
            resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            spool.flush()
            out["retried"] = {"events": spool_reports(spool), "stats": spool.stats()}
        print(json.dumps(out))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "spool.sqlite"), str(ROOT / "tests")],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert "check free space" in out["error"]
    assert out["failed"] == {"events": [], "dropped_count": 0}, "a drop that was rolled back was reported"
    [(kind, detail)] = out["retried"]["events"]
    stats = out["retried"]["stats"]
    assert kind == "dropped" and detail["first_seq"] == 1 and stats["dropped_count"] == detail["count"]
    on_disk = sorted((first, last) for _, first, last in all_records(tmp_path / "spool.sqlite"))
    assert on_disk[0][0] == detail["last_seq"] + 1 and on_disk[-1][1] == stats["last_seq"] == 6500


def test_a_flush_in_progress_does_not_hold_up_the_event_loop(tmp_path: Path) -> None:
    """The gateway flushes in a worker thread so that a slow SD card (a commit, a WAL checkpoint's fsync)
    does not hold up the event loop, where drivers read their ports, the gateway numbers and queues
    records (issue/add) and the publisher hands out and acknowledges them (pending/ack). Those calls must
    not wait for the flush's transaction."""
    with Spool(tmp_path / "spool.sqlite", max_bytes=512 * MiB) as spool:
        add_batch(spool, 10)
        spool.flush()
        [handed] = spool.pending(1)
        big = b"x" * 200_000
        for _ in range(300):  # 60 MB in one transaction: a flush that takes a while on any disk
            first = spool.issue(1)
            spool.add("fw/readings", big, first_seq=first, last_seq=first)
        flusher = threading.Thread(target=spool.flush)
        began = time.perf_counter()
        flusher.start()
        waits = []
        while flusher.is_alive():
            t0 = time.perf_counter()
            add_batch(spool, 10)
            spool.ack([handed.id])
            spool.pending(5)
            spool.backlog()
            waits.append(time.perf_counter() - t0)
            time.sleep(0.002)
        took = time.perf_counter() - began
        flusher.join()
        assert took > 0.05, f"the flush took only {took * 1000:.0f} ms: not a test of anything"
        # Waiting for the transaction, the loop would get one turn in the whole flush; it gets many, each
        # short (the median: a busy machine may stretch one turn or two).
        median = sorted(waits)[len(waits) // 2]
        assert len(waits) >= 10 and median < took / 10, (
            f"{len(waits)} turns of the loop during a {took * 1000:.0f} ms flush, the median waiting "
            f"{median * 1000:.1f} ms, the longest {max(waits) * 1000:.0f} ms")
        spool.flush()
        assert spool.backlog() == 300 + len(waits)  # the 10-reading batches, the big ones; 1 acknowledged


def test_budget_keeps_the_retained_state_copies(tmp_path: Path) -> None:
    """Retained rows are the broker's picture of the current state (``active/...``: an alert raised, then
    emptied when it clears). They are tiny; dropping one for space would leave a cleared alert raised for
    ever at the broker (its emptying copy gone) — so the budget drops data rows, never those."""
    path = tmp_path / "s.sqlite"
    with Spool(path, max_bytes=512 * 1024) as spool:
        spool.add("fw/active/bore/out_of_spec", b'{"state":"raised"}', first_seq=None, last_seq=None, retain=True)
        add_batch(spool, 200)
        spool.add("fw/active/bore/out_of_spec", b"", first_seq=None, last_seq=None, retain=True)
        for _ in range(60):  # well beyond the budget: the oldest data goes
            add_batch(spool, 200)
            spool.flush()
        drops = [d for kind, d in spool_reports(spool) if kind == "dropped"]
        assert drops and drops[0]["first_seq"] == 1
        retained = [(r.topic, r.payload) for r in spool.pending(1000) if r.retain]
    assert retained == [("fw/active/bore/out_of_spec", b'{"state":"raised"}'), ("fw/active/bore/out_of_spec", b"")]
