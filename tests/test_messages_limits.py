"""Team threads (``vault/messages.py``): every single-byte change of a message or record is caught, and
the limits (text, attachments, body, names).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers.messages import (
    CHAINED,
    CREATOR,
    DEVICES,
    KEY,
    PROPS,
    REC,
    SIGNERS,
    T0,
    THREAD_NAME,
    THREAD_REC,
    Poster,
    header_dict,
    rebuild,
    simple_message,
    values,
)
from vault import messages
from vault.encoding import Value, encode
from vault.errors import BadSignature, DecryptionFailed, EncodingError, IntegrityError
from vault.messages import (
    MAX_ATTACH,
    MAX_BODY,
    MAX_NAME,
    MAX_RECORD,
    MAX_SEEN,
    MAX_TEXT,
    Attachment,
    Body,
    Header,
    Message,
    Seen,
    ThreadRecord,
    check_text,
    check_thread_name,
    make_message,
    make_thread,
    thread_id,
)


@pytest.fixture
def thread_rec() -> ThreadRecord:
    return THREAD_REC


@pytest.fixture
def chained() -> list[Message]:
    return list(CHAINED)


# -- tampering: every single-byte change is caught ---------------------------------------------------------


def _check_tampered_message(original: Message, raw: bytes, signer: bytes) -> None:
    """Parse fails, or verify fails; and decryption never hands out the body under a changed header."""
    try:
        m = Message.parse(raw)
    except EncodingError:
        return
    assert (m.id, m.sig) != (original.id, original.sig)  # canonical: different bytes, different record
    with pytest.raises(BadSignature):
        m.verify(signer)
    try:
        body = m.open(KEY)
    except (DecryptionFailed, IntegrityError):
        return
    assert (m.header.raw, m.ct) == (original.header.raw, original.ct), "opened under an altered header"
    assert m.sig != original.sig and body == original.open(KEY)


def test_every_byte_flip_of_a_message_is_caught(chained: list[Message]) -> None:
    m = chained[2]
    signer = DEVICES[0].sign_public
    for i in range(len(m.raw)):
        for mask in (0x01, 0x80, 0xFF):
            raw = bytearray(m.raw)
            raw[i] ^= mask
            _check_tampered_message(m, bytes(raw), signer)


@PROPS
@given(st.data())
def test_random_byte_changes_of_a_message_are_caught(data: st.DataObject) -> None:
    m = CHAINED[data.draw(st.integers(0, 2))]
    raw = bytearray(m.raw)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    if bytes(raw) != m.raw:
        _check_tampered_message(m, bytes(raw), SIGNERS[m.header.device])


def _check_tampered_thread(original: ThreadRecord, raw: bytes) -> None:
    try:
        rec = ThreadRecord.parse(raw)
    except EncodingError:
        return
    with pytest.raises(BadSignature):
        rec.verify(CREATOR.sign_public)
    try:
        name = rec.name(KEY)
    except IntegrityError:
        return
    # Only fields outside the name binding changed: the name is still the one of the id.
    assert (rec.team, rec.thread, name) == (original.team, original.thread, THREAD_NAME)


def test_every_byte_flip_of_a_thread_record_is_caught(thread_rec: ThreadRecord) -> None:
    for i in range(len(thread_rec.raw)):
        for mask in (0x01, 0x80, 0xFF):
            raw = bytearray(thread_rec.raw)
            raw[i] ^= mask
            _check_tampered_thread(thread_rec, bytes(raw))


@PROPS
@given(st.data())
def test_random_byte_changes_of_a_thread_record_are_caught(data: st.DataObject) -> None:
    raw = bytearray(THREAD_REC.raw)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    if bytes(raw) != THREAD_REC.raw:
        _check_tampered_thread(THREAD_REC, bytes(raw))


@PROPS
@given(st.sampled_from(sorted(messages._HEADER_FIELDS)), values)
def test_any_header_field_replaced_is_refused(name: str, value: Value) -> None:
    m = CHAINED[2]
    h = header_dict(m)
    h[name] = value
    raw = rebuild(m, header=h)
    if raw != m.raw:
        _check_tampered_message(m, raw, DEVICES[0].sign_public)


@PROPS
@given(st.binary(max_size=600))
def test_decoders_refuse_garbage_with_encoding_errors(raw: bytes) -> None:
    for parse in (Message.parse, ThreadRecord.parse, Header.parse):
        with contextlib.suppress(EncodingError):
            parse(raw)


# -- limits -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n", " \t\r\n\x0b\x0c "])
def test_check_text_refuses_empty_text(text: str) -> None:
    with pytest.raises(EncodingError, match="empty"):
        check_text(text)
    with pytest.raises(EncodingError, match="empty"):
        Poster(CREATOR, "m").make(T0, text=text)


@pytest.mark.parametrize("text", ["\u00a0", "\u3000", " \u2003\u2009 "])
def test_check_text_refuses_unicode_whitespace_only(text: str) -> None:
    with pytest.raises(EncodingError, match="empty"):
        check_text(text)


@pytest.mark.parametrize("text", ["a" * MAX_TEXT, "é" * (MAX_TEXT // 2), "🧵" * (MAX_TEXT // 4), " x ", "0"])
def test_check_text_accepts_up_to_the_limit(text: str) -> None:
    assert check_text(text) == text.encode()


@pytest.mark.parametrize(
    "text", ["a" * (MAX_TEXT + 1), "é" * (MAX_TEXT // 2) + "a", "🧵" * (MAX_TEXT // 4) + "a", "a" * (10 * MAX_TEXT)]
)
def test_check_text_refuses_too_long_text_stating_the_limit(text: str) -> None:
    size = len(text.encode())
    with pytest.raises(EncodingError) as e:
        check_text(text)
    assert str(e.value) == f"message is {size} bytes; the limit is {MAX_TEXT} bytes"
    assert str(MAX_TEXT) in str(e.value)
    with pytest.raises(EncodingError, match=f"the limit is {MAX_TEXT} bytes"):
        Poster(CREATOR, "m").make(T0, text=text)


def test_check_text_refuses_lone_surrogates() -> None:
    with pytest.raises(EncodingError, match="Unicode"):
        check_text("abc\ud800")


def test_message_of_exactly_max_text_round_trips() -> None:
    text = "é" * (MAX_TEXT // 2)
    m = Poster(CREATOR, "m").make(T0, text=text)
    assert len(m.raw) <= MAX_RECORD
    assert Message.parse(m.raw).open(KEY).text == text


def _attachments_filling(room: int) -> tuple[Attachment, ...]:
    """Attachments whose encoding takes exactly ``room`` bytes (names of at most 1024 characters)."""
    base = len(encode([Attachment("", "d" * 64, "v" * 64).to_value()])) - len(encode([]))
    out: list[Attachment] = []
    while room > 0:
        take = min(room - base, 1024)
        assert take >= 0
        out.append(Attachment("n" * take, "d" * 64, "v" * 64))
        room -= base + take
    assert room == 0 and len(out) <= MAX_ATTACH
    return tuple(out)


def test_largest_body_round_trips_and_one_more_byte_is_refused() -> None:
    text = "a" * MAX_TEXT
    plain_text_only = len(encode({"text": text, "attach": []}))
    attach = _attachments_filling(MAX_BODY - 4 - plain_text_only)
    assert len(encode({"text": text, "attach": [a.to_value() for a in attach]})) + 4 == MAX_BODY
    body = Body(text, attach)
    seen = [Seen(f"{i:032x}", 2**62) for i in range(MAX_SEEN)]
    m = make_message(
        KEY,
        body,
        thread="x" * 64,
        rec=REC,
        team_seq=2**62,
        sender="s" * 64,
        device=CREATOR,
        seq=2**62,
        prev="f" * 32,
        prev_time=2**62,
        seen=seen,
        time=2**62,
    )
    assert len(m.raw) <= MAX_RECORD
    assert Message.parse(m.raw).open(KEY) == body
    bigger = Body(text, (*attach[:-1], Attachment(attach[-1].name, attach[-1].doc, attach[-1].vid + "v")))
    with pytest.raises(EncodingError, match="too large|at most"):
        simple_message(bigger)


def test_make_message_refuses_too_many_attachments() -> None:
    attach = tuple(Attachment("f", "d", "v") for _ in range(MAX_ATTACH + 1))
    with pytest.raises(EncodingError, match=f"at most {MAX_ATTACH} attachments"):
        simple_message(Body("x", attach))


@pytest.mark.parametrize(
    "attach",
    [Attachment("n" * 1025, "d", "v"), Attachment("n", "d" * 65, "v"), Attachment("n", "d", "v" * 65)],
    ids=["name", "doc", "vid"],
)
def test_make_message_refuses_attachments_open_would_refuse(attach: Attachment) -> None:
    """A sender must not be able to post a message every reader then reports as tampered."""
    try:
        m = simple_message(Body("x", (attach,)))
    except EncodingError:
        return
    m.open(KEY)  # today: IntegrityError("message body is malformed: ...")


def test_header_with_empty_prev_is_refused(chained: list[Message]) -> None:
    h = header_dict(chained[2])  # seq 2
    h["prev"] = ""
    with pytest.raises(EncodingError):
        Message.parse(rebuild(chained[2], header=h))


@pytest.mark.parametrize(
    "name", ["", "/", "a/b", "a\nb", "a\rb", "a\x00b", "x" * (MAX_NAME + 1), "é" * (MAX_NAME // 2) + "x", "\n"]
)
def test_check_thread_name_refuses(name: str) -> None:
    with pytest.raises(EncodingError, match=f"1 to {MAX_NAME} bytes"):
        check_thread_name(name)
    with pytest.raises(EncodingError):
        thread_id(KEY, name)
    with pytest.raises(EncodingError):
        make_thread(KEY, name, team_seq=1, expire=0, creator="m", device=CREATOR, time=T0)


def test_check_thread_name_refuses_lone_surrogates() -> None:
    with pytest.raises(EncodingError, match="Unicode"):
        check_thread_name("a\udcff")


@pytest.mark.parametrize("name", ["a", "x" * MAX_NAME, "é" * (MAX_NAME // 2), "a b.c-d_e", "\\", "..", "#1"])
def test_check_thread_name_accepts(name: str) -> None:
    assert check_thread_name(name) == name
