"""Property tests for every decoder: arbitrary or mutated input never crashes them.

Each decoder either succeeds or raises its documented ``VaultError`` subclass; a decoder
that succeeds on a mutation must still describe exactly the bytes it was given (the
encoding is canonical, so nothing can be smuggled past a signature by re-serialization).
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from security.events import SLOT_BYTES, Event, Leaf, _body_bytes, _leaf_bytes, _parse_exact, seal_event
from vault.crypto import primitives as crypto
from vault.encoding import MAX_DEPTH, decode, encode
from vault.envelope import (
    FRAME,
    Core,
    DocWriter,
    Record,
    body_length,
    pad_metadata,
    plaintext_length,
    unpad_metadata,
)
from vault.errors import EncodingError, IntegrityError, InviteError, KeystoreError
from vault.invite import InviteCode
from vault.keys import DeviceKeys, PukKeys
from vault.keystore import (
    MINIMUM,
    new_salt,
    new_session_secret,
    open_session,
    open_with_key,
    parse_keystore,
    seal_keystore,
    seal_session,
)
from vault.links import invite_public, make_link, parse_link
from vault.teamkeys import TeamKey

# No example database: runs leave nothing behind in the working tree.
PROPS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=300, deadline=None, database=None)

# -- valid samples to mutate ------------------------------------------------------------------------

_DEVICE = DeviceKeys.generate()
_PUK = PukKeys.generate(1)
_INVITE = b"\x07" * 32
LINKS = [
    make_link(chain=None, seq=1, prev=None, time=5, signer="m" * 32, device=_DEVICE, type_="member.create",
              body={"name": "alice", "puk": {"gen": 1, "box_pk": _PUK.box_public}}).wire,
    make_link(chain="o" * 32, seq=7, prev=b"\x01" * 32, time=9, signer="m" * 32, device=_DEVICE,
              type_="org.join", body={"invite": invite_public(_INVITE), "member_head": b"\x02" * 32},
              invite_secret=_INVITE).wire,
    make_link(chain="m" * 32, seq=2, prev=b"\x03" * 32, time=11, signer="m" * 32, device=_DEVICE, type_="device.add",
              body={"device": {"id": "d" * 32, "sign_pk": b"\x04" * 32, "box_pk": b"\x05" * 32, "name": "phone",
                               "kind": "device"},
                    "puk_gen": 1, "puk_boxes": [{"device": "d" * 32, "hash": b"\x06" * 32}],
                    "proof": b"\x07" * 64}).wire,
    make_link(chain="t" * 32, seq=5, prev=b"\x08" * 32, time=12, signer="m" * 32, device=_DEVICE, type_="team.rotate",
              body={"org_seq": 3, "key": {"gen": 2, "canary": b"\x09" * 32, "prev": b"\x0a" * 72,
                                          "boxes": [{"member": "m" * 32, "puk_gen": 1, "hash": b"\x0b" * 32}]}}).wire,
]

_KEY = TeamKey.generate("t" * 32, 3)


def _record(size: int) -> Record:
    w = DocWriter(key=_KEY, team_seq=4, device=_DEVICE, author="a" * 32, doc="d" * 32, seq=2, parent="p" * 32,
                  time=1, name="notes.md", size=size)
    w.upload_prefix()
    w.encrypt(b"x" * size)
    w.finish()
    assert w.record is not None
    return w.record


RECORDS = [_record(0).raw, _record(300).raw]
CORES = [Record.parse(r).core.raw for r in RECORDS]
METAS = [pad_metadata({"name": "a", "size": 0}), pad_metadata({"name": "é" * 200, "size": 2**40, "mime": "x/y"})]

INVITES = [
    InviteCode("https://vault.example.org:8443", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32).encode(),
    InviteCode("https://127.0.0.1:1", b"\x04" * 32, None, b"\x05" * 32).encode(),
]

_KS_KEY = b"\x09" * 32
KEYSTORES = [seal_keystore({"device": b"\x00" * 64, "member": "m"}, _KS_KEY, new_salt(), MINIMUM)]
_SESSION_SECRET = new_session_secret()
SESSIONS = [seal_session(_KS_KEY, _SESSION_SECRET, expires=10**10)]

_AUDIT_PK = crypto.box_keypair(b"\x0a" * 32)[0]
_MEMBER_PK = crypto.box_keypair(b"\x0b" * 32)[0]
_SLOTS = [b"\x0c" * SLOT_BYTES] * 3
LEAVES = [
    seal_event(Event(86400 * 3 + 5, "a" * 32, "d" * 32, "doc.read", "ok", {"doc": "x" * 32}, ("need-to-know",)),
               1, _AUDIT_PK, [_MEMBER_PK]),
    seal_event(Event(0, "", "", "auth.fail", "denied"), 0, None, []),
    seal_event(Event(2**40, "b" * 32, "e" * 32, "msg.post", "ok", detail={"text": "y" * 2000}), 7, _AUDIT_PK,
               [_MEMBER_PK, _MEMBER_PK]),
    # Canonical encodings that are not leaves, one check each, for mutations to start from.
    encode({"v": 1, "day": -1, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": _SLOTS}),
    encode({"v": 1, "day": 0, "ag": -1, "e": b"\x01" * 32, "c": b"", "k": _SLOTS}),
    encode({"v": 2, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": _SLOTS}),
    encode({"v": True, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": _SLOTS}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 31, "c": b"", "k": _SLOTS}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": "text", "k": _SLOTS}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": _SLOTS[:2]}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": [*_SLOTS[:2], b"\x0c" * 71]}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": _SLOTS, "x": None}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b""}),
]


# -- strategies -------------------------------------------------------------------------------------

_OPS = ("flip", "set", "insert", "delete", "truncate", "append", "splice", "length")


@st.composite
def mutated(draw: st.DrawFn, bases: list[bytes]) -> bytes:
    """A valid encoding with one to four random edits (guaranteed to differ from it)."""
    base = draw(st.sampled_from(bases))
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(_OPS))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=16))
        elif op == "splice":
            other = draw(st.sampled_from(bases))
            i, j = draw(st.integers(0, len(data))), draw(st.integers(0, len(other)))
            data = data[:i] + other[j:]
        elif op == "length" and len(data) >= 5:
            # Overwrite what may be a length or count with a boundary value.
            i = draw(st.integers(0, len(data) - 4))
            n = draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, len(data), len(data) + 1]))
            data[i : i + 4] = struct.pack(">I", n)
    assume(bytes(data) != base)
    return bytes(data)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)
encoded_values = values.map(lambda v: encode(v) if _depth(v) <= MAX_DEPTH else encode(None))


def _depth(v: Any) -> int:
    if isinstance(v, list | tuple):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


def same(a: Any, b: Any) -> bool:
    """Equality that does not confuse True with 1 or a tuple with a list."""
    if type(a) is not type(b):
        return isinstance(a, list | tuple) and isinstance(b, list | tuple) and same(list(a), list(b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


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


# -- vault.envelope ----------------------------------------------------------------------------------


def _check_record(data: bytes) -> None:
    try:
        record = Record.parse(data)
    except EncodingError:
        return
    assert record.raw == data
    assert Record.build(record.core.raw, record.wrapped, record.meta, record.body_hash, record.sig).raw == data
    assert body_length(plaintext_length(record.core.body_len)) == record.core.body_len


@PROPS
@given(st.binary(max_size=400))
def test_record_parse_random_bytes(data: bytes) -> None:
    _check_record(data)


@PROPS
@given(mutated(RECORDS))
def test_record_parse_mutated(data: bytes) -> None:
    _check_record(data)


def _check_core(data: bytes) -> None:
    try:
        core = Core.parse(data)
    except EncodingError:
        return
    assert core.raw == data and core.frame == FRAME
    assert core.team_seq >= 1 and core.seq >= 1 and core.gen >= 1
    assert len(core.key_commit) == 32 and len(core.nonce) == 24 and len(core.meta_nonce) == 24


@PROPS
@given(st.binary(max_size=300))
def test_core_parse_random_bytes(data: bytes) -> None:
    _check_core(data)


@PROPS
@given(mutated(CORES))
def test_core_parse_mutated(data: bytes) -> None:
    _check_core(data)


def _check_meta(data: bytes) -> None:
    try:
        meta = unpad_metadata(data)
    except EncodingError:
        return
    assert isinstance(meta["name"], str)
    assert isinstance(meta["size"], int) and not isinstance(meta["size"], bool) and meta["size"] >= 0


@PROPS
@given(st.binary(max_size=600))
def test_unpad_metadata_random_bytes(data: bytes) -> None:
    _check_meta(data)


@PROPS
@given(st.integers(1, 3).flatmap(lambda n: st.binary(min_size=256 * n, max_size=256 * n)))
def test_unpad_metadata_random_buckets(data: bytes) -> None:
    _check_meta(data)


@PROPS
@given(mutated(METAS))
def test_unpad_metadata_mutated(data: bytes) -> None:
    _check_meta(data)


@FAST
@given(st.text(max_size=300), st.integers(min_value=0, max_value=2**62))
def test_metadata_pad_round_trip(name: str, size: int) -> None:
    meta = {"name": name, "size": size}
    try:
        padded = pad_metadata(meta)  # type: ignore[arg-type]
    except EncodingError:
        return
    assert len(padded) % 256 == 0
    assert unpad_metadata(padded) == meta


@FAST
@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_plaintext_length_any_integer(body_len: int) -> None:
    try:
        size = plaintext_length(body_len)
    except EncodingError:
        return
    assert size >= 0
    assert body_length(size) == body_len


@FAST
@given(st.integers(min_value=0, max_value=2**50) | st.sampled_from([0, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME]))
def test_plaintext_length_inverts_body_length(size: int) -> None:
    assert plaintext_length(body_length(size)) == size
    # Lengths just beside a valid one either fit a neighbouring size or are refused.
    for delta in (-1, 1):
        try:
            other = plaintext_length(body_length(size) + delta)
        except EncodingError:
            continue
        assert other in (size - 1, size + 1)


# -- vault.invite -------------------------------------------------------------------------------------


def _check_invite(code: str) -> None:
    try:
        invite = InviteCode.parse(code)
    except InviteError:
        return
    assert invite.url.startswith("https://")
    assert len(invite.cert_fingerprint) == 32 and len(invite.secret) == 32
    assert invite.org_root is None or len(invite.org_root) == 32


@PROPS
@given(st.text(max_size=200))
def test_invite_parse_random_text(code: str) -> None:
    _check_invite(code)
    _check_invite("mv1-" + code)


@st.composite
def mutated_text(draw: st.DrawFn, bases: list[str]) -> str:
    text = list(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        ch = draw(st.characters() | st.sampled_from(list("-_=+/ A0")))
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if op == "set" and i < len(text):
            text[i] = ch
        elif op == "insert":
            text.insert(i, ch)
        elif op == "delete" and i < len(text):
            del text[i]
        elif op == "truncate":
            del text[i:]
    return "".join(text)


@PROPS
@given(mutated_text(INVITES))
def test_invite_parse_mutated(code: str) -> None:
    _check_invite(code)


@PROPS
@given(mutated([c.encode() for c in INVITES]).map(lambda b: b.decode("latin-1")))
def test_invite_parse_mutated_bytes(code: str) -> None:
    _check_invite(code)


@FAST
@given(
    st.text(max_size=100).map(lambda s: "https://" + s),
    st.binary(min_size=32, max_size=32),
    st.none() | st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
)
def test_invite_round_trip(url: str, cert: bytes, org: bytes | None, secret: bytes) -> None:
    code = InviteCode(url, cert, org, secret)
    try:
        text = code.encode()
    except EncodingError:  # a URL that is not valid Unicode cannot be encoded
        return
    assume(len(text) <= 2048 and url.strip() == url)
    assert InviteCode.parse(text) == code
    assert InviteCode.parse(f"  {text}\n") == code


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
