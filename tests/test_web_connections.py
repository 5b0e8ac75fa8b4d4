"""Many idle or slow clients never starve the gateway: the web page caps its connections and closes those
that send no request, and the service's file descriptors stay bounded whatever the clients do.

The first test drives the page's server in this process, to see each rule (the cap, the 503, the one log
line per burst, the idle and trickling clients closed, a slow answer left alone). The second floods a real
``floorwatch run`` — simulated caliper, real Mosquitto — whose descriptor limit is set below the number of
clients: without the cap it would run out of descriptors (spool writes, broker reconnects would fail); with
it the readings go on, the broker stays connected, and ``/proc/<pid>/fd`` stays near where it was.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from test_web_security import FakeGateway, Recorder

from floorwatch.edge.config import WebConfig
from floorwatch.gateway.web import StatusServer
from floorwatch.gateway.web.server import ACCEPT_BACKLOG
from harness._util import free_port

ROOT = Path(__file__).resolve().parent.parent
REFUSED = b"HTTP/1.1 503 Service Unavailable"


async def _connect(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    conns = []
    for start in range(0, count, 50):  # in batches: the listen queue is short on purpose
        conns += await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                        for _ in range(start, min(count, start + 50))))
    return conns


async def _until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sent before it closed the connection (failing if it never does); a reset
    (the client wrote after the server closed) is closed too."""
    async with asyncio.timeout(timeout):
        try:
            return await reader.read()
        except ConnectionError:
            return b""


def _get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


async def test_cap_idle_timeout_trickle_and_slow_answers_in_process():
    events = Recorder()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3.0)  # longer than idle_timeout: an answer under way is no idle client
        return web.Response(text="slow but sure\n")

    server = StatusServer(FakeGateway(), "127.0.0.1:0", events=events,
                          config=WebConfig(max_connections=8, idle_timeout=1.5), routes=[web.get("/slow", slow)])
    await server.start()
    port = server.port
    try:
        slow_answer = asyncio.create_task(asyncio.to_thread(_get, port, "/slow", 60))
        idle = await _connect(port, 6)
        trickler_r, trickler_w = (await _connect(port, 1))[0]
        async with asyncio.timeout(30):
            while server.connections().open < 8:
                await asyncio.sleep(0.02)
        # the cap is reached: 40 more are answered 503 and closed at once, with one warning for the burst
        over = await _connect(port, 40)
        answers = await asyncio.gather(*(_until_closed(r, 30) for r, _ in over))
        assert all(a.startswith(REFUSED) and a.endswith(b"try again in a moment\n") for a in answers), answers[:3]
        assert server.connections().refused == 40
        assert [(lvl, name) for lvl, name, _ in events.lines] == [("warning", "web_connections_refused")]
        assert "[web] max_connections" in events.lines[0][2]["fix"]
        # a client that sends its request head a byte at a time is closed like an idle one
        trickled = b""
        for byte in b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ":
            try:
                trickler_w.write(bytes([byte]))
                await trickler_w.drain()
            except ConnectionError:
                break
            trickled += bytes([byte])
            await asyncio.sleep(0.2)
        assert await _until_closed(trickler_r, 30) == b""
        assert len(trickled) < 40, "the trickling client was cut before it finished its request head"
        # the idle ones are closed without a word; the slow answer came through all the same
        assert [await _until_closed(r, 30) for r, _ in idle] == [b""] * 6
        assert await slow_answer == (200, b"slow but sure\n")
        async with asyncio.timeout(30):
            while server.connections().open:
                await asyncio.sleep(0.02)
        status, body = await asyncio.to_thread(_get, port, "/api/status")
        assert status == 200
        counts = json.loads(body)["web"]
        assert (counts["open"], counts["max_connections"], counts["refused"]) == (1, 8, 40)
        assert counts["closed_idle"] >= 7  # the six idle and the trickler (and the slow one, if its client lagged)
    finally:
        await server.stop()
        for _, w in [*locals().get("idle", []), *locals().get("over", [])]:
            w.close()
    # the burst's end is logged once, with its count
    ended = [f for _, name, f in events.lines if name == "web_connections_refused_ended"]
    assert len(ended) == 1 and ended[0]["refused"] == 40


async def test_a_long_answer_goes_out_to_a_slow_reader_and_a_reader_that_stopped_is_dropped():
    body = bytes(range(256)) * (12 * 4096)  # 12 MiB: more than the kernel's socket buffers hold

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/octet-stream")

    server = StatusServer(FakeGateway(), "127.0.0.1:0", config=WebConfig(idle_timeout=1.0),
                          routes=[web.get("/big", big)])
    await server.start()
    try:
        # reading steadily for several idle periods: the answer is never cut
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # so the rest waits in the gateway
        sock.connect(("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        while len(received) < len(body):
            chunk = await _until_read(reader, 256 * 1024)
            assert chunk, f"cut after {len(received)} of {len(body)} bytes"
            received += chunk
            await asyncio.sleep(0.1)
        assert received.endswith(body)
        writer.close()
        # a client that asks and then stops reading holds its descriptor no longer than a few idle periods
        stalled_r, stalled_w = await asyncio.open_connection("127.0.0.1", server.port)
        stalled_w.write(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        async with asyncio.timeout(60):
            while server.connections().closed_idle < 1:
                await asyncio.sleep(0.05)
        stalled_w.close()
        async with asyncio.timeout(30):
            while server.connections().open:
                await asyncio.sleep(0.05)
    finally:
        await server.stop()


async def _until_read(reader: asyncio.StreamReader, size: int) -> bytes:
    async with asyncio.timeout(30):
        return await reader.read(size)


# ------------------------------------------------------------------------------ the service, flooded

GATEWAY = """
[gateway]
site = "plant"
line = "l1"
id = "gw-flood"
data_dir = "{data}"

[[instruments]]
name = "caliper-1"
driver = "mitutoyo"
simulate = "normal"

[[characteristics]]
name = "bore_diameter"
instrument = "caliper-1"
unit = "mm"
lsl = 11.95
usl = 12.05

[mqtt]
url = "{url}"

[spool]
flush_interval = 0.2

[web]
bind = "127.0.0.1:{web}"
max_connections = {cap}
idle_timeout = 2.0
"""

# The gateway runs with this few descriptors (systemd's default is 1024): fewer than the clients below.
NOFILE = 512
CLIENTS = 800
CAP = 32
# A limit set from inside, since preexec_fn is unsafe in a process with threads.
LAUNCH = ("import resource, runpy, sys; "
          f"resource.setrlimit(resource.RLIMIT_NOFILE, ({NOFILE}, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
          "sys.argv = ['floorwatch', *sys.argv[1:]]; runpy.run_module('floorwatch.gateway.cli', run_name='__main__')")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _status(port: int) -> dict[str, Any] | None:
    try:
        status, body = await asyncio.to_thread(_get, port, "/api/status", 5)
    except OSError:
        return None
    return json.loads(body) if status == 200 else None


async def _wait_status(port: int, proc: subprocess.Popen, log: Path, ok, what: str,
                       timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the gateway exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        doc = await _status(port)
        if doc is not None and ok(doc):
            return doc
        assert time.monotonic() < deadline, f"{what}; last status: {doc}\n{log.read_text()[-3000:]}"
        await asyncio.sleep(0.3)


async def test_hundreds_of_idle_clients_do_not_starve_the_service(mosquitto, tmp_path):
    assert CLIENTS > NOFILE > CAP + ACCEPT_BACKLOG
    port = free_port()
    config = tmp_path / "gw.toml"
    config.write_text(GATEWAY.format(data=tmp_path / "data", url=mosquitto.url, web=port, cap=CAP))
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "run", "--config", str(config)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        before = await _wait_status(port, proc, log, lambda d: d["gateway"]["readings"] >= 5
                                    and d["broker"]["connected"], "the gateway did not start reading")
        await asyncio.sleep(0.5)
        baseline = _fds(proc.pid)

        # the flood: more idle clients than the gateway has descriptors, while it goes on working
        peak = baseline
        connecting = asyncio.create_task(_connect(port, CLIENTS))
        while not connecting.done():
            peak = max(peak, _fds(proc.pid))
            await asyncio.sleep(0.01)
        clients = connecting.result()
        closed = asyncio.gather(*(_until_closed(r, 120) for r, _ in clients))
        while not closed.done():
            peak = max(peak, _fds(proc.pid))
            await asyncio.sleep(0.05)
        answers = closed.result()

        # every client was either refused at once or, idle, closed by the timeout; none was kept
        refused = sum(a.startswith(REFUSED) for a in answers)
        assert refused + answers.count(b"") == CLIENTS and refused >= CLIENTS - CAP - ACCEPT_BACKLOG
        # the descriptors stayed bounded by the cap (plus what asyncio accepts in one go before refusing)
        assert peak <= baseline + CAP + 2 * ACCEPT_BACKLOG + 16, (baseline, peak)
        # and the service did not notice: readings go on, the broker is connected, the page answers again
        after = await _wait_status(
            port, proc, log, lambda d: d["gateway"]["readings"] > before["gateway"]["readings"] + 5
            and d["broker"]["connected"], "the gateway stopped reading or lost the broker after the flood")
        assert after["web"]["refused"] == refused and after["web"]["max_connections"] == CAP
        assert after["web"]["closed_idle"] >= CLIENTS - refused
        assert after["spool"]["dropped_count"] == 0
        assert _fds(proc.pid) <= baseline + 4
    finally:
        for _, w in clients:
            w.close()
        proc.terminate()
        code = proc.wait(30)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "level=error" not in text and "Too many open files" not in text, text[-3000:]
    assert text.count("event=web_connections_refused ") == 1, text[-3000:]
