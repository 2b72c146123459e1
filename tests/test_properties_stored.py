"""Property tests for every decoder (keystores, sessions, audit leaves): arbitrary or mutated input never
crashes them; each decoder either succeeds or raises its documented ``VaultError`` subclass; and the
valid samples parse.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from security.events import SLOT_BYTES, Event, Leaf, _body_bytes, _leaf_bytes, _parse_exact
from tests.helpers.properties import (
    _KS_KEY,
    _SESSION_SECRET,
    FAST,
    INVITES,
    KEYSTORES,
    LEAVES,
    METAS,
    PROPS,
    RECORDS,
    SESSIONS,
    mutated,
)
from vault.encoding import decode, encode
from vault.envelope import (
    Record,
    unpad_metadata,
)
from vault.errors import EncodingError, IntegrityError, KeystoreError
from vault.invite import InviteCode
from vault.keystore import (
    open_session,
    open_with_key,
    parse_keystore,
)

# -- vault.keystore -----------------------------------------------------------------------------------


def _check_keystore(blob: bytes) -> None:
    try:
        header, ct = parse_keystore(blob)
    except KeystoreError:
        return
    assert len(header.salt) == 16 and len(header.nonce) == 24
    assert blob.endswith(ct)
    # Whatever parses, the authenticated open refuses unless the file is the original.
    try:
        secrets = open_with_key(blob, _KS_KEY)
    except KeystoreError:
        return
    assert blob in KEYSTORES and secrets == {"device": b"\x00" * 64, "member": "m"}


@PROPS
@given(st.binary(max_size=300))
def test_parse_keystore_random_bytes(blob: bytes) -> None:
    _check_keystore(blob)
    _check_keystore(b"MVKS1\n" + blob)


@PROPS
@given(mutated(KEYSTORES))
def test_parse_keystore_mutated(blob: bytes) -> None:
    _check_keystore(blob)


def _check_session(blob: bytes, secret: bytes, now: int) -> None:
    try:
        key = open_session(blob, secret, now)
    except KeystoreError:
        return
    assert blob in SESSIONS and secret == _SESSION_SECRET and key == _KS_KEY


@PROPS
@given(st.binary(max_size=200), st.binary(max_size=80), st.integers(-(2**63), 2**63 - 1))
def test_open_session_random_bytes(blob: bytes, secret: bytes, now: int) -> None:
    _check_session(blob, secret, now)
    _check_session(b"MVSS1\n" + blob, secret, now)


@PROPS
@given(mutated(SESSIONS), st.integers(0, 10**10 + 5))
def test_open_session_mutated(blob: bytes, now: int) -> None:
    _check_session(blob, _SESSION_SECRET, now)


# -- security.events (audit leaves) -----------------------------------------------------------------


def _check_leaf(data: bytes) -> None:
    """The exact-form fast path accepts exactly what the general decoder and ``Fields`` accept, alike."""
    exact = _parse_exact(data)
    try:
        general = Leaf.parse_decoded(data)
    except IntegrityError:
        assert exact is None
        try:
            Leaf.parse(data)
        except IntegrityError:
            return
        raise AssertionError("Leaf.parse accepted what the general decoder refuses") from None
    assert exact == general and Leaf.parse(data) == general
    assert general.raw == data and encode(decode(data)) == data
    assert general.day >= 0 and general.audit_gen >= 0 and len(general.eph) == 32
    assert len(general.slots) == 3 and all(len(s) == SLOT_BYTES for s in general.slots)


@PROPS
@given(st.binary(max_size=400))
def test_leaf_parse_random_bytes(data: bytes) -> None:
    _check_leaf(data)


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(LEAVES))
def test_leaf_parse_mutated(data: bytes) -> None:
    _check_leaf(data)


def test_leaf_parse_every_byte_altered() -> None:
    """Every single-byte change of a leaf, at every position (type bytes, lengths, keys, values)."""
    for raw in LEAVES[:2]:
        for i in range(len(raw)):
            for change in (0x01, 0x80, 0xFF):
                data = bytearray(raw)
                data[i] ^= change
                _check_leaf(bytes(data))
        for i in range(len(raw) + 1):
            _check_leaf(raw[:i])
            _check_leaf(raw[:i] + b"N" + raw[i:])


class _Str(str):
    pass


_texts = st.text(max_size=12) | st.sampled_from(["", "é", "\uff21", "\ud800", _Str("sub")])
_ints = st.integers(-(2**64), 2**64) | st.sampled_from([-(2**63), 2**63 - 1, 2**63, True, False])
_event_values = st.builds(
    Event, time=_ints, actor=_texts, device=_texts | st.none(), action=_texts, result=_texts,
    res=st.dictionaries(_texts, _texts, max_size=4)
    | st.dictionaries(_texts | st.integers(), _texts | _ints, max_size=3),
    rules=st.lists(_texts, max_size=3).map(tuple) | st.lists(_texts | st.binary(max_size=2), max_size=3),
    detail=st.dictionaries(_texts, _texts | _ints | st.none() | st.binary(max_size=3), max_size=4))


# Ordinary events whose res and detail values range widely (the fast path reaches them).
_plain_events = st.builds(
    Event, time=st.integers(0, 2**40), actor=st.text(max_size=4), device=st.text(max_size=4),
    action=st.text(max_size=4), result=st.text(max_size=4), res=st.dictionaries(st.text(max_size=4), _texts | _ints),
    rules=st.lists(st.text(max_size=4)).map(tuple),
    detail=st.dictionaries(_texts, _texts | _ints | st.none() | st.binary(max_size=3), max_size=4))


@FAST
@given(_event_values | _plain_events)
def test_event_body_fast_path_is_the_encoding(event: Event) -> None:
    """``_body_bytes`` writes exactly ``encode``'s bytes, or declines (and the general encoder decides)."""
    fast = _body_bytes(event)
    try:
        general: bytes | None = encode({"e": event.to_value(), "pad": b""})
    except EncodingError:
        general = None
    if fast is not None:
        assert fast == general


def test_event_body_fast_path_is_taken() -> None:
    event = Event(86400, "a" * 32, "d" * 32, "doc.read", "ok", {"vid": "v", "team": "t", "doc": "é"},
                  ("need-to-know", "bulk-access"), {"n": -5, "s": "x", "big": 2**63 - 1})
    assert _body_bytes(event) == encode({"e": event.to_value(), "pad": b""})
    for odd in (Event(1, "\ud800", "", "x"), Event(True, "", "", "x"), Event(1, _Str("a"), "", "x"),
                Event(2**63, "", "", "x"), Event(1, "", "", "x", detail={"b": True}),
                Event(1, "", "", "x", detail={"b": 2**63}), Event(1, "", "", "x", res={"b": -(2**63) - 1})):
        assert _body_bytes(odd) is None


@FAST
@given(_ints, _ints, st.binary(min_size=31, max_size=33), st.binary(max_size=40),
       st.lists(st.binary(min_size=SLOT_BYTES - 1, max_size=SLOT_BYTES + 1), min_size=2, max_size=4))
def test_leaf_bytes_is_the_encoding(day: int, ag: int, eph: bytes, c: bytes, slots: list[bytes]) -> None:
    try:
        general: bytes | None = encode({"v": 1, "day": day, "ag": ag, "e": eph, "c": c, "k": slots})
    except EncodingError:
        general = None
    try:
        fast: bytes | None = _leaf_bytes(day, ag, eph, c, slots)
    except EncodingError:
        fast = None
    assert fast == general
    if general is not None and day >= 0 and ag >= 0 and len(eph) == 32 and len(slots) == 3 \
            and all(len(x) == SLOT_BYTES for x in slots) and type(day) is int and type(ag) is int:
        assert _parse_exact(general) == Leaf(general, day, ag, eph, c, tuple(slots))


def test_leaf_samples() -> None:
    for raw in LEAVES[:3]:
        assert _parse_exact(raw) == Leaf.parse_decoded(raw) == Leaf.parse(raw)
    for raw in LEAVES[3:]:
        _check_leaf(raw)
        assert _parse_exact(raw) is None
    assert _parse_exact(bytearray(LEAVES[0])) is None  # only bytes take the fast path
    assert Leaf.parse(bytearray(LEAVES[0])).ciphertext == Leaf.parse(LEAVES[0]).ciphertext


def test_valid_samples_parse() -> None:
    for raw in RECORDS:
        assert Record.parse(raw).raw == raw
    for raw in METAS:
        assert unpad_metadata(raw)["name"]
    for code in INVITES:
        assert InviteCode.parse(code).encode() == code
    for blob in KEYSTORES:
        assert open_with_key(blob, _KS_KEY) == {"device": b"\x00" * 64, "member": "m"}
    assert open_session(SESSIONS[0], _SESSION_SECRET, 0) == _KS_KEY
