"""Every serial parser, fuzzed: arbitrary bytes never raise, valid frames round-trip, and a valid frame with
junk inside it never yields a number. Plus the hot-path budget (tens of thousands of frames a second)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floorwatch.drivers import registry
from floorwatch.drivers.base import Ignored, Rejected
from floorwatch.drivers.xk3190 import encode as xk_encode
from floorwatch.edge.model import Measurement, MeasurementStatus

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
    assert isinstance(result, Measurement | Rejected | Ignored)
    if isinstance(result, Measurement):
        assert isinstance(result.value, float)
        # a number only with a status; an instrument error never carries one
        assert math.isfinite(result.value) == (result.status in (MeasurementStatus.OK, MeasurementStatus.UNSTABLE))
    elif isinstance(result, Rejected):
        assert result.reason


@pytest.mark.parametrize("name", SERIAL)
@FUZZ
@given(data=st.data())
def test_valid_frames_round_trip(name, data):
    frame, value, unit = data.draw(VALID[name])
    result = parser_of(name)(frame)
    assert isinstance(result, Measurement), (frame, result)
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
    assert not (isinstance(result, Measurement) and math.isfinite(result.value)), (frame, junk, pos, result)


# Bytes that no instrument puts in or around a frame: control characters (not CR, LF, NUL, TAB or the A&D
# acknowledge 0x06, which some protocols legitimately strip), DEL, bytes >= 0x80 (a wrong baud rate or parity
# mostly yields those) and punctuation no protocol here uses.
HOSTILE = bytes([*range(1, 6), 7, 8, 11, 12, *range(14, 32), 0x7F, *range(0x80, 0x100)]) + b"~!@^|{}$&`'\"\\"
garbage = st.tuples(
    st.binary(max_size=12), st.sampled_from(HOSTILE), st.binary(max_size=12)
).map(lambda t: t[0] + bytes([t[1]]) + t[2])


@pytest.mark.parametrize("name", SERIAL)
@FUZZ
@given(data=st.data())
def test_a_valid_frame_inside_garbage_never_becomes_a_number(name, data):
    """What a wrong baud rate or a noisy cable sends: a good frame with garbage in front of it or after it.
    A parser that searches for its pattern instead of matching the whole line reports those values."""
    frame, _, _ = data.draw(VALID[name])
    body, end = frame.rstrip(b"\r\n"), frame[len(frame.rstrip(b"\r\n")):]
    before, after = data.draw(garbage, label="before"), data.draw(garbage, label="after")
    for line in (before + body + end, body + after + end, before + body + after + end):
        result = parser_of(name)(line)
        assert not (isinstance(result, Measurement) and math.isfinite(result.value)), (line, result)


@pytest.mark.parametrize("name", SERIAL)
@FUZZ
@given(data=st.data())
def test_nul_and_non_ascii_bytes_inside_a_frame_never_become_a_number(name, data):
    """A NUL (adapter reset) or a byte >= 0x80 (parity or baud error) inside a frame corrupts it."""
    frame, _, _ = data.draw(VALID[name])
    body = frame.rstrip(b"\r\n")
    pos = data.draw(st.integers(1, len(body) - 1), label="position")
    bad = data.draw(st.sampled_from([b"\x00", b"\xb5", b"\xc2\xb5", b"\xff", b"\x80", b"\xe2\x80\x8b"]), label="bad")
    result = parser_of(name)(body[:pos] + bad + body[pos:] + frame[len(body):])
    assert not (isinstance(result, Measurement) and math.isfinite(result.value)), (frame, bad, pos, result)


@pytest.mark.parametrize("name", SERIAL)
@FUZZ
@given(data=st.data())
def test_two_frames_run_together_never_become_a_number(name, data):
    """A dropped line end glues two frames into one line: neither value may be read from it."""
    (first, _, _), (second, _, _) = data.draw(VALID[name]), data.draw(VALID[name])
    glued = first.rstrip(b"\r\n\x03") + second
    result = parser_of(name)(glued)
    assert not (isinstance(result, Measurement) and math.isfinite(result.value)), (glued, result)


@pytest.mark.parametrize("name", SERIAL)
@FUZZ
@given(data=st.binary(max_size=40).filter(lambda b: any(c in HOSTILE for c in b)))
def test_bytes_with_line_noise_in_them_never_become_a_number(name, data):
    """Random bytes that contain at least one byte no instrument sends are never a value."""
    for line in (data, data + b"\r", data + b"\r\n"):
        result = parser_of(name)(line)
        assert not (isinstance(result, Measurement) and math.isfinite(result.value)), (line, result)


@pytest.mark.parametrize("name", SERIAL)
@FUZZ
@given(data=st.data())
def test_printable_noise_in_front_of_a_frame_never_becomes_a_number(name, data):
    """Noise can be printable too ('xx', 'Qz#.', a stray digit): a short word in front of a good frame (with
    or without a space) does not make a value, even for protocols with an optional ID field."""
    frame, _, _ = data.draw(VALID[name])
    word = data.draw(st.text("abcdefghijkmopqrsuvwxyzQXZ#.79", min_size=1, max_size=4), label="word").encode()
    sep = data.draw(st.sampled_from([b"", b" "]), label="separator")
    line = word + sep + frame
    result = parser_of(name)(line)
    assert not (isinstance(result, Measurement) and math.isfinite(result.value)), (line, result)


@pytest.mark.parametrize("name", ["sylvac", "sartorius"])
@pytest.mark.parametrize("line", [b"7\r", b"12\r\n", b"abc 12\r\n", b"xx 5\r\n", b"  3\r\n"])
def test_a_lone_number_without_the_protocol_layout_is_not_a_value(name, line):
    """Protocols without a header (Sylvac) or with an optional one (Sartorius) must still see their layout:
    the Sylvac value has a decimal point; the Sartorius line has a sign column and a unit field (blank while
    unstable). A digit or two from a noisy line is not a measurement."""
    result = parser_of(name)(line)
    assert not (isinstance(result, Measurement) and math.isfinite(result.value)), (line, result)


@pytest.mark.parametrize("name", SERIAL)
def test_nan_inf_and_exponents_are_never_numbers(name):
    parse = parser_of(name)
    for frame in (b"01A+nan\r", b"01A+inf\r", b"S S  1e5 g\r\n", b"ST,+1e+05  g\r\n", b"+ infinity\r",
                  b"W:1e5g\r\n", b"ST,GS,+NaNkg\r\n", "S S  ١٢٣ g\r\n".encode(), b"01A+\xd9\xa1\r"):
        result = parse(frame)
        assert not (isinstance(result, Measurement) and math.isfinite(result.value)), (name, frame, result)


def test_the_benchmark_frames_decode_to_their_numbers():
    """bench/bench_parsers.py times these frames (speed is measured there, never asserted here); each must
    decode to the number it carries, every time, or the benchmark would time the error path."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_parsers import FRAMES

    expected = {"mtsics": 100.0, "aandd": 1234.5, "mitutoyo": 0.123, "indicator": 4.876, "xk3190": 12.34}
    assert set(FRAMES) == set(expected)
    for name, frame in FRAMES.items():
        parse = parser_of(name)
        results = {parse(frame) for _ in range(3)}
        assert len(results) == 1, (name, results)  # parsers keep no state between frames
        (result,) = results
        assert isinstance(result, Measurement) and result.value == pytest.approx(expected[name]), (name, result)
