"""``floorwatch status``: a running gateway's state, from another terminal.

Reads the gateway's local web API (``/api/status`` on ``[web] bind``): give ``--url``, or ``--config`` to
take the address from the configuration file (default ``/etc/floorwatch/gateway.toml``). When the page needs
a view token (``[web] view_token_file``/``view_token_env``), ``--config`` reads it from there and ``--url``
takes it from ``--token-file``. ``--json`` prints the raw document for scripts. Exit status 0 when the gateway answered, 1 when it did not (with the reason
and what to check).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from floorwatch.edge.config import ConfigError, load_config, read_secret

DEFAULT_CONFIG = Path("/etc/floorwatch/gateway.toml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", "-c", type=Path, help="gateway configuration: the address is its [web] bind")
    where.add_argument("--url", help="address of the gateway's web page, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token-file", type=Path,
                        help="file holding the page's view token (with --url; --config reads [web] itself)")
    parser.add_argument("--json", action="store_true", help="print the status document as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the gateway")


def _target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The page's base URL and its view token (None when it needs none)."""
    if args.url:
        url = args.url.rstrip("/")
        return (url if "://" in url else f"http://{url}"), read_secret("--token", args.token_file, None,
                                                                         "the page's view token")
    path = args.config or DEFAULT_CONFIG
    config = load_config(path)
    if not config.web.enabled:
        raise ConfigError(f"{path}: [web] enabled = false, so the gateway serves no status; enable it")
    host, _, port = config.web.bind.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}", config.web.view_token()


def fetch(url: str, timeout: float = 5.0, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{url}/api/status", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())


def _f(v: Any, digits: int = 6) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.{digits}g}"
    return str(v)


def _size(n: Any) -> str:
    """Bytes for people.

    >>> _size(24576), _size(536870912), _size(None)
    ('24 KiB', '512 MiB', '–')
    """
    if not isinstance(n, int | float):
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 10 else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} GiB"


def _ago(ts_ns: int | None) -> str:
    if not ts_ns:
        return "never"
    s = max(0.0, time.time() - ts_ns / 1e9)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    for r in rows:
        out.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return out


def render(s: dict[str, Any]) -> str:
    """The status document as text for a terminal."""
    g = s["gateway"]
    lines = [f"gateway {g['site']}/{g['line']}/{g['id']}  version {g['version']}  up {g['uptime_s']:.0f} s  "
             f"readings {g['readings']}  last seq {_f(g.get('last_seq'))}", "", "instruments:"]
    rows = []
    for i in s["instruments"]:
        last = i.get("last_reading")
        reading = "none"
        if last:
            channel = f" [{last['channel']}]" if last.get("channel") else ""
            reading = f"{_f(last['value'])} {last['unit']} {last['status']}{channel} ({_ago(last['ts_ns'])})"
        rows.append([i["name"], i["driver"] + (f" (sim {i['simulate']})" if i.get("simulate") else ""),
                     "yes" if i["connected"] else "NO", str(i["frames_ok"]), str(i["frames_rejected"]), reading,
                     i.get("last_error") or ""])
    lines += _table(["name", "driver", "connected", "frames ok", "rejected", "last reading", "last error"], rows)
    for i in s["instruments"]:
        extra = i.get("extra") or {}
        notes = [f"{label}: {extra[key]}" for key, label in
                 (("settings", "port settings"), ("last_notice", "instrument says"), ("hint", "hint")) if extra.get(key)]
        if notes:
            lines.append(f"  {i['name']}: " + "; ".join(notes))
    lines += ["", "characteristics:"]
    rows = []
    for c in s["characteristics"]:
        rows.append([c["name"], f"{_f(c.get('last_value'))} {c['unit']}", _f(c.get("n")), _f(c.get("mean")),
                     _f(c.get("cpk"), 3), ", ".join(c["active_alerts"]) or "none"])
    lines += _table(["name", "last value", "n", "mean", "Cpk", "active alerts"], rows)
    if s["alerts"]:
        lines += ["", "active alerts:"]
        lines += _table(["subject", "kind", "severity", "message"],
                        [[a["subject"], a["kind"], a["severity"], a.get("message") or ""] for a in s["alerts"]])
    sp, b = s["spool"], s["broker"]
    lines += ["", f"spool: backlog {_f(sp.get('backlog'))} records, {_size(sp.get('bytes'))} of "
              f"{_size(sp.get('max_bytes'))} used, dropped {_f(sp.get('dropped_count', 0))} readings "
              f"({sp.get('path')})"]
    if b.get("enabled"):
        state = "connected" if b.get("connected") else "NOT connected"
        lines.append(f"broker: {b['url']} {state}" + (f" — {b['last_error']}" if b.get("last_error") else ""))
    else:
        lines.append(f"broker: none — {b.get('last_error') or 'spool-only'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        url, token = _target(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 1
    try:
        data = fetch(url, args.timeout, token)
    except urllib.error.HTTPError as exc:  # the gateway answered, and said no: its answer names the fix
        said = exc.read().decode(errors="replace").strip()
        hint = (" Give the view token: --config reads [web] view_token_file/view_token_env, --url needs "
                "--token-file." if exc.code == 401 else "")
        print(f"the gateway at {url} refused /api/status ({exc.code}): {said}{hint}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"no gateway answered at {url}/api/status: {reason}. Is it running (systemctl status floorwatch)? "
              "Is [web] enabled, and is this the address in its [web] bind?", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2) if args.json else render(data))
    return 0
