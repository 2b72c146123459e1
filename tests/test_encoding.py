"""Canonical encoding: one value, one byte string; everything else is an EncodingError."""

from __future__ import annotations

import struct

import pytest

from vault.encoding import MAX_DEPTH, Fields, decode, encode
from vault.errors import EncodingError


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def s(text: str) -> bytes:
    raw = text.encode()
    return b"s" + u32(len(raw)) + raw


def key(text: str) -> bytes:
    raw = text.encode()
    return u32(len(raw)) + raw


# -- exact bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"N"),
        (True, b"T"),
        (False, b"F"),
        (0, b"i" + b"\x00" * 8),
        (-1, b"i" + b"\xff" * 8),
        (2**63 - 1, b"i\x7f" + b"\xff" * 7),
        (-(2**63), b"i\x80" + b"\x00" * 7),
        (b"", b"b" + u32(0)),
        (b"\x00\x01", b"b" + u32(2) + b"\x00\x01"),
        ("", b"s" + u32(0)),
        ("é", b"s" + u32(2) + "é".encode()),
        ([], b"l" + u32(0)),
        ([None, 1], b"l" + u32(2) + b"N" + b"i" + struct.pack(">q", 1)),
        ({}, b"d" + u32(0)),
        ({"b": None, "a": True}, b"d" + u32(2) + key("a") + b"T" + key("b") + b"N"),
    ],
)
def test_known_encodings(value: object, expected: bytes) -> None:
    assert encode(value) == expected  # type: ignore[arg-type]
    assert decode(expected) == value


def test_round_trip_nested() -> None:
    value = {
        "z": [1, -2, b"\xff", "ünïcode", None, True, False],
        "a": {"nested": {"deeper": [[], {}]}},
        "": b"",
        "B": 2**62,
    }
    raw = encode(value)
    assert decode(raw) == value
    assert encode(decode(raw)) == raw


def test_same_value_same_bytes_regardless_of_insertion_order() -> None:
    a = {"one": 1, "two": 2, "three": [3, {"x": 1, "y": 2}]}
    b = {"three": [3, {"y": 2, "x": 1}], "two": 2, "one": 1}
    assert encode(a) == encode(b)


def test_tuple_and_list_encode_the_same() -> None:
    assert encode((1, "a")) == encode([1, "a"])


def test_bytearray_and_memoryview_encode_as_bytes() -> None:
    assert encode(bytearray(b"ab")) == encode(b"ab") == encode(memoryview(b"ab"))


def test_keys_sorted_by_utf8_bytes_not_code_points() -> None:
    # U+FF21 (3 UTF-8 bytes, starts 0xEF) sorts after U+00E9 (starts 0xC3) and after "z".
    value = {"\uff21": 1, "z": 2, "é": 3}
    raw = encode(value)
    assert raw.index(b"z") < raw.index("é".encode()) < raw.index("\uff21".encode())
    assert decode(raw) == value


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = encode({"a": 1})
    assert decode(bytearray(raw)) == {"a": 1}
    assert decode(memoryview(raw)) == {"a": 1}


# -- rejections --------------------------------------------------------------------------------


def test_rejects_unsorted_keys() -> None:
    raw = b"d" + u32(2) + key("b") + b"N" + key("a") + b"N"
    with pytest.raises(EncodingError, match="canonical order"):
        decode(raw)


def test_rejects_duplicate_keys() -> None:
    raw = b"d" + u32(2) + key("a") + b"N" + key("a") + b"T"
    with pytest.raises(EncodingError, match="duplicated"):
        decode(raw)


def test_rejects_prefix_key_after_longer_key() -> None:
    raw = b"d" + u32(2) + key("ab") + b"N" + key("a") + b"N"
    with pytest.raises(EncodingError):
        decode(raw)


def test_rejects_trailing_bytes() -> None:
    with pytest.raises(EncodingError, match="trailing"):
        decode(encode({"a": 1}) + b"\x00")
    with pytest.raises(EncodingError, match="trailing"):
        decode(b"NN")


def test_rejects_empty_input() -> None:
    with pytest.raises(EncodingError, match="truncated"):
        decode(b"")


@pytest.mark.parametrize(
    "value",
    [1, b"hello", "hello", [1, 2, 3], {"a": {"b": [b"x", "y"]}}, None],
)
def test_every_truncation_is_rejected(value: object) -> None:
    raw = encode(value)  # type: ignore[arg-type]
    for cut in range(len(raw)):
        with pytest.raises(EncodingError):
            decode(raw[:cut])


def test_rejects_length_beyond_input() -> None:
    with pytest.raises(EncodingError, match="truncated"):
        decode(b"b" + u32(2**32 - 1) + b"abc")
    with pytest.raises(EncodingError, match="truncated"):
        decode(b"l" + u32(2**32 - 1) + b"N")
    with pytest.raises(EncodingError, match="truncated"):
        decode(b"d" + u32(2**32 - 1))


@pytest.mark.parametrize("raw", [b"\xff", b"\x80\x81", b"\xed\xa0\x80", b"\xc0\xaf", b"a\xe2\x82"])
def test_rejects_invalid_utf8_in_strings(raw: bytes) -> None:
    with pytest.raises(EncodingError, match="UTF-8"):
        decode(b"s" + u32(len(raw)) + raw)


def test_rejects_invalid_utf8_in_keys() -> None:
    with pytest.raises(EncodingError, match="UTF-8"):
        decode(b"d" + u32(1) + u32(1) + b"\xff" + b"N")


@pytest.mark.parametrize("type_byte", [b"f", b"x", b"\x00", b"n", b"t", b"I", b"D", b"L", b"S", b"B"])
def test_rejects_unknown_type_bytes(type_byte: bytes) -> None:
    with pytest.raises(EncodingError, match="unknown type byte"):
        decode(type_byte + b"\x00" * 8)


def test_no_float_type() -> None:
    with pytest.raises(EncodingError):
        encode(1.5)  # type: ignore[arg-type]
    with pytest.raises(EncodingError, match="unknown type byte"):
        decode(b"f" + struct.pack(">d", 1.5))


def test_nesting_limit_is_exact() -> None:
    ok = b"".join(b"l" + u32(1) for _ in range(MAX_DEPTH)) + b"N"
    value = decode(ok)
    for _ in range(MAX_DEPTH):
        assert isinstance(value, list)
        value = value[0]
    assert value is None
    too_deep = b"l" + u32(1) + ok
    with pytest.raises(EncodingError, match="nested too deeply"):
        decode(too_deep)


def test_nesting_limit_for_dicts() -> None:
    raw = b"".join(b"d" + u32(1) + key("k") for _ in range(MAX_DEPTH + 1)) + b"N"
    with pytest.raises(EncodingError, match="nested too deeply"):
        decode(raw)


@pytest.mark.parametrize("leaf", [b"i" + struct.pack(">q", -5), b"s" + u32(2) + b"ok", b"b" + u32(1) + b"\x00"])
@pytest.mark.parametrize("container", ["l", "d"])
def test_nesting_limit_for_scalars_in_containers(leaf: bytes, container: str) -> None:
    """Strings, bytes and integers inside a dictionary are decoded in its own loop (inside a list, by ``_decode``):
    the nesting limit holds for them exactly as for any other value (at the limit they decode, one deeper they do
    not)."""
    wrap = b"l" + u32(1) if container == "l" else b"d" + u32(1) + key("k")
    ok = wrap * MAX_DEPTH + leaf
    value = decode(ok)
    for _ in range(MAX_DEPTH):
        value = value[0] if container == "l" else value["k"]  # type: ignore[index,call-overload]
    assert value == decode(leaf)
    with pytest.raises(EncodingError, match="nested too deeply"):
        decode(wrap + ok)
    with pytest.raises(EncodingError, match="truncated"):
        decode(ok[:-1])


def test_deep_nesting_bomb_does_not_recurse_forever() -> None:
    raw = (b"l" + u32(1)) * 100_000 + b"N"
    with pytest.raises(EncodingError, match="nested too deeply"):
        decode(raw)


def test_encoder_enforces_same_depth_limit() -> None:
    value: object = None
    for _ in range(MAX_DEPTH):
        value = [value]
    assert decode(encode(value)) == value  # type: ignore[arg-type]
    with pytest.raises(EncodingError, match="nested too deeply"):
        encode([value])  # type: ignore[list-item]


@pytest.mark.parametrize("n", [2**63, -(2**63) - 1, 2**64, -(2**100)])
def test_encoder_rejects_int_out_of_range(n: int) -> None:
    with pytest.raises(EncodingError, match="out of range"):
        encode(n)


def test_int_bounds_round_trip() -> None:
    for n in (2**63 - 1, -(2**63), 0, 1, -1):
        assert decode(encode(n)) == n


def test_truncated_int_rejected() -> None:
    with pytest.raises(EncodingError, match="truncated"):
        decode(b"i" + b"\x00" * 7)


def test_bool_is_not_int() -> None:
    assert encode(True) != encode(1)
    assert decode(encode(True)) is True


@pytest.mark.parametrize("bad", [object(), 1.0, {1: "a"}, {b"k": 1}, {"a": {1, 2}}, set()])
def test_encoder_rejects_unsupported_values(bad: object) -> None:
    with pytest.raises(EncodingError):
        encode(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["\ud800", {"\udfff": 1}, ["ok", "\ud83d"]])
def test_encoder_rejects_lone_surrogates(bad: object) -> None:
    with pytest.raises(EncodingError):
        encode(bad)  # type: ignore[arg-type]


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(EncodingError):
        decode("N")  # type: ignore[arg-type]


# -- typed field access --------------------------------------------------------------------------


def test_fields_typed_access() -> None:
    f = Fields(decode(encode({"b": b"xy", "i": 5, "s": "t", "t": True, "l": [1], "d": {"k": 1},
                              "n": None})), "thing")
    assert f.bytes_("b", 2) == b"xy"
    assert f.int_("i", 0, 10) == 5
    assert f.str_("s") == "t"
    assert f.bool_("t") is True
    assert f.list_("l") == [1]
    assert f.dict_("d").int_("k") == 1
    assert f.opt_bytes("n") is None and f.opt_int("n") is None and f.opt_str("n") is None
    assert f.opt_dict("n") is None


@pytest.mark.parametrize(
    "call",
    [
        lambda f: f.bytes_("i"),
        lambda f: f.bytes_("b", 3),
        lambda f: f.bytes_("b", max_size=1),
        lambda f: f.int_("t"),  # a boolean is not an integer
        lambda f: f.int_("i", minimum=6),
        lambda f: f.int_("i", maximum=4),
        lambda f: f.str_("s", max_len=0),
        lambda f: f.str_("b"),
        lambda f: f.bool_("i"),
        lambda f: f.list_("l", max_len=0),
        lambda f: f.dict_("l"),
        lambda f: f.int_("missing"),
        lambda f: f.dict_("d", allowed={"other"}),
    ],
)
def test_fields_fail_closed(call: object) -> None:
    f = Fields({"b": b"xy", "i": 5, "s": "t", "t": True, "l": [1], "d": {"k": 1}}, "thing")
    with pytest.raises(EncodingError):
        call(f)  # type: ignore[operator]


def test_fields_rejects_unexpected_fields_and_non_dicts() -> None:
    with pytest.raises(EncodingError, match="unexpected field"):
        Fields({"a": 1, "b": 2}, "thing", {"a"})
    with pytest.raises(EncodingError, match="expected a dictionary"):
        Fields([1], "thing")
