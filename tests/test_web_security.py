"""The web page's checks on a real server and real sockets: the Host header (DNS-rebinding protection), the
view token (header, address, cookie) and the action token (with a state-changing route the test registers).

The gateway is replaced by anything with ``status()``: what is tested here is who gets an answer, not what
the answer says (tests/test_web_page.py does that with a real gateway and a real browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from floorwatch.edge.config import WebConfig
from floorwatch.gateway.web import StatusServer

VIEW = "view-token-0123456789abcdef"
ACTION = "action-token-0123456789abcdef"


class FakeGateway:
    def status(self) -> dict[str, Any]:
        return {"gateway": {"id": "gw-sec"}}


@dataclass
class Recorder:
    """The gateway's event log, as far as the page uses it."""

    lines: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def info(self, name: str, **fields: Any) -> None:
        self.lines.append(("info", name, fields))

    def warning(self, name: str, **fields: Any) -> None:
        self.lines.append(("warning", name, fields))

    def error(self, name: str, **fields: Any) -> None:
        self.lines.append(("error", name, fields))


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str


@dataclass
class Page:
    server: StatusServer
    events: Recorder
    actions: list[str]

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes | None = None) -> Reply:
        def go() -> Reply:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                return Reply(resp.status, resp.headers, resp.read().decode())
            finally:
                conn.close()

        return await asyncio.to_thread(go)


@contextlib.asynccontextmanager
async def serve(**settings: Any) -> AsyncIterator[Page]:
    events = Recorder()
    actions: list[str] = []

    async def act(request: web.Request) -> web.Response:
        actions.append(await request.text())
        return web.Response(text="done\n")

    server = StatusServer(FakeGateway(), "127.0.0.1:0", events=events, config=WebConfig(**settings),
                          routes=[web.post("/api/test-action", act)])
    await server.start()
    try:
        yield Page(server, events, actions)
    finally:
        await server.stop()



def _token_file(tmp_path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    return str(path)


async def test_host_header_is_checked_against_ip_literals_localhost_own_name_and_allowed_hosts():
    own = socket.gethostname().lower()
    short = own.split(".")[0]
    async with serve(allowed_hosts=["Floor-3.Plant.LAN"]) as page:
        port = page.server.port
        for host in (f"127.0.0.1:{port}", f"192.168.7.20:{port}", f"[::1]:{port}", f"localhost:{port}",
                     f"{own}:{port}", f"{short}.local:{port}", f"floor-3.plant.lan:{port}", "floor-3.plant.lan"):
            reply = await page.request("GET", "/api/status", {"Host": host})
            assert reply.status == 200, (host, reply.body)
        for host in (f"evil.example:{port}", f"floor-3.plant.lan.evil.example:{port}", f"{short}.evil:{port}"):
            reply = await page.request("GET", "/api/status", {"Host": host})
            assert reply.status == 421, (host, reply.body)
            assert "[web] allowed_hosts" in reply.body and host.split(":")[0] in reply.body
            assert json.loads((await page.request("GET", "/api/status")).body)["gateway"]["id"] == "gw-sec"
        # the page itself is refused too, and so are changes; the health probe is not (it tells nothing)
        assert (await page.request("GET", "/", {"Host": "evil.example"})).status == 421
        assert (await page.request("POST", "/api/test-action", {"Host": "evil.example"}, b"x")).status == 421
        assert (await page.request("GET", "/healthz", {"Host": "evil.example"})).body == "ok\n"
        assert page.actions == []


async def test_without_tokens_the_page_is_open_and_changes_are_off():
    async with serve() as page:
        assert (await page.request("GET", "/")).status == 200
        assert (await page.request("GET", "/api/status")).status == 200
        reply = await page.request("POST", "/api/test-action", {"Authorization": f"Bearer {ACTION}"}, b"x")
        assert reply.status == 403
        assert "no action token is configured" in reply.body and "[web] action_token_file" in reply.body
        assert page.actions == []


async def test_view_token_by_header_by_address_and_by_cookie(tmp_path):
    async with serve(view_token_file=_token_file(tmp_path, "view", VIEW)) as page:
        for path in ("/", "/api/status"):
            reply = await page.request("GET", path)
            assert reply.status == 401 and "view_token_file" in reply.body and "?token=" in reply.body
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await page.request("GET", "/api/status", {"Authorization": f"Bearer {VIEW}"})).status == 200
        wrong = await page.request("GET", "/api/status", {"Authorization": f"Bearer {VIEW}x"})
        assert wrong.status == 401 and "not the view token" in wrong.body
        assert (await page.request("GET", f"/api/status?token={VIEW}")).status == 200  # scripts
        assert (await page.request("GET", "/api/status?token=nope")).status == 401
        # once in the browser: the address with the token sets the cookie and sends it on without the token
        first = await page.request("GET", f"/?token={VIEW}")
        assert first.status == 303 and first.headers["Location"] == "/"
        cookie = first.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert VIEW not in cookie  # the cookie holds a value derived from the token, not the token
        value = cookie.split(";")[0]
        for path in ("/", "/api/status"):
            assert (await page.request("GET", path, {"Cookie": value})).status == 200
        stale = await page.request("GET", "/api/status", {"Cookie": value[:-4] + "0000"})
        assert stale.status == 401 and "changed" in stale.body
        # the health probe stays open; a wrong address needs no token to be told so
        assert (await page.request("GET", "/healthz")).body == "ok\n"
        assert (await page.request("GET", "/nope")).status == 404
        # security headers on every answer
        assert all(first.headers[h] for h in ("X-Frame-Options", "Referrer-Policy", "Cache-Control"))


async def test_action_token_missing_wrong_right_and_never_from_a_cookie(tmp_path, monkeypatch):
    monkeypatch.setenv("FW_TEST_ACTION_TOKEN", ACTION)
    async with serve(view_token_file=_token_file(tmp_path, "view", VIEW),
                     action_token_env="FW_TEST_ACTION_TOKEN") as page:
        missing = await page.request("POST", "/api/test-action", {}, b"x")
        assert missing.status == 401 and "action_token_file" in missing.body
        wrong = await page.request("POST", "/api/test-action", {"Authorization": f"Bearer {VIEW}"}, b"x")
        assert wrong.status == 401 and "not the action token" in wrong.body
        cookie = (await page.request("GET", f"/?token={VIEW}")).headers["Set-Cookie"].split(";")[0]
        from_cookie = await page.request("POST", "/api/test-action", {"Cookie": cookie}, b"x")
        assert from_cookie.status == 401
        assert page.actions == []
        right = await page.request("POST", "/api/test-action", {"Authorization": f"Bearer {ACTION}"}, b"go")
        assert (right.status, right.body) == (200, "done\n")
        assert page.actions == ["go"]
        # the action token lets its holder see the page too; a route that does not exist needs no token
        assert (await page.request("GET", "/api/status", {"Authorization": f"Bearer {ACTION}"})).status == 200
        assert (await page.request("POST", "/api/status", {}, b"x")).status == 405
        assert (await page.request("DELETE", "/elsewhere", {}, b"")).status == 404


async def test_unreadable_or_reused_tokens_lock_what_they_protect(tmp_path, monkeypatch):
    async with serve(view_token_file=str(tmp_path / "missing")) as page:
        reply = await page.request("GET", "/api/status", {"Authorization": f"Bearer {VIEW}"})
        assert reply.status == 503 and "web.view_token_file" in reply.body and "cannot read" in reply.body
        assert (await page.request("GET", "/healthz")).status == 200
        assert [(lvl, name) for lvl, name, _ in page.events.lines] == [("error", "web_token_unreadable")]
    monkeypatch.setenv("FW_TEST_WEAK", "secret")
    async with serve(view_token_env="FW_TEST_WEAK") as page:
        reply = await page.request("GET", "/")
        assert reply.status == 503 and "16 to 256" in reply.body and "openssl rand -hex 16" in reply.body
    monkeypatch.setenv("FW_TEST_SAME", VIEW)
    async with serve(view_token_file=_token_file(tmp_path, "view", VIEW), action_token_env="FW_TEST_SAME") as page:
        assert (await page.request("GET", "/api/status", {"Authorization": f"Bearer {VIEW}"})).status == 200
        reply = await page.request("POST", "/api/test-action", {"Authorization": f"Bearer {VIEW}"}, b"x")
        assert reply.status == 503 and "equals the view token" in reply.body
        assert page.actions == []


async def test_floorwatch_status_sends_the_view_token_and_says_so_when_it_is_missing(tmp_path, capsys):
    """`floorwatch status` against a page that needs a view token: refused with the page's own reason and
    the way to give the token, then let through with --token-file."""
    from floorwatch.gateway.cli import main

    token_file = _token_file(tmp_path, "view", VIEW)
    async with serve(view_token_file=token_file) as page:
        url = f"http://127.0.0.1:{page.server.port}"
        assert await asyncio.to_thread(main, ["status", "--url", url, "--json"]) == 1
        err = capsys.readouterr().err
        assert "refused /api/status (401)" in err and "--token-file" in err
        assert await asyncio.to_thread(main, ["status", "--url", url, "--token-file", token_file, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["gateway"] == {"id": "gw-sec"}
