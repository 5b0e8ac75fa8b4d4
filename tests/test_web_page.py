"""The gateway's local web page in a real browser (Debian's chromium, headless) and its JSON API.

The page must show live values from a running gateway — simulated instruments, real drivers — after its
JavaScript fetched ``/api/status``; the test reads the DOM chromium rendered, not the HTML we sent.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import urllib.error
import urllib.request

import pytest

from floorwatch.edge.config import parse_config
from floorwatch.gateway.events import EventLog
from floorwatch.gateway.service import Gateway
from harness._util import free_port, require_binary


def _config(tmp_path, port: int):
    return parse_config({
        "gateway": {"site": "plant", "line": "l2", "id": "gw-web", "data_dir": str(tmp_path / "data")},
        "instruments": [{"name": "caliper-1", "driver": "mitutoyo", "simulate": "normal"}],
        "characteristics": [{"name": "bore_diameter", "instrument": "caliper-1", "unit": "mm", "nominal": 12.0,
                             "lsl": 11.95, "usl": 12.05}],
        "spool": {"flush_interval": 0.1},
        "web": {"bind": f"127.0.0.1:{port}"},
    })


@pytest.fixture
async def running_gateway(tmp_path):
    port = free_port()
    gw = Gateway(_config(tmp_path, port), events=EventLog(stream=io.StringIO(), timestamps=False),
                 publish=False, stats_interval=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    for _ in range(200):
        if gw.readings_total >= 5 and gw.web is not None and gw.characteristics["bore_diameter"].snapshot:
            break
        await asyncio.sleep(0.05)
    assert gw.readings_total >= 5, gw.events.stream.getvalue()
    yield gw, f"http://127.0.0.1:{gw.web.port}"
    stop.set()
    assert await task == 0


async def _get(url: str) -> tuple[int, bytes, str]:
    def fetch():
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")

    return await asyncio.to_thread(fetch)


async def test_page_shows_live_values_in_chromium(running_gateway, tmp_path):
    gw, url = running_gateway
    chromium = require_binary("chromium")
    proc = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=4000", "--dump-dom", url + "/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    dom = out.decode()
    assert proc.returncode == 0, err.decode()[-2000:]
    # the script replaced "loading…" with the gateway's figures and filled the tables
    assert "plant / l2 / gw-web" in dom
    meta = re.search(r'<div id="meta">([^<]*)</div>', dom)
    assert meta and meta.group(1).startswith("version "), dom[:3000]
    rows = re.findall(r"<tr><td>bore_diameter</td><td[^>]*>([^<]+)</td><td>mm</td>", dom)
    assert rows, dom[-3000:]
    assert 11.9 < float(rows[0]) < 12.1
    assert re.search(r"<td>caliper-1</td><td>mitutoyo \(simulated: normal\)</td><td class=\"ok\">yes</td>", dom)
    assert re.search(r"readings · last seq \d+", meta.group(1))
    assert "(spool-only)" in dom


async def test_status_api_and_errors(running_gateway):
    gw, url = running_gateway
    status, body, ctype = await _get(url + "/api/status")
    assert status == 200 and ctype == "application/json"
    doc = json.loads(body)
    assert doc["gateway"]["id"] == "gw-web"
    inst = doc["instruments"][0]
    assert inst["name"] == "caliper-1" and inst["connected"] is True and inst["frames_ok"] >= 5
    assert inst["last_reading"]["unit"] == "mm"
    char = doc["characteristics"][0]
    assert char["name"] == "bore_diameter" and char["n"] >= 1 and 11.9 < char["mean"] < 12.1
    assert (await _get(url + "/healthz"))[:2] == (200, b"ok\n")
    status, body, _ = await _get(url + "/nope")
    assert status == 404 and b"/api/status" in body
    req = urllib.request.Request(url + "/api/status", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        await asyncio.to_thread(urllib.request.urlopen, req, None, 5)
    assert exc.value.code in (400, 405)
    # garbage on the socket is answered (400) and does not disturb the gateway
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.web.port)
    writer.write(b"\x00\xff garbage\r\n\r\n")
    await writer.drain()
    assert (await reader.read(100)).startswith(b"HTTP/1.1 400")
    writer.close()
    assert (await _get(url + "/api/status"))[0] == 200
