"""Who may reach the web page under which name, who may see it, who may change things through it.

Three checks, as aiohttp middleware, in this order (``/healthz`` passes all three: it tells nothing):

1. **Host** (DNS-rebinding protection). A web site in a technician's browser can point a name of its own at
   the gateway's address and then read the page as if it were its own. The browser still sends that name in
   ``Host``, so the page answers only to IP addresses, ``localhost``, this machine's name (and
   ``<name>.local``) and the names in ``[web] allowed_hosts``; any other gets ``421`` naming that key.
2. **Viewing** (``GET``/``HEAD``) needs the view token when one is configured: ``Authorization: Bearer …``,
   or ``?token=…`` once in the browser, which sets an HttpOnly, SameSite=Strict cookie (so the page's own
   requests carry it) and sends the browser on to the address without the token.
3. **Changing** (every other method) needs the action token, in the ``Authorization`` header only — a cookie
   would let another site's form act with the technician's rights. With no action token configured, every
   change is refused (``403``, naming the key).

Tokens are compared with :func:`hmac.compare_digest`. A token that is configured but cannot be read locks
what it protects (``503`` with the reason) instead of leaving it open.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from floorwatch.edge.config import ConfigError, WebConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_PATHS = frozenset({"/healthz"})
PAGES = frozenset({"/", "/index.html"})  # where ?token= sets the cookie and redirects
COOKIE = "floorwatch_view"
READ_METHODS = frozenset({"GET", "HEAD"})


def host_names(allowed: Iterable[str], hostname: str | None = None) -> frozenset[str]:
    """The names the page answers to besides IP addresses: localhost, this machine's, the allowed ones.

    >>> sorted(host_names(["gw-3.plant.lan"], hostname="Pi-Line3.plant.lan"))
    ['gw-3.plant.lan', 'localhost', 'pi-line3', 'pi-line3.local', 'pi-line3.plant.lan']
    """
    own = (hostname if hostname is not None else socket.gethostname()).lower().rstrip(".")
    short = own.split(".", 1)[0]
    names = {"localhost", *allowed}
    if own:
        names |= {own, short, f"{short}.local"}
    return frozenset(names)


def host_allowed(host_header: str | None, names: frozenset[str]) -> bool:
    """Whether a ``Host`` header names this gateway (an IP literal, or one of ``names``; any port).

    >>> names = frozenset({"localhost", "pi-line3", "pi-line3.local"})
    >>> [host_allowed(h, names) for h in ("192.168.1.50:8080", "[fe80::1]:8080", "LOCALHOST:8080",
    ...                                   "pi-line3.local.", "evil.example:8080", "[nonsense]", None)]
    [True, True, True, True, False, False, True]
    """
    if host_header is None:
        return True  # no browser omits Host, so no rebinding attack does; curl --http1.0 may
    host = host_header.strip().lower()
    if host.startswith("["):
        literal, sep, _ = host[1:].partition("]")
        return bool(sep) and _is_ip(literal)
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        host = name
    host = host.rstrip(".")
    return _is_ip(host) or host in names


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@dataclass(frozen=True)
class AccessPolicy:
    """The names, tokens and reasons for refusal that the middleware applies; built once at start."""

    hosts: frozenset[str]
    view_token: str | None = None
    action_token: str | None = None
    view_error: str = ""  # a configured view token that could not be read: viewing is locked
    action_error: str = ""
    cookie_value: str = field(init=False, default="")

    def __post_init__(self) -> None:
        # The cookie carries a value derived from the token, not the token itself.
        if self.view_token is not None:
            derived = hmac.new(self.view_token.encode(), b"floorwatch web view cookie", hashlib.sha256).hexdigest()
            object.__setattr__(self, "cookie_value", derived)

    @classmethod
    def from_config(cls, config: WebConfig, hostname: str | None = None) -> AccessPolicy:
        """Read the tokens; a token that cannot be read becomes an error that locks what it protects."""
        tokens: dict[str, str | None] = {}
        errors: dict[str, str] = {}
        for kind, read in (("view", config.view_token), ("action", config.action_token)):
            try:
                tokens[kind] = read()
            except ConfigError as exc:
                tokens[kind] = None
                errors[kind] = str(exc)
        if tokens["view"] is not None and tokens["view"] == tokens["action"]:
            tokens["action"] = None
            errors["action"] = ("web.action_token_file/env: the action token equals the view token, which "
                                "travels in links and cookies; give it a value of its own")
        return cls(host_names(config.allowed_hosts, hostname), tokens["view"], tokens["action"],
                   errors.get("view", ""), errors.get("action", ""))

    @property
    def errors(self) -> list[str]:
        return [e for e in (self.view_error, self.action_error) if e]

    # -- the middleware, outermost first

    @web.middleware
    async def check_host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or host_allowed(request.headers.get("Host"), self.hosts):
            return await handler(request)
        # The names it does answer to are not listed: a rebinding page could read them.
        return web.Response(status=421, text=(
            f"this gateway does not answer to the name {request.host!r}: it answers to its IP addresses, "
            "localhost, its own host name (and <name>.local) and the names in [web] allowed_hosts. To reach "
            "it under this name, add the name to [web] allowed_hosts in the gateway's configuration.\n"))

    @web.middleware
    async def check_tokens(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.match_info.http_exception is not None:
            return await handler(request)  # open, or not there at all (404/405 need no token)
        if request.method in READ_METHODS:
            return await self._view(request, handler)
        return await self._change(request, handler)

    async def _view(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.view_error:
            return _locked(self.view_error)
        if self.view_token is None:
            return await handler(request)
        bearer = _bearer(request)
        if bearer is not None:
            if _same(bearer, self.view_token) or self.action_token is not None and _same(bearer, self.action_token):
                return await handler(request)
            return _unauthorized("the token in the Authorization header is not the view token")
        query = request.query.get("token")
        if query is not None:
            if not _same(query, self.view_token):
                return _unauthorized("the token in the address is not the view token")
            if request.path not in PAGES:
                return await handler(request)
            # Once in the browser: remember it in a cookie the page's scripts cannot read, and drop it from
            # the address bar (and from the history, and from any Referer).
            target = request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"])
            response = web.HTTPSeeOther(str(target))
            response.set_cookie(COOKIE, self.cookie_value, httponly=True, samesite="Strict", path="/")
            raise response
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and _same(cookie, self.cookie_value):
            return await handler(request)
        return _unauthorized("this page needs the view token" if cookie is None else
                             "the view token changed since this browser was given it")

    async def _change(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.action_error:
            return _locked(self.action_error)
        if self.action_token is None:
            return web.Response(status=403, text=(
                "changing the gateway through its web page is off: no action token is configured. Set "
                "[web] action_token_file (or action_token_env) in the gateway's configuration.\n"))
        bearer = _bearer(request)
        if bearer is None:
            return _unauthorized("changes need the action token in an 'Authorization: Bearer …' header",
                                 view=False)
        if not _same(bearer, self.action_token):
            return _unauthorized("the token in the Authorization header is not the action token", view=False)
        return await handler(request)


def _unauthorized(why: str, *, view: bool = True) -> web.Response:
    how = ("open the page once as /?token=THE-VIEW-TOKEN, or send 'Authorization: Bearer THE-VIEW-TOKEN'; the "
           "token is in the file named by [web] view_token_file (or the variable named by view_token_env)"
           if view else
           "send 'Authorization: Bearer THE-ACTION-TOKEN'; the token is in the file named by [web] "
           "action_token_file (or the variable named by action_token_env)")
    return web.Response(status=401, text=f"{why}: {how}.\n",
                        headers={"WWW-Authenticate": 'Bearer realm="floorwatch"'})


def _locked(reason: str) -> web.Response:
    return web.Response(status=503, text=f"locked until the gateway can read its token: {reason}\n")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer: never cached (live values, and tokens), never framed by another site (clickjacking
    of the actions to come), never sniffed into another type, no address in a Referer."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    response.headers["Referrer-Policy"] = "no-referrer"
