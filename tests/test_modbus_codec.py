"""Register codec: golden vectors (the reference table and more), round trips of every type and order."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floorwatch.drivers.modbus import codec

VECTORS = json.loads((Path(__file__).parent / "testcases/modbus/register_vectors.json").read_text())["vectors"]
RANGES = {
    "u16": (0, 2**16 - 1), "i16": (-(2**15), 2**15 - 1), "u32": (0, 2**32 - 1), "i32": (-(2**31), 2**31 - 1),
    "u64": (0, 2**64 - 1), "i64": (-(2**63), 2**63 - 1),
}


def _words(text: str) -> list[int]:
    return [int(w, 16) for w in text.split()]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["what"] for v in VECTORS])
def test_golden_vector_decodes(vector):
    value = codec.decode(_words(vector["registers"]), vector["type"], vector["order"])
    if vector["type"].startswith("f"):
        assert value == pytest.approx(vector["value"], rel=1e-6)
    else:
        assert value == vector["value"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["what"] for v in VECTORS])
def test_golden_vector_encodes_to_the_same_wire_words(vector):
    assert codec.hexwords(codec.encode(vector["value"], vector["type"], vector["order"])) == vector["registers"]


@pytest.mark.parametrize("order", codec.ORDERS)
@pytest.mark.parametrize("kind", sorted(RANGES))
@given(data=st.data())
def test_integers_round_trip_in_every_order(kind, order, data):
    lo, hi = RANGES[kind]
    value = data.draw(st.integers(lo, hi))
    registers = codec.encode(value, kind, order)
    assert len(registers) == codec.register_count(kind)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert codec.decode(registers, kind, order) == value


@pytest.mark.parametrize("order", codec.ORDERS)
@given(value=st.floats(allow_nan=False, width=32))
def test_float32_round_trips_exactly(order, value):
    assert codec.decode(codec.encode(value, "f32", order), "f32", order) == value


@pytest.mark.parametrize("order", codec.ORDERS)
@given(value=st.floats(allow_nan=False))
def test_float64_round_trips_exactly(order, value):
    assert codec.decode(codec.encode(value, "f64", order), "f64", order) == value


def test_orders_differ_only_by_word_and_byte_swaps():
    abcd = codec.encode(0x11223344, "u32", "ABCD")
    assert codec.hexwords(abcd) == "1122 3344"
    assert codec.hexwords(codec.encode(0x11223344, "u32", "CDAB")) == "3344 1122"
    assert codec.hexwords(codec.encode(0x11223344, "u32", "BADC")) == "2211 4433"
    assert codec.hexwords(codec.encode(0x11223344, "u32", "DCBA")) == "4433 2211"


def test_nan_from_a_device_stays_nan():
    # The driver turns this into an error reading; the codec must not invent a number.
    assert math.isnan(codec.decode(list(struct.unpack(">HH", struct.pack(">f", math.nan))), "f32"))


@pytest.mark.parametrize(
    ("registers", "kind", "order", "message"),
    [
        ([1], "u32", "ABCD", "u32 needs 2 registers, got 1"),
        ([1, 2, 3], "f32", "ABCD", "f32 needs 2 registers, got 3"),
        ([70000], "u16", "ABCD", "not a 16-bit unsigned integer"),
        ([-1], "u16", "ABCD", "not a 16-bit unsigned integer"),
        ([True], "u16", "ABCD", "not a 16-bit unsigned integer"),
        ([1], "u8", "ABCD", "unknown register type 'u8'"),
        ([1, 2], "u32", "BACD", "unknown word order 'BACD'"),
    ],
)
def test_bad_input_is_a_clear_error(registers, kind, order, message):
    with pytest.raises(codec.CodecError, match=message):
        codec.decode(registers, kind, order)


@pytest.mark.parametrize(("value", "kind", "message"), [
    (70000, "u16", "does not fit in u16"), (-1, "u32", "does not fit in u32"), (1.5, "i16", "is not an integer"),
])
def test_values_that_do_not_fit_are_refused(value, kind, message):
    with pytest.raises(codec.CodecError, match=message):
        codec.encode(value, kind)


def test_scale_and_offset():
    assert codec.physical(250, scale=0.1) == 25.0
    assert codec.physical(codec.decode([0xFF9C], "i16"), scale=0.1, offset=100) == 90.0
    assert codec.raw_from_physical(25.0, "u16", scale=0.1) == 250
    assert codec.raw_from_physical(1.25, "f32", scale=0.5) == 2.5
