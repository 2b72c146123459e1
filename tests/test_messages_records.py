"""Team threads (``vault/messages.py``): messages round trip, opened under the wrong key, re-labelled,
spliced or malformed.

Messages are real ones from ``make_message``, posted like a client posts them (``Poster``,
``tests/helpers/messages.py``).
"""

from __future__ import annotations

import pytest

from tests.helpers.messages import (
    CHAINED,
    CREATOR,
    DEVICES,
    KEY,
    KEY2,
    OTHER_KEY,
    OTHER_TEAM,
    REC,
    T0,
    TEAM,
    THREAD,
    Poster,
    header_dict,
    rebuild,
    resign,
)
from vault import messages
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Value, encode
from vault.errors import BadSignature, DecryptionFailed, EncodingError, IntegrityError
from vault.messages import (
    BODY_BUCKET,
    MAX_ATTACH,
    MAX_BODY,
    MAX_RECORD,
    MAX_SEEN,
    MAX_TEXT,
    Attachment,
    Body,
    Message,
    Seen,
    make_message,
)
from vault.teamkeys import TeamKey


@pytest.fixture
def chained() -> list[Message]:
    return list(CHAINED)


# -- messages: round trip -------------------------------------------------------------------------------


def test_message_round_trip(chained: list[Message]) -> None:
    a1, b1, a2 = chained
    m = Message.parse(a2.raw)
    assert m == a2
    m.verify(DEVICES[0].sign_public)
    assert m.open(KEY) == Body("hello")
    h = m.header
    assert (h.team, h.thread, h.team_seq, h.gen, h.sender, h.device) == (
        TEAM,
        THREAD,
        1,
        1,
        "member-0",
        DEVICES[0].device_id,
    )
    assert (h.seq, h.prev, h.prev_time, h.time) == (2, a1.id, T0, T0 + 9)
    assert h.seen == (Seen(b1.id, T0 + 5),)
    assert b1.header.seen == (Seen(a1.id, T0),)
    assert (a1.header.seq, a1.header.prev, a1.header.prev_time, a1.header.seen) == (1, None, 0, ())
    assert len(h.nonce) == p.AEAD_NONCE_BYTES
    assert b"hello" not in m.raw


def test_message_with_attachments_round_trips() -> None:
    attach = tuple(Attachment(f"file {i}.pdf", "d" * 32, "v" * 64) for i in range(MAX_ATTACH))
    body = Body("see attached ✓", attach)
    m = make_message(
        KEY,
        body,
        thread=THREAD,
        rec=REC,
        team_seq=2,
        sender="member-1",
        device=DEVICES[1],
        seq=1,
        prev=None,
        prev_time=0,
        seen=[],
        time=T0,
    )
    assert Message.parse(m.raw).open(KEY) == body


def test_message_id_is_stable_and_covers_header_and_ciphertext(chained: list[Message]) -> None:
    a1, b1, a2 = chained
    assert len({a1.id, b1.id, a2.id}) == 3
    for m in chained:
        assert Message.parse(m.raw).id == m.id == Message.parse(Message.parse(m.raw).raw).id
        assert len(m.id) == 32 and all(c in "0123456789abcdef" for c in m.id)
        assert (
            m.id == p.tagged_hash(labels.H_MSG, encode({"header": m.header.raw, "ct_hash": p.sha256(m.ct)}))[:16].hex()
        )
    # The same inputs twice: a fresh nonce, so another message and another id.
    again = Poster(DEVICES[0], "member-0").make(T0)
    assert again.id != a1.id and again.header.nonce != a1.header.nonce


def test_message_signed_by_another_device_is_refused(chained: list[Message]) -> None:
    with pytest.raises(BadSignature):
        chained[2].verify(DEVICES[1].sign_public)


def test_message_body_is_bound_to_the_padding_bucket(chained: list[Message]) -> None:
    assert (len(chained[0].ct) - p.AEAD_TAG_BYTES) % BODY_BUCKET == 0
    short = make_message(
        KEY,
        Body("x"),
        thread=THREAD,
        rec=REC,
        team_seq=1,
        sender="m",
        device=CREATOR,
        seq=1,
        prev=None,
        prev_time=0,
        seen=[],
        time=T0,
    )
    longer = make_message(
        KEY,
        Body("x" * 200),
        thread=THREAD,
        rec=REC,
        team_seq=1,
        sender="m",
        device=CREATOR,
        seq=1,
        prev=None,
        prev_time=0,
        seen=[],
        time=T0,
    )
    assert len(short.ct) == len(longer.ct)  # lengths leak only the bucket


def test_make_message_keeps_at_most_max_seen() -> None:
    seen = [Seen(f"{i:032x}", T0 + i) for i in range(MAX_SEEN + 3)]
    m = make_message(
        KEY,
        Body("x"),
        thread=THREAD,
        rec=REC,
        team_seq=1,
        sender="m",
        device=CREATOR,
        seq=1,
        prev=None,
        prev_time=0,
        seen=iter(seen),
        time=T0,
    )
    assert m.header.seen == tuple(seen[:MAX_SEEN])


# -- messages: wrong key, re-labelled sender, splices -----------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [KEY2, OTHER_KEY, TeamKey(TEAM, 1, p.random_bytes(32), KEY.name_key), TeamKey(OTHER_TEAM, 1, KEY.seed)],
    ids=["next-generation", "other-team", "same-gen-wrong-seed", "other-team-same-seed"],
)
def test_open_under_the_wrong_key_fails(chained: list[Message], key: TeamKey) -> None:
    with pytest.raises(DecryptionFailed):
        chained[0].open(key)


def test_message_of_a_later_generation_opens_only_under_it() -> None:
    m = Poster(DEVICES[0], "member-0", key=KEY2).make(T0)
    assert m.header.gen == 2
    assert m.open(KEY2) == Body("hello")
    with pytest.raises(DecryptionFailed):
        m.open(KEY)
    # Re-labelling the generation does not help: the header is the AEAD's associated data.
    h = header_dict(m)
    h["gen"] = 1
    relabelled = Message.parse(rebuild(m, header=h))
    with pytest.raises(DecryptionFailed):
        relabelled.open(KEY)
    with pytest.raises(DecryptionFailed):
        relabelled.open(KEY2)


@pytest.mark.parametrize("who", [1, 2])
def test_relabelled_sender_fails_verification(chained: list[Message], who: int) -> None:
    m = chained[2]
    h = header_dict(m)
    h["sender"], h["device"] = f"member-{who}", DEVICES[who].device_id
    relabelled = Message.parse(rebuild(m, header=h))
    assert relabelled.header.device == DEVICES[who].device_id
    assert relabelled.id != m.id
    for device in (DEVICES[0], DEVICES[who]):
        with pytest.raises(BadSignature):
            relabelled.verify(device.sign_public)
    with pytest.raises(DecryptionFailed):
        relabelled.open(KEY)


def test_sender_only_relabelled_fails_verification(chained: list[Message]) -> None:
    h = header_dict(chained[2])
    h["sender"] = "member-1"
    with pytest.raises(BadSignature):
        Message.parse(rebuild(chained[2], header=h)).verify(DEVICES[0].sign_public)


def test_ciphertext_swapped_between_messages_is_refused(chained: list[Message]) -> None:
    a1, b1, a2 = chained
    spliced = Message.parse(rebuild(a2, ct=a1.ct))
    with pytest.raises(BadSignature):
        spliced.verify(DEVICES[0].sign_public)
    with pytest.raises(DecryptionFailed):
        spliced.open(KEY)


def test_header_swapped_between_messages_is_refused(chained: list[Message]) -> None:
    a1, b1, a2 = chained
    spliced = Message.parse(encode({"header": a1.header.raw, "ct": a2.ct, "sig": a2.sig}))
    with pytest.raises(BadSignature):
        spliced.verify(DEVICES[0].sign_public)
    with pytest.raises(DecryptionFailed):
        spliced.open(KEY)


def test_signature_of_another_message_is_refused(chained: list[Message]) -> None:
    with pytest.raises(BadSignature):
        Message.parse(rebuild(chained[2], sig=chained[0].sig)).verify(DEVICES[0].sign_public)


def test_signed_but_undecryptable_body_is_reported(chained: list[Message]) -> None:
    """A member's device signs a body the team key does not open (or that is not a body)."""
    a1 = chained[0]
    nonce = a1.header.nonce
    ad = labels.AD_MSG + b"\x00" + a1.header.raw
    body_key = p.kdf(KEY.msg_key, labels.KDF_MSG_BODY)
    for padded in [
        messages._pad(b"not an encoding", BODY_BUCKET),
        messages._pad(encode({"text": "x", "attach": [], "extra": 1}), BODY_BUCKET),
        messages._pad(encode({"text": "x", "attach": [{"name": "n"}]}), BODY_BUCKET),
        b"\x00\x00\x00\x03abc" + b"\x07" * (BODY_BUCKET - 7),
    ]:
        m = resign(DEVICES[0], header_dict(a1), p.aead_encrypt(body_key, nonce, ad, padded))
        m.verify(DEVICES[0].sign_public)
        with pytest.raises(IntegrityError, match="malformed"):
            m.open(KEY)
    garbage = resign(DEVICES[0], header_dict(a1), p.random_bytes(BODY_BUCKET + p.AEAD_TAG_BYTES))
    with pytest.raises(DecryptionFailed):
        garbage.open(KEY)


# -- messages: malformed records ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"extra": 1},
        {"seq": 0},
        {"team_seq": 0},
        {"gen": 0},
        {"time": -1},
        {"prev_time": -1},
        {"nonce": b"\x00" * 23},
        {"team": "x" * 65},
        {"sender": "x" * 65},
        {"device": 7},
        {"seen": "x"},
        {"prev": None},  # seq 2 without its predecessor
        {"seq": 1},  # a first message naming a predecessor
        {"prev": "A" * 32},
        {"prev": "0" * 31},
        {"prev": "g" * 32},
        {"seen": [{"id": "0" * 32, "time": 1}] * (MAX_SEEN + 1)},
        {"seen": [{"id": "0" * 32}]},
        {"seen": [{"id": "0" * 32, "time": 1, "x": 1}]},
        {"seen": [{"id": "Z" * 32, "time": 1}]},
        {"seen": [{"id": "0" * 32, "time": -1}]},
        {"seen": [5]},
    ],
)
def test_malformed_header_is_an_encoding_error(chained: list[Message], change: dict[str, Value]) -> None:
    h = header_dict(chained[2])  # seq 2, prev a1
    h.update(change)
    with pytest.raises(EncodingError):
        Message.parse(rebuild(chained[2], header=h))


def test_malformed_message_records_are_encoding_errors(chained: list[Message]) -> None:
    m = chained[0]
    with pytest.raises(EncodingError, match=f"at most {MAX_TEXT} bytes"):
        Message.parse(b"\x00" * (MAX_RECORD + 1))
    for raw in [
        b"",
        m.raw[:-1],
        m.raw + b"\x00",
        encode({"header": m.header.raw, "ct": m.ct}),
        encode({"header": m.header.raw, "ct": m.ct, "sig": m.sig, "x": 1}),
        rebuild(m, sig=m.sig[:-1]),
        rebuild(m, ct=m.ct[:-1]),
        rebuild(m, ct=b""),
        encode({"header": b"\x00" * 2049, "ct": m.ct, "sig": m.sig}),
        rebuild(m, ct=b"\x00" * (MAX_BODY + p.AEAD_TAG_BYTES + 1)),
        encode({"header": "text", "ct": m.ct, "sig": m.sig}),
        encode([m.header.raw, m.ct, m.sig]),
    ]:
        with pytest.raises(EncodingError):
            Message.parse(raw)
    for i in range(len(m.raw)):
        with pytest.raises(EncodingError):
            Message.parse(m.raw[:i])
