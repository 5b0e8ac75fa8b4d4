"""The shared serial transport on real ptys: bytes flow, frames are cut, unplug/replug is survived."""

from __future__ import annotations

import asyncio
import os

from drivers import registry
from drivers.framing import Framer
from drivers.serial_port import SerialLink, effective_settings
from edge.config import SerialSettings


async def test_bytes_flow_through_a_pty_pair(pty_pair):
    master, path = pty_pair
    link = await SerialLink.open(path, effective_settings(SerialSettings(), registry.get("mitutoyo").serial_defaults),
                                 Framer(b"\r"))
    try:
        os.write(master, b"01A+0000.1")
        assert await link.read_frames(0.1) == []
        os.write(master, b"23\r01A-0001.000\r")
        frames = await link.read_frames(1.0)
        assert frames == [b"01A+0000.123\r", b"01A-0001.000\r"]
        link.write(b"1\r")
        await asyncio.sleep(0.05)
        assert os.read(master, 100) == b"1\r"
    finally:
        link.close()
