"""Serial test fixtures: a real linked pseudo-terminal pair, and running a driver against a simulator.

``pty_pair`` gives ``(master_fd, slave_path)``: what a test writes on the master arrives on the slave path
exactly as from an instrument on a USB adapter. 8N1 only — this kernel's pty rejects 8 data bits with
parity (EINVAL), so tests use 8N1 overrides for instruments whose factory setting has parity.
"""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from floorwatch.edge.config import InstrumentConfig
from floorwatch.edge.model import Measurement

PTY_SERIAL = {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1}


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        for fd in (master, slave):
            try:
                os.close(fd)
            except OSError:
                pass


def instrument(name: str, driver: str, port: str, **kw: Any) -> InstrumentConfig:
    """An instrument configuration for a pty: 8N1 and short timeouts unless given."""
    serial = {**PTY_SERIAL, **kw.pop("serial", {})}
    kw.setdefault("timeout", 0.5)
    return InstrumentConfig(name=name, driver=driver, port=port, serial=serial, **kw)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


class Collector:
    """``emit`` target that keeps measurements in order."""

    def __init__(self) -> None:
        self.items: list[Measurement] = []

    def __call__(self, m: Measurement) -> None:
        self.items.append(m)

    @property
    def values(self) -> list[float]:
        return [m.value for m in self.items]


def contiguous_in(received: list[float], sent: list[float]) -> bool:
    """Whether ``received`` appears in ``sent`` as one unbroken run (in order, nothing lost in between)."""
    n = len(received)
    return n == 0 or any(sent[i : i + n] == received for i in range(len(sent) - n + 1))


@pytest.fixture
def collector() -> Collector:
    return Collector()
