"""A simulated serial instrument on a pseudo-terminal.

The simulator opens a pty pair and points a symlink (``endpoint["port"]``) at the slave side, like
``/dev/serial/by-id/…`` points at ``/dev/ttyUSB0``. The driver opens that path as it would a real port.
The simulator writes frames on the master side (continuous output) and answers requests like the real
instrument (polled output).

Unplugging closes the master — the driver's next read fails exactly like a pulled USB adapter — and
removes the symlink; replugging creates a *new* pty (a new ``/dev/pts/N``, as a replugged adapter gets a
new ``ttyUSB`` number) behind the same symlink path.

Bytes are written non-blocking: while no driver is connected the kernel buffer fills and further frames
are dropped, as a real instrument talking to an unplugged cable would lose them. ``sent`` records every
value in the form it went on the wire, in order, so tests can compare what the driver read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import tty
from pathlib import Path

from floorwatch.drivers.base import Simulator
from floorwatch.drivers.framing import Framer
from floorwatch.drivers.simulate.scenario import Event, Scenario
from floorwatch.edge.clock import SYSTEM_CLOCK, Clock


class PtySimulator(Simulator):
    """Base of the serial simulators: subclasses say how a value looks on the wire and how to answer.

    ``frame(event)`` returns the bytes of one reading and the value as sent (None if the frame carries no
    value); ``answer(request)`` returns the reply to one request (or None). ``streaming`` says whether the
    instrument currently sends on its own (continuous output) every ``interval`` seconds.
    """

    request_terminator: bytes = b"\r"
    streaming: bool = True

    def __init__(
        self,
        scenario: Scenario,
        *,
        interval: float = 0.1,
        path: str | os.PathLike[str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.scenario = scenario
        self.interval = interval
        self.clock = clock
        self._tmpdir: str | None = None
        self._path = Path(path) if path is not None else None
        self.endpoint: dict[str, str] = {}
        self.sent: list[float] = []
        self.requests: list[bytes] = []
        self.dropped = 0
        self.plugged = False
        self._master = -1
        self._slave = -1
        self._tasks: list[asyncio.Task[None]] = []
        self._framer = Framer(self.request_terminator, max_len=64)

    # -- protocol hooks -----------------------------------------------------------------------------
    def frame(self, event: Event) -> tuple[bytes, float | None]:
        raise NotImplementedError

    def answer(self, request: bytes) -> bytes | None:
        return None

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        assert self._path is not None, "start the simulator first"
        return self._path

    async def start(self) -> None:
        if self._path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="floorwatch-sim-")
            self._path = Path(self._tmpdir) / "port"
        self.endpoint = {"port": str(self._path)}
        self.plug()
        self._tasks.append(asyncio.create_task(self._stream(), name=f"simulator {self._path}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.unplug()
        if self._tmpdir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._tmpdir)

    def plug(self) -> None:
        """Create a new pty and point the port path at it (adapter plugged in)."""
        if self.plugged:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass unchanged until the driver opens the port
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        tmp = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)
        self._framer.clear()
        asyncio.get_running_loop().add_reader(master, self._readable)
        self.plugged = True

    def unplug(self) -> None:
        """Close the pty and remove the port path (adapter pulled out)."""
        if not self.plugged:
            return
        self.plugged = False
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_reader(self._master)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    async def outage(self, seconds: float) -> None:
        self.unplug()
        await asyncio.sleep(seconds)
        self.plug()

    # -- I/O ----------------------------------------------------------------------------------------
    def write(self, data: bytes) -> bool:
        """Write to the line; False (and counted in ``dropped``) when nobody reads and the buffer is full."""
        if not self.plugged:
            self.dropped += 1
            return False
        try:
            n = os.write(self._master, data)
        except (BlockingIOError, OSError):
            self.dropped += 1
            return False
        if n < len(data):
            self.dropped += 1
        return True

    def emit(self, event: Event) -> None:
        """Put one scenario event on the line."""
        if event.kind == "garbage":
            self.write(event.garbage)
            return
        data, value = self.frame(event)
        if self.write(data) and value is not None:
            self.sent.append(value)

    async def _stream(self) -> None:
        while True:
            if self.streaming and self.plugged:
                event = self.scenario.next()
                if event.kind == "unplug":
                    await self.outage(event.seconds)
                    continue
                self.emit(event)
            await asyncio.sleep(self.interval)

    def _readable(self) -> None:
        data = self.read_requests()
        for request in self._framer.feed(data):
            self.requests.append(request)
            self.respond(request)

    def read_requests(self) -> bytes:
        """What the driver wrote since the last call (b"" when nothing is there or the pty is gone)."""
        try:
            return os.read(self._master, 1024)
        except OSError:  # includes BlockingIOError: a spurious wake-up
            return b""

    def respond(self, request: bytes) -> None:
        reply = self.answer(request)
        if reply is not None:
            self.write(reply)

    def reply_reading(self, *, stable_only: bool = False) -> bytes | None:
        """The frame answering a polled request: the next scenario value (the next stable one when the
        instrument's command waits for stability), recorded in ``sent``; None while unplugged."""
        event = self.next_reading()
        while stable_only and event is not None and not event.stable:
            event = self.next_reading()
        if event is None:
            return None
        data, value = self.frame(event)
        if value is not None:
            self.sent.append(value)
        return data

    def next_reading(self) -> Event | None:
        """The next scenario event for a polled reply; garbage is written and unplugs happen on the way."""
        while True:
            event = self.scenario.next()
            if event.kind == "value":
                return event
            if event.kind == "garbage":
                self.write(event.garbage)
                continue
            self._tasks.append(asyncio.get_running_loop().create_task(self.outage(event.seconds)))
            return None
