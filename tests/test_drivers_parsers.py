"""Every serial parser, fuzzed: arbitrary bytes never raise, valid frames round-trip, and a valid frame with
junk inside it never yields a number. Plus the hot-path budget (tens of thousands of frames a second)."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import registry
from drivers.base import Decoded, Ignored, Rejected
from drivers.xk3190 import encode as xk_encode
from edge.model import Status

SERIAL = [n for n in registry.names() if registry.get(n).transport == "serial"]
REGEX_OPTIONS = {"pattern": r"W:(?P<value>[+-]?\d+\.\d+)(?P<unit>g|kg)(?: (?P<status>OK|MOV))?",
                 "status_map": {"OK": "ok", "MOV": "unstable"}}


def parser_of(name: str):
    spec = registry.get(name)
    raw = REGEX_OPTIONS if name == "regex" else {}
    return spec.parser(spec.options.model_validate(raw) if spec.options else None)


def scaled(decimals: int, digits: int):
    """Exact decimal values with ``digits`` digits in total, ``decimals`` of them after the point."""
    top = 10**digits - 1
    return st.integers(-top, top).map(lambda i: round(i / 10**decimals, decimals))


def unsigned(decimals: int, digits: int):
    return st.integers(0, 10**digits - 1).map(lambda i: round(i / 10**decimals, decimals))


def _sart(v: float, ident: str) -> bytes:
    text = f"{abs(v):8.2f}"
    return f"{ident}{'-' if v < 0 else '+'} {text} g  \r\n".encode()


# name -> strategy of (frame, expected value, expected unit)
VALID = {
    "mitutoyo": st.one_of(
        scaled(3, 7).map(lambda v: (f"01A{v:+09.3f}\r".encode(), v, "mm")),
        scaled(4, 8).map(lambda v: (f"01A{v:+010.4f}\r".encode(), v, "mm")),  # nine characters, seen in the wild
    ),
    "uwave": st.one_of(
        scaled(3, 8).map(lambda v: (f"DT10001{v:+010.3f}M\r".encode(), v, "mm")),
        scaled(5, 7).map(lambda v: (f"DT10203{v:+09.5f}I\r".encode(), v, "inch")),
    ),
    "sylvac": st.one_of(
        scaled(3, 6).map(lambda v: (f"{v:+08.3f}\r".encode(), v, "mm")),
        unsigned(3, 6).map(lambda v: (f" {v:07.3f}\r".encode(), v, "mm")),
        st.tuples(scaled(3, 6), st.sampled_from("<=>")).map(lambda t: (f"{t[0]:+08.3f}{t[1]}\r".encode(), t[0], "mm")),
    ),
    "mtsics": st.tuples(scaled(2, 7), st.sampled_from(["g", "kg", "lb", "oz", "ct"]), st.sampled_from("SD")).map(
        lambda t: (f"S {t[2]} {t[0]:>10.2f} {t[1]}\r\n".encode(), t[0], t[1])
    ),
    "aandd": st.tuples(scaled(1, 7), st.sampled_from(["ST", "US"])).map(
        lambda t: (f"{t[1]},{t[0]:+09.1f}  g\r\n".encode(), t[0], "g")
    ),
    "sartorius": st.tuples(scaled(2, 7), st.sampled_from(["", "N     ", "G#    "])).map(
        lambda t: (_sart(t[0], t[1]), t[0], "g")
    ),
    "ohaus": st.tuples(scaled(2, 7), st.sampled_from(["", "?"])).map(
        lambda t: (f"{t[0]:>10.2f} g     {t[1]}\r\n".encode(), t[0], "g")
    ),
    "indicator": st.tuples(scaled(3, 6), st.sampled_from(["ST", "US"]), st.sampled_from(["GS", "NT"])).map(
        lambda t: (f"{t[1]},{t[2]},{'-' if t[0] < 0 else '+'}{abs(t[0]):7.3f}kg\r\n".encode(), t[0], "kg")
    ),
    "xk3190": st.tuples(scaled(3, 6), st.booleans()).map(
        lambda t: (xk_encode(t[0], 3, ascii_hex=t[1]), t[0], "kg")
    ),
    "regex": st.tuples(scaled(2, 6), st.sampled_from(["", " OK", " MOV"])).map(
        lambda t: (f"W:{t[0]:.2f}g{t[1]}\r\n".encode(), t[0], "g")
    ),
}
JUNK = b"\x01\x7f\xff\xa5~&!@^|{}\x1b\"'`$"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_every_serial_driver_has_fuzz_vectors():
    assert sorted(VALID) == sorted(SERIAL)


@pytest.mark.parametrize("name", SERIAL)
@FUZZ
@given(data=st.binary(max_size=80))
def test_arbitrary_bytes_never_raise(name, data):
    result = parser_of(name)(data)
    assert isinstance(result, Decoded | Rejected | Ignored)
    if isinstance(result, Decoded):
        assert isinstance(result.value, float)
        # a number only with a status; an instrument error never carries one
        assert math.isfinite(result.value) == (result.status in (Status.OK, Status.UNSTABLE))
    elif isinstance(result, Rejected):
        assert result.reason


@pytest.mark.parametrize("name", SERIAL)
@FUZZ
@given(data=st.data())
def test_valid_frames_round_trip(name, data):
    frame, value, unit = data.draw(VALID[name])
    result = parser_of(name)(frame)
    assert isinstance(result, Decoded), (frame, result)
    assert result.value == value or (value == 0 and result.value == 0)
    assert result.unit == unit


@pytest.mark.parametrize("name", SERIAL)
@FUZZ
@given(data=st.data())
def test_junk_inside_a_valid_frame_never_becomes_a_number(name, data):
    frame, _, _ = data.draw(VALID[name])
    body = frame.rstrip(b"\r\n")
    # keep the frame's first byte (the start byte of binary frames) so the junk sits *inside* the frame
    pos = data.draw(st.integers(1, len(body) - 1), label="position")
    junk = data.draw(st.binary(min_size=1, max_size=3).map(lambda b: bytes(JUNK[x % len(JUNK)] for x in b)))
    result = parser_of(name)(body[:pos] + junk + body[pos:] + frame[len(body):])
    assert not (isinstance(result, Decoded) and math.isfinite(result.value)), (frame, junk, pos, result)


@pytest.mark.parametrize("name", SERIAL)
def test_nan_inf_and_exponents_are_never_numbers(name):
    parse = parser_of(name)
    for frame in (b"01A+nan\r", b"01A+inf\r", b"S S  1e5 g\r\n", b"ST,+1e+05  g\r\n", b"+ infinity\r",
                  b"W:1e5g\r\n", b"ST,GS,+NaNkg\r\n", "S S  ١٢٣ g\r\n".encode(), b"01A+\xd9\xa1\r"):
        result = parse(frame)
        assert not (isinstance(result, Decoded) and math.isfinite(result.value)), (name, frame, result)


def test_parsers_keep_up_with_tens_of_thousands_of_frames_a_second():
    frames = {
        "mtsics": b"S S     100.00 g\r\n",
        "aandd": b"ST,+001234.5  g\r\n",
        "mitutoyo": b"01A+0000.123\r",
        "indicator": b"ST,GS,+  4.876kg\r\n",
        "xk3190": xk_encode(12.34, 2),
    }
    for name, frame in frames.items():
        parse = parser_of(name)
        n = 20_000
        started = time.perf_counter()
        for _ in range(n):
            parse(frame)
        rate = n / (time.perf_counter() - started)
        assert rate > 30_000, f"{name}: {rate:.0f} frames/s"
