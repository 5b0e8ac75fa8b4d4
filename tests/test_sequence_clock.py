"""Sequence numbers survive restarts without gaps or reuse; the manual clock moves only when told."""

from __future__ import annotations

import pytest

from floorwatch.edge.clock import ManualClock, SystemClock
from floorwatch.edge.sequence import SequenceCounter, SequenceError


def test_numbers_resume_after_the_last_committed(tmp_path):
    path = tmp_path / "seq"
    c = SequenceCounter(path)
    assert c.take(5) == 1 and c.take() == 6
    c.commit()
    c.take(3)  # issued but never committed: the data carrying them never became durable
    again = SequenceCounter(path)
    assert again.take() == 7


def test_floor_from_the_spool_wins_over_an_older_file(tmp_path):
    path = tmp_path / "seq"
    c = SequenceCounter(path)
    c.take(10)
    c.commit()
    assert SequenceCounter(path, floor=42).take() == 43


def test_corrupt_file_is_an_error_with_advice(tmp_path):
    path = tmp_path / "seq"
    path.write_text("garbage")
    with pytest.raises(SequenceError, match="sequence file is corrupt"):
        SequenceCounter(path)


def test_take_needs_a_positive_count(tmp_path):
    with pytest.raises(ValueError):
        SequenceCounter(tmp_path / "s").take(0)


def test_clocks():
    c = ManualClock(start_ns=0)
    c.advance(1.5)
    assert (c.now_ns(), c.monotonic()) == (1_500_000_000, 1.5)
    with pytest.raises(ValueError):
        c.advance(-1)
    s = SystemClock()
    assert s.now_ns() > 1_600_000_000 * 10**9 and s.monotonic() > 0
