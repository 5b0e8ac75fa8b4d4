"""``floorwatch decode --driver NAME FRAME…``: what a driver makes of captured frames.

For a technician holding a frame from a terminal program or a capture: each frame is decoded by the
driver's own parser (the code path the running gateway uses) and printed as one JSON object per line —
``{"result": "decoded", "value", "unit", "status", "channel", "detail"}``, ``{"result": "rejected",
"reason"}`` or ``{"result": "ignored", "what"}``, each with the frame it came from.

Frames are text with ``\\r``, ``\\n``, ``\\t``, ``\\e`` and ``\\xHH`` escapes, or hex with ``--hex``. Without
frames, the bytes on standard input are cut into frames at the driver's terminator (so a raw capture can
be piped in). Driver options are given as ``--option key=value`` (TOML values; plain words are strings)::

    floorwatch decode --driver mtsics 'S S     100.00 g\\r\\n' 'S +\\r\\n'
    floorwatch decode --driver xk3190 --hex 022B30303132333432314403
    floorwatch decode --driver regex --option 'pattern=W:(?P<value>\\d+\\.\\d+)' 'W:12.5\\r\\n'
    cat capture.bin | floorwatch decode --driver aandd

Exit status: 0 when every frame decoded or was ignored, 1 when any was rejected, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from typing import Any

from pydantic import ValidationError

from floorwatch.drivers import registry
from floorwatch.drivers.base import Parser, ParseResult, Rejected
from floorwatch.drivers.framing import Framer, unescape
from floorwatch.edge.model import Measurement


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--driver", required=True, metavar="NAME",
                        help=f"driver name: {', '.join(n for n in registry.names() if n != 'modbus')}")
    parser.add_argument("--hex", action="store_true", help="frames are hex bytes (spaces and colons allowed)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a driver option, as in the [instruments.options] table (repeatable)")
    parser.add_argument("frames", nargs="*", metavar="FRAME",
                        help="frames to decode; none: read raw bytes from standard input")


class UsageError(ValueError):
    """Bad command-line input; the message says what and how to fix it."""


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with a TOML value; a value that is not TOML is taken as a string.

    >>> parse_option("threshold=5.0"), parse_option("mode=poll"), parse_option('status_map={OK="ok"}')
    (('threshold', 5.0), ('mode', 'poll'), ('status_map', {'OK': 'ok'}))
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--option {text!r}: write KEY=VALUE, e.g. --option mode=poll")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value


def make_parser(driver: str, options: dict[str, Any]) -> tuple[Parser, Any, Any]:
    """The parser of ``driver`` with ``options`` validated as in a configuration file."""
    try:
        spec = registry.get(driver)
    except registry.UnknownDriver as exc:
        raise UsageError(str(exc)) from None
    if spec.parser is None:
        raise UsageError(f"driver {driver!r} does not decode frames (Modbus reads registers); use 'floorwatch probe'")
    if spec.options is None:
        if options:
            raise UsageError(f"driver {driver!r} takes no options")
        opts = None
    else:
        try:
            opts = spec.options.model_validate(options)
        except ValidationError as exc:
            lines = [f"option {'.'.join(str(p) for p in e['loc']) or '(all)'}: "
                     + ("required (see docs/drivers/" + driver + ".md)" if e["type"] == "missing"
                        else e["msg"].removeprefix("Value error, "))
                     for e in exc.errors()]
            raise UsageError("; ".join(lines)) from None
    try:
        return spec.parser(opts), spec, opts
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def result_dict(frame: bytes, result: ParseResult) -> dict[str, Any]:
    """The JSON object printed for one frame."""
    out: dict[str, Any] = {"frame": frame.decode("latin-1")}
    if isinstance(result, Measurement):
        out.update(result="decoded", value=result.value if math.isfinite(result.value) else None,
                   unit=result.unit, status=result.status.value, channel=result.channel, detail=result.detail)
    elif isinstance(result, Rejected):
        out.update(result="rejected", reason=result.reason)
    else:
        out.update(result="ignored", what=result.what)
    return out


def decode_frames(driver: str, frames: list[bytes], options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Decode ``frames`` with ``driver``: the code path of the command and of the golden-frame tests."""
    parse, _, _ = make_parser(driver, options or {})
    return [result_dict(f, parse(f)) for f in frames]


def frames_from_args(texts: list[str], hex_mode: bool) -> list[bytes]:
    out = []
    for n, text in enumerate(texts, 1):
        try:
            if hex_mode:
                out.append(bytes.fromhex(text.replace(":", " ")))
            else:
                out.append(unescape(text))
        except ValueError as exc:
            kind = "hex" if hex_mode else "text"
            raise UsageError(f"frame {n} ({text!r}) is not valid {kind}: {exc}") from None
    return out


def run(args: argparse.Namespace) -> int:
    try:
        options = dict(parse_option(o) for o in args.option)
        parse, spec, opts = make_parser(args.driver, options)
        # the regex driver's line end is an option; the others' is fixed by the protocol
        terminator = unescape(opts.terminator) if isinstance(getattr(opts, "terminator", None), str) else spec.terminator
        tail = b""
        if args.frames:
            frames = frames_from_args(args.frames, args.hex)
        else:
            if sys.stdin.isatty():
                print("reading frames from standard input (end with Ctrl-D); or give them as arguments",
                      file=sys.stderr)
            start = getattr(spec.driver, "start", None)
            framer = Framer(terminator, start=start, max_len=4096)
            frames = framer.feed(sys.stdin.buffer.read())
            tail = framer.pending()
    except UsageError as exc:
        print(f"floorwatch decode: {exc}", file=sys.stderr)
        return 2
    rejected = 0
    for frame in frames:
        if not args.frames and not frame.endswith(terminator):
            # what the running driver does too: only whole frames are parsed
            result: Any = Rejected("bytes without a frame end (line noise, or the capture began mid-frame)")
        else:
            result = parse(frame)
        rejected += isinstance(result, Rejected)
        print(json.dumps(result_dict(frame, result), ensure_ascii=True))
    if not args.frames and tail:
        rejected += 1
        print(json.dumps(result_dict(tail, Rejected("incomplete frame: the input ends before the frame end"))))
    return 1 if rejected else 0

