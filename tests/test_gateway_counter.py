"""Production counts across a gateway restart: a real pymodbus server, the real gateway (in-process, and a
``floorwatch run`` process killed with SIGKILL), what it spooled for publishing read back from the spool.

What the buyer's "parts produced" must show: the count goes on from where it was, with the parts the
device made while the gateway was down — never a drop to 0, never backwards, never a spike.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
from pathlib import Path

import pytest
from test_gateway_e2e import start_gateway, stop_gateway, wait_async, write_config

from floorwatch.drivers.modbus.points import ModbusOptions, Point
from floorwatch.edge.clock import SYSTEM_CLOCK, ManualClock
from floorwatch.edge.config import parse_config
from floorwatch.edge.model import Reading, decode_batch
from floorwatch.edge.spool import Spool
from floorwatch.gateway.events import EventLog
from floorwatch.gateway.service import Gateway
from harness._util import free_port

pytestmark = pytest.mark.service

POINTS = [
    {"name": "", "address": 0, "type": "u32", "order": "CDAB", "counter": True, "unit": "pcs"},
    {"name": "small", "address": 2, "type": "u16", "counter": True, "unit": "pcs"},
]
CHARACTERISTICS = [
    {"name": "parts", "instrument": "counter-1", "unit": "pcs", "kind": "count", "idle_after": 60},
    {"name": "small_parts", "instrument": "counter-1", "channel": "small", "unit": "pcs", "kind": "count"},
]


def sim_options(points: list[dict] = POINTS) -> ModbusOptions:
    return ModbusOptions(points=[Point(**p) for p in points])


def config(tmp_path: Path, sim, points: list[dict] = POINTS):
    return parse_config({
        "gateway": {"site": "s1", "line": "l1", "id": "gw", "data_dir": str(tmp_path / "data")},
        "instruments": [{"name": "counter-1", "driver": "modbus", **sim.endpoint, "poll_interval": 0.05,
                         "timeout": 0.5, "options": {"points": points}}],
        "characteristics": CHARACTERISTICS,
        "spool": {"flush_interval": 0.05},
        "web": {"enabled": False},
    })


class Running:
    """One gateway run in-process, until ``stop()``."""

    def __init__(self, cfg) -> None:
        self.log = io.StringIO()
        self.gw = Gateway(cfg, events=EventLog(stream=self.log, timestamps=False), publish=False)
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(self.gw.run(self.stop_event))

    def value(self, characteristic: str) -> float | None:
        ch = self.gw.characteristics.get(characteristic)
        return None if ch is None or ch.last is None else ch.last.value

    async def wait_value(self, characteristic: str, value: float) -> None:
        await wait_async(lambda: self.value(characteristic) == value, 10,
                         f"{characteristic} = {value} (is {self.value(characteristic)})")

    async def stop(self) -> int:
        self.stop_event.set()
        return await asyncio.wait_for(self.task, 20)


def spooled_counts(data_dir: Path, characteristic: str) -> list[Reading]:
    """Every reading of ``characteristic`` the gateway queued for the broker, in sequence order."""
    with Spool(data_dir / "spool.sqlite", max_bytes=64 * 1024**2) as spool:
        records = spool.pending(1_000_000)
    readings = [r for rec in records if rec.topic.endswith("/readings")
                for r in decode_batch(json.loads(rec.payload))]
    return sorted((r for r in readings if r.characteristic == characteristic), key=lambda r: r.seq)


async def test_count_continues_across_a_clean_restart_with_the_parts_made_meanwhile(modbus_sim, tmp_path):
    sim = await modbus_sim("counter", sim_options(), ManualClock())
    sim.set_value("", 5000)
    sim.set_value("small", 65530)
    cfg = config(tmp_path, sim)
    first = Running(cfg)
    await first.wait_value("parts", 0.0)
    for raw in (5010, 5020, 5030, 5037):  # at most 10 parts a poll: what max_rate believes in 0.05 s
        sim.set_value("", raw)
        await first.wait_value("parts", raw - 5000)
    sim.set_value("small", 65534)
    await first.wait_value("small_parts", 4.0)
    assert await first.stop() == 0

    # the gateway is down; the device counts on, and its 16-bit counter wraps
    sim.set_value("", 5062)
    sim.set_value("small", 9)
    await asyncio.sleep(0.5)

    second = Running(cfg)
    await second.wait_value("parts", 62.0)
    await second.wait_value("small_parts", 15.0)
    sim.set_value("", 5070)
    await second.wait_value("parts", 70.0)
    assert second.gw.status()["characteristics"][0]["last_value"] == 70.0
    assert await second.stop() == 0
    assert "event=instrument_state_restored instrument=counter-1" in second.log.getvalue()

    for name, last, after_restart in (("parts", 70.0, 62.0), ("small_parts", 15.0, 15.0)):
        values = [r.value for r in spooled_counts(tmp_path / "data", name)]
        assert values == sorted(values), f"{name} went backwards: {values}"
        assert values[-1] == last
        # the first reading after the restart is exactly what the device counted meanwhile: no drop, no spike
        last_before = max(i for i, v in enumerate(values) if v < after_restart)
        assert values[last_before + 1] == after_restart, values


async def test_state_of_an_older_version_or_a_changed_register_map_is_ignored_with_a_log_line(
        modbus_sim, tmp_path):
    sim = await modbus_sim("counter", sim_options(), ManualClock())
    sim.set_value("", 100)
    sim.set_value("small", 100)
    cfg = config(tmp_path, sim)
    run = Running(cfg)
    await run.wait_value("parts", 0.0)
    sim.set_value("", 110)
    await run.wait_value("parts", 10.0)
    assert await run.stop() == 0

    state_path = tmp_path / "data" / "spool.sqlite.state.json"
    state = json.loads(state_path.read_text())
    assert state["instruments"]["counter-1"]["counters"][""]["total"] == 10
    older = {k: v for k, v in state.items() if k != "instruments"}  # what the previous version wrote
    state_path.write_text(json.dumps(older))
    run = Running(cfg)
    await run.wait_value("parts", 0.0)
    assert await run.stop() == 0
    assert "event=instrument_state_absent" in run.log.getvalue()
    assert "production counts start from 0" in run.log.getvalue()
    assert run.gw.restored  # the statistics and alerts of that file are restored all the same

    # the "small" counter moved to another register: its saved count is not continued, the other one is
    sim.set_value("", 120)
    run = Running(cfg)
    await run.wait_value("parts", 10.0)
    assert await run.stop() == 0
    moved = [POINTS[0], {**POINTS[1], "address": 4}]
    sim2 = await modbus_sim("counter", sim_options(moved), ManualClock())
    sim2.set_value("", 125)
    sim2.set_value("small", 7)
    run = Running(config(tmp_path, sim2, moved))
    await run.wait_value("parts", 15.0)
    await run.wait_value("small_parts", 0.0)
    assert await run.stop() == 0
    log = run.log.getvalue()
    assert "event=instrument_state_not_restored instrument=counter-1" in log
    assert "counter small: the register map changed" in log


async def test_sigkill_the_count_never_goes_back_nor_jumps_beyond_what_the_device_counted(modbus_sim, tmp_path):
    rate = 600.0  # parts per minute: 10 a second
    sim = await modbus_sim("counter", sim_options(POINTS[:1]), SYSTEM_CLOCK, rate=rate)
    points_toml = "\n".join(
        ["[[instruments.options.points]]", 'name = ""', "address = 0", 'type = "u32"', 'order = "CDAB"',
         "counter = true", 'unit = "pcs"'])
    instruments = (f'[[instruments]]\nname = "counter-1"\ndriver = "modbus"\nhost = "{sim.endpoint["host"]}"\n'
                   f'tcp_port = {sim.endpoint["tcp_port"]}\npoll_interval = 0.05\ntimeout = 0.5\n{points_toml}')
    characteristics = ('[[characteristics]]\nname = "parts"\ninstrument = "counter-1"\nunit = "pcs"\n'
                       'kind = "count"')
    # no broker answers: everything stays in the spool, where the test reads what would have been published
    conf = write_config(tmp_path / "gw.toml", f"mqtt://127.0.0.1:{free_port()}", tmp_path / "data",
                        instruments, characteristics)
    log = tmp_path / "gateway.log"
    state_file = tmp_path / "data" / "spool.sqlite.state.json"

    def saved_total() -> int | None:
        try:
            counters = json.loads(state_file.read_text())["instruments"]["counter-1"]["counters"]
        except (OSError, ValueError, KeyError):
            return None
        return counters[""]["total"] if counters[""]["raw"] is not None else None

    proc = start_gateway(conf, log)
    try:
        await wait_async(lambda: saved_total() is not None, 20, "a state save with the count", proc, log)
        await asyncio.sleep(1.0)  # the published count moves on past the saved one
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    killed_at = time.time_ns()
    saved = saved_total()
    await asyncio.sleep(1.0)  # the device counts on while the gateway is dead
    proc = start_gateway(conf, log)
    try:
        await wait_async(lambda: "event=instrument_state_restored" in log.read_text(), 20, "the restore",
                         proc, log)
        await asyncio.sleep(1.5)
    finally:
        assert stop_gateway(proc, log) == 0
    readings = spooled_counts(tmp_path / "data", "parts")
    before = [r for r in readings if r.ts_ns < killed_at]
    after = [r for r in readings if r.ts_ns > killed_at]
    assert before and after, log.read_text()[-2000:]
    assert before[-1].value > saved  # the state was older than what had been published
    values = [r.value for r in readings]
    assert values == sorted(values), "the count went backwards"
    for a, b in zip(readings, readings[1:], strict=False):
        # never more than the device made in the time between the two readings (a few parts of slack: a
        # reading is stamped when decoded, a little after the device was read)
        assert b.value - a.value <= rate / 60 * (b.ts_ns - a.ts_ns) / 1e9 + 5, (a, b)
    # across the kill: the parts made while the gateway was dead are counted, not lost
    gap_s = (after[0].ts_ns - before[-1].ts_ns) / 1e9
    assert after[0].value - before[-1].value >= rate / 60 * gap_s - 5
