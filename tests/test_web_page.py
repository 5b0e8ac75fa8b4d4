"""The gateway's local web page in a real browser (Debian's chromium, headless) and its JSON API.

The page must show live values from a running gateway — simulated instruments, real drivers — after its
JavaScript fetched ``/api/status``; the test reads the DOM chromium rendered, not the HTML we sent. With a
view token, the browser's way in (``?token=`` once, then the cookie for the page's own requests) is tested
the same way, and so is the Host check, with chromium resolving foreign names to the gateway as a
DNS-rebinding attacker's would.
"""

from __future__ import annotations

import asyncio
import contextlib
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


def _config(tmp_path, port: int, **web):
    return parse_config({
        "gateway": {"site": "plant", "line": "l2", "id": "gw-web", "data_dir": str(tmp_path / "data")},
        "instruments": [{"name": "caliper-1", "driver": "mitutoyo", "simulate": "normal"}],
        "characteristics": [{"name": "bore_diameter", "instrument": "caliper-1", "unit": "mm", "nominal": 12.0,
                             "lsl": 11.95, "usl": 12.05}],
        "spool": {"flush_interval": 0.1},
        "web": {"bind": f"127.0.0.1:{port}", **web},
    })


@contextlib.asynccontextmanager
async def gateway_with_page(tmp_path, **web):
    """A running gateway (simulated caliper, no broker) with ``[web]`` set as given."""
    port = free_port()
    gw = Gateway(_config(tmp_path, port, **web), events=EventLog(stream=io.StringIO(), timestamps=False),
                 publish=False, stats_interval=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    for _ in range(200):
        if gw.readings_total >= 5 and gw.web is not None and gw.characteristics["bore_diameter"].snapshot:
            break
        await asyncio.sleep(0.05)
    assert gw.readings_total >= 5, gw.events.stream.getvalue()
    try:
        yield gw, f"http://127.0.0.1:{gw.web.port}"
    finally:
        stop.set()
        assert await task == 0


@pytest.fixture
async def running_gateway(tmp_path):
    async with gateway_with_page(tmp_path) as running:
        yield running


async def chromium_dom(url: str, tmp_path, *flags: str) -> str:
    """The DOM headless chromium rendered for ``url`` after four seconds of (virtual) time."""
    chromium = require_binary("chromium")
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    proc = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", "--virtual-time-budget=4000", *flags, "--dump-dom", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


def _shows_live_values(dom: str) -> bool:
    rows = re.findall(r"<tr><td>bore_diameter</td><td[^>]*>([^<]+)</td><td>mm</td>", dom)
    return "plant / l2 / gw-web" in dom and bool(rows) and 11.9 < float(rows[0]) < 12.1


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
    assert re.search(r"<td>page connections</td><td[^>]*>\d+ of 64</td>", dom), dom[-2000:]


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
    assert re.match(rb"HTTP/1\.[01] 400 ", await reader.read(100))  # aiohttp answers what it cannot parse as 1.0
    writer.close()
    assert (await _get(url + "/api/status"))[0] == 200


async def test_view_token_in_chromium_address_once_then_the_cookie(tmp_path):
    token = "view-0123456789abcdef0123"
    (tmp_path / "view-token").write_text(token + "\n")
    async with gateway_with_page(tmp_path, view_token_file=str(tmp_path / "view-token")) as (gw, url):
        # without the token the browser is told what to do, and sees no values
        dom = await chromium_dom(url + "/", tmp_path)
        assert "needs the view token" in dom and "?token=" in dom and "view_token_file" in dom
        assert not _shows_live_values(dom)
        # with it once in the address: the cookie carries the page's own fetches of /api/status
        dom = await chromium_dom(f"{url}/?token={token}", tmp_path)
        assert _shows_live_values(dom), dom[-3000:]
        assert '<div id="meta">gateway not reachable' not in dom
        # a wrong token is refused in words
        dom = await chromium_dom(f"{url}/?token={token[:-1]}x", tmp_path)
        assert "not the view token" in dom and not _shows_live_values(dom)


async def test_host_check_in_chromium_refuses_a_rebound_name_and_serves_an_allowed_one(tmp_path):
    async with gateway_with_page(tmp_path, allowed_hosts=["floor-3.example"]) as (gw, url):
        port = gw.web.port
        rules = "--host-resolver-rules=MAP attacker.example 127.0.0.1, MAP floor-3.example 127.0.0.1"
        dom = await chromium_dom(f"http://attacker.example:{port}/", tmp_path, rules)
        assert "does not answer to the name" in dom and "[web] allowed_hosts" in dom
        assert not _shows_live_values(dom)
        dom = await chromium_dom(f"http://floor-3.example:{port}/", tmp_path, rules)
        assert _shows_live_values(dom), dom[-3000:]
        # and by its address, as always
        assert _shows_live_values(await chromium_dom(url + "/", tmp_path))
