"""Property tests for every decoder (document envelopes, invites): arbitrary or mutated input never
crashes them; each decoder either succeeds or raises its documented ``VaultError`` subclass.
"""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from tests.helpers.properties import (
    CORES,
    FAST,
    INVITES,
    METAS,
    PROPS,
    RECORDS,
    mutated,
)
from vault.envelope import (
    FRAME,
    PUT,
    Core,
    Record,
    body_length,
    check_metadata,
    pad_metadata,
    plaintext_length,
    unpad_metadata,
)
from vault.errors import EncodingError, InviteError
from vault.invite import InviteCode

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
        meta = check_metadata(unpad_metadata(data), PUT)  # unpadding alone no longer checks the fields
    except EncodingError:
        return
    assert isinstance(meta, dict)
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
