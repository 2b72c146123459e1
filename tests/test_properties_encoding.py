"""Property tests for every decoder: arbitrary or mutated input never crashes them (encoding, links).

Each decoder either succeeds or raises its documented ``VaultError`` subclass; a decoder
that succeeds on a mutation must still describe exactly the bytes it was given (the
encoding is canonical, so nothing can be smuggled past a signature by re-serialization).
The samples and strategies are in ``tests/helpers/properties.py``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from tests.helpers.properties import (
    CORES,
    FAST,
    LINKS,
    PROPS,
    RECORDS,
    _depth,
    encoded_values,
    mutated,
    same,
    values,
)
from vault.encoding import MAX_DEPTH, decode, encode
from vault.errors import EncodingError
from vault.links import parse_link

# -- vault.encoding ---------------------------------------------------------------------------------


@FAST
@given(values)
def test_encode_decode_round_trip(value: Any) -> None:
    if _depth(value) > MAX_DEPTH:
        try:
            encode(value)
        except EncodingError:
            return
        raise AssertionError("encoder accepted a value nested too deeply")
    raw = encode(value)
    assert same(decode(raw), value)
    assert encode(decode(raw)) == raw


@FAST
@given(values, st.randoms(use_true_random=False))
def test_same_value_same_bytes(value: Any, rnd: Any) -> None:
    assume(_depth(value) <= MAX_DEPTH)

    def shuffled(v: Any) -> Any:
        if isinstance(v, list):
            return [shuffled(x) for x in v]
        if isinstance(v, dict):
            items = list(v.items())
            rnd.shuffle(items)
            return {k: shuffled(x) for k, x in items}
        return v

    assert encode(shuffled(value)) == encode(value)


def _check_decode(data: bytes) -> None:
    try:
        value = decode(data)
    except EncodingError:
        return
    # Canonical: whatever decodes re-encodes to exactly the same bytes.
    assert encode(value) == data


@FAST
@given(st.binary(max_size=200))
def test_decode_random_bytes(data: bytes) -> None:
    _check_decode(data)


@FAST
@given(mutated(LINKS + RECORDS + CORES + [b"N", b"d\x00\x00\x00\x00"]))
def test_decode_mutated_encodings(data: bytes) -> None:
    _check_decode(data)


@FAST
@given(encoded_values.flatmap(lambda raw: mutated([raw])))
def test_decode_mutated_generated_values(data: bytes) -> None:
    _check_decode(data)


@FAST
@given(st.lists(st.sampled_from([b"N", b"T", b"F", b"l\x00\x00\x00\x01", b"l\x00\x00\x00\x02",
                                 b"d\x00\x00\x00\x01\x00\x00\x00\x01a", b"s\x00\x00\x00\x01",
                                 b"b\x00\x00\x00\x00", b"i", b"\x00" * 4, b"z", b"\xff"]),
                max_size=80).map(b"".join))
def test_decode_grammar_fragments(data: bytes) -> None:
    _check_decode(data)


# -- vault.links ------------------------------------------------------------------------------------


def _check_link(data: bytes) -> None:
    try:
        link = parse_link(data)
    except EncodingError:
        return
    assert link.wire == data
    assert encode(decode(link.raw)) == link.raw
    assert link.seq >= 1 and link.time >= 0
    assert link.kind in ("member", "org", "team")


@PROPS
@given(st.binary(max_size=300))
def test_parse_link_random_bytes(data: bytes) -> None:
    _check_link(data)


@PROPS
@given(mutated(LINKS))
def test_parse_link_mutated(data: bytes) -> None:
    _check_link(data)


def test_parse_link_valid_samples() -> None:
    for wire in LINKS:
        assert parse_link(wire).wire == wire
