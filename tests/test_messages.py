"""Team threads (``vault/messages.py``): records, messages and the reader's ordering checks.

"The server is the attacker": every record goes through what a reader does (parse, verify
the sender device's signature, decrypt), and every served sequence goes through
``ThreadChecker.accept``. Messages are real ones from ``make_message``, posted like a
client posts them (``Poster``): each device chains its own messages (``seq``, ``prev``,
``prev_time``) and names the newest messages of others it had read (``seen``).

Times and ``now`` are explicit integers. ``expired(t, now)`` is ``t + expire <= now +
EXPIRY_GRACE``: the boundaries below are computed from ``EXPIRY_GRACE`` (120 s), so with
``expire=60`` a message already counts as expired 60 s *before* its own time.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault import messages
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Value, decode, encode
from vault.errors import BadSignature, DecryptionFailed, EncodingError, IntegrityError
from vault.keys import DeviceKeys
from vault.messages import (
    BODY_BUCKET,
    EXPIRY_GRACE,
    MAX_ATTACH,
    MAX_BODY,
    MAX_EXPIRE,
    MAX_NAME,
    MAX_RECORD,
    MAX_SEEN,
    MAX_TEXT,
    MIN_EXPIRE,
    Attachment,
    Body,
    Header,
    Message,
    Seen,
    SenderState,
    ThreadChecker,
    ThreadRecord,
    check_text,
    check_thread_name,
    make_message,
    make_thread,
    thread_id,
)
from vault.teamkeys import TeamKey

# No example database: runs leave nothing behind in the working tree.
PROPS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SIMS = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

TEAM = "t" * 32
OTHER_TEAM = "u" * 32
KEY = TeamKey.generate(TEAM, 1)
KEY2 = TeamKey(TEAM, 2, p.random_bytes(32), KEY.name_key)  # the next generation (name key carried over)
OTHER_KEY = TeamKey.generate(OTHER_TEAM, 1)
DEVICES = [DeviceKeys.generate() for _ in range(4)]
CREATOR = DEVICES[0]
THREAD_NAME = "design review"
THREAD = thread_id(KEY, THREAD_NAME)
OTHER_THREAD = thread_id(KEY, "lunch")
T0 = 1_700_000_000
REC = "0" * 32  # a thread record's ref (what ThreadChecker(rec=...) would require)


def simple_message(body: Body, **kw: Any) -> Message:
    """A first message of one device (``kw`` overrides any field)."""
    fields: dict[str, Any] = {"thread": THREAD, "rec": REC, "team_seq": 1, "sender": "s", "device": CREATOR,
                              "seq": 1, "prev": None, "prev_time": 0, "seen": [], "time": T0}
    fields.update(kw)
    return make_message(KEY, body, **fields)
NOW = T0 + 10**6  # long after every message in the expiry-free tests


# -- posting like a client ---------------------------------------------------------------------------


@dataclass
class Poster:
    """One device in one thread: it keeps its last (seq, id, time) and chains each message to it."""

    device: DeviceKeys
    member: str
    key: TeamKey = KEY
    thread: str = THREAD
    seq: int = 0
    last_id: str | None = None
    last_time: int = 0

    @property
    def device_id(self) -> str:
        return self.device.device_id

    def make(self, at: int, seen: Iterable[Seen] = (), text: str = "hello", **override: Any) -> Message:
        """The next message, without advancing the chain (``override`` crafts bad ones)."""
        args: dict[str, Any] = {
            "thread": self.thread,
            "rec": REC,
            "team_seq": 1,
            "sender": self.member,
            "device": self.device,
            "seq": self.seq + 1,
            "prev": self.last_id,
            "prev_time": self.last_time,
            "seen": list(seen),
            "time": max(at, self.last_time),
        }
        args.update(override)
        return make_message(self.key, Body(text), **args)

    def post(self, at: int, seen: Iterable[Seen] = (), text: str = "hello") -> Message:
        m = self.make(at, seen, text)
        self.seq, self.last_id, self.last_time = m.header.seq, m.id, m.header.time
        return m


class Room:
    """Devices posting in one thread; a poster first reads everything posted so far (``read=False``: it posts
    from a stale view, as a client that has not synced yet)."""

    def __init__(self, n: int = 3, expire: int = 0, key: TeamKey = KEY, thread: str = THREAD) -> None:
        self.posters = [Poster(DEVICES[i], f"member-{i}", key, thread) for i in range(n)]
        self.view = ThreadChecker(key.team_id, thread, expire)  # what the posting clients have read
        self.log: list[Message] = []
        self.read_upto = 0
        self.expire = expire

    def post(self, who: int, time: int, *, read: bool = True, text: str = "hello") -> Message:
        if read:
            self.catch_up(time)
        poster = self.posters[who]
        m = poster.post(time, self.view.newest_seen(poster.device_id), text)
        self.log.append(m)
        return m

    def catch_up(self, now: int) -> None:
        for m in self.log[self.read_upto :]:
            self.view.accept(m, now)
        self.read_upto = len(self.log)

    def reader(self) -> ThreadChecker:
        return ThreadChecker(self.view.team, self.view.thread, self.expire)


SIGNERS = {d.device_id: d.sign_public for d in DEVICES}


def serve(checker: ThreadChecker, served: Iterable[Message], now: int) -> None:
    """What a reader does with what the server served: parse the stored bytes, verify, decrypt, check order."""
    for m in served:
        stored = Message.parse(m.raw)
        stored.verify(SIGNERS[stored.header.device])
        stored.open(KEY if stored.header.team == TEAM else OTHER_KEY)
        checker.accept(stored, now)


def state_of(c: ThreadChecker) -> bytes:
    return encode(c.to_value())


def reload(c: ThreadChecker) -> ThreadChecker:
    """The checker as a client keeps it: encoded in its cache and read back."""
    return ThreadChecker.from_value(decode(encode(c.to_value())))


def rebuild(
    m: Message, *, header: dict[str, Value] | None = None, ct: bytes | None = None, sig: bytes | None = None
) -> bytes:
    """The stored record with some parts replaced (nothing re-signed)."""
    h = m.header.raw if header is None else encode(header)
    return encode({"header": h, "ct": m.ct if ct is None else ct, "sig": m.sig if sig is None else sig})


def header_dict(m: Message) -> dict[str, Value]:
    value = decode(m.header.raw)
    assert isinstance(value, dict)
    return dict(value)


def resign(device: DeviceKeys, header: dict[str, Value], ct: bytes) -> Message:
    """A record a (malicious or buggy) member's device really signed."""
    h = encode(header)
    sig = device.sign(labels.SIG_MSG, encode({"header": h, "ct_hash": p.sha256(ct)}))
    return Message.parse(encode({"header": h, "ct": ct, "sig": sig}))


def _chained() -> list[Message]:
    """a1, b1 (seen a1), a2 (prev a1, seen b1): every header field has a non-trivial value."""
    room = Room(2)
    room.post(0, T0)
    room.post(1, T0 + 5)
    room.post(0, T0 + 9)
    return room.log


# Samples shared with the Hypothesis tests (function-scoped fixtures do not mix with @given).
CHAINED = _chained()
THREAD_REC = make_thread(KEY, THREAD_NAME, team_seq=3, expire=3600, creator="member-0", device=CREATOR, time=T0)
CHECKER_STATE: dict[str, Value] = dict(
    ThreadChecker(
        TEAM,
        THREAD,
        60,
        {DEVICES[0].device_id: SenderState(2, CHAINED[2].id, T0 + 9)},
        {m.id: m.header.time for m in CHAINED},
    ).to_value()
)


@pytest.fixture
def thread_rec() -> ThreadRecord:
    return THREAD_REC


@pytest.fixture
def chained() -> list[Message]:
    return list(CHAINED)


# -- threads: round trip, ids and names ---------------------------------------------------------------


def test_thread_record_round_trip(thread_rec: ThreadRecord) -> None:
    rec = ThreadRecord.parse(thread_rec.raw)
    assert rec == thread_rec
    assert (rec.team, rec.thread, rec.team_seq, rec.expire) == (TEAM, THREAD, 3, 3600)
    assert (rec.creator, rec.device, rec.time) == ("member-0", CREATOR.device_id, T0)
    rec.verify(CREATOR.sign_public)
    assert rec.name(KEY) == THREAD_NAME
    assert THREAD_NAME.encode() not in rec.raw  # the name travels encrypted


def test_thread_record_signed_by_another_device_is_refused(thread_rec: ThreadRecord) -> None:
    with pytest.raises(BadSignature):
        thread_rec.verify(DEVICES[1].sign_public)


@pytest.mark.parametrize("name", ["a", "x" * MAX_NAME, "é" * (MAX_NAME // 2), "Ünïcödé 🧵", "with spaces  "])
def test_thread_names_round_trip(name: str) -> None:
    rec = make_thread(KEY, name, team_seq=1, expire=0, creator="member-0", device=CREATOR, time=T0)
    parsed = ThreadRecord.parse(rec.raw)
    parsed.verify(CREATOR.sign_public)
    assert parsed.name(KEY) == name
    assert parsed.thread == thread_id(KEY, name)


def test_thread_id_is_a_keyed_hash_of_the_name() -> None:
    assert thread_id(KEY, THREAD_NAME) == THREAD
    assert len(THREAD) == 32 and all(c in "0123456789abcdef" for c in THREAD)
    assert thread_id(KEY, "design review ") != THREAD
    assert thread_id(KEY, "Design review") != THREAD
    assert thread_id(OTHER_KEY, THREAD_NAME) != THREAD  # another team's name key
    assert thread_id(TeamKey.generate(TEAM, 1), THREAD_NAME) != THREAD  # same team id, another name key
    assert thread_id(KEY2, THREAD_NAME) == THREAD  # the name key, not the generation, decides
    assert thread_id(TeamKey(TEAM, 7, p.random_bytes(32), KEY.name_key), THREAD_NAME) == THREAD


def test_thread_name_is_readable_only_under_the_generation_it_was_created_in(thread_rec: ThreadRecord) -> None:
    """A later generation finds the thread by name (same name key) but cannot read names
    created under generations it does not hold, and a removed member cannot read new ones."""
    assert thread_rec.gen == KEY.gen and thread_rec.name(KEY) == THREAD_NAME
    assert thread_id(KEY2, THREAD_NAME) == thread_rec.thread
    with pytest.raises(IntegrityError, match="another key generation"):
        thread_rec.name(KEY2)
    later = make_thread(KEY2, THREAD_NAME, team_seq=2, expire=0, creator="member-0", device=CREATOR, time=T0)
    assert later.name(KEY2) == THREAD_NAME
    with pytest.raises(IntegrityError):
        later.name(KEY)


def test_thread_record_of_another_team_key_does_not_name(thread_rec: ThreadRecord) -> None:
    with pytest.raises(IntegrityError, match="another key generation"):
        thread_rec.name(OTHER_KEY)
    with pytest.raises(IntegrityError, match="does not open"):
        thread_rec.name(TeamKey.generate(TEAM, 1))  # the right team id and generation, the wrong key
    other = make_thread(OTHER_KEY, THREAD_NAME, team_seq=1, expire=0, creator="member-0", device=CREATOR, time=T0)
    with pytest.raises(IntegrityError):
        other.name(KEY)


def _signed_thread(core: dict[str, Value], device: DeviceKeys = CREATOR) -> ThreadRecord:
    raw = encode(core)
    return ThreadRecord.parse(encode({"core": raw, "sig": device.sign(labels.SIG_THREAD, raw)}))


def _core(rec: ThreadRecord) -> dict[str, Value]:
    value = decode(rec.core_raw)
    assert isinstance(value, dict)
    return dict(value)


def test_name_box_swapped_from_another_thread_is_refused(thread_rec: ThreadRecord) -> None:
    """Even signed by a member: the box is bound to (team, thread) and the name to the id."""
    other = make_thread(KEY, "lunch", team_seq=3, expire=3600, creator="member-0", device=CREATOR, time=T0)
    core = _core(thread_rec)
    core["name_box"] = other.name_box
    spliced = _signed_thread(core)
    spliced.verify(CREATOR.sign_public)
    with pytest.raises(IntegrityError, match="does not open"):  # the box is bound to its thread id
        spliced.name(KEY)
    # Unsigned splice: the signature catches it first.
    raw = encode({"core": encode(core), "sig": thread_rec.sig})
    with pytest.raises(BadSignature):
        ThreadRecord.parse(raw).verify(CREATOR.sign_public)


def test_name_that_does_not_hash_to_the_id_is_refused(thread_rec: ThreadRecord) -> None:
    """A box that opens (right key, right binding) but names another thread."""
    box = p.aead_seal(
        p.kdf(KEY.seed, labels.KDF_THREAD_NAME), messages._name_ad(TEAM, THREAD), messages._pad(b"lunch", 64)
    )
    core = _core(thread_rec)
    core["name_box"] = box
    with pytest.raises(IntegrityError, match="does not match its id"):
        _signed_thread(core).name(KEY)


@pytest.mark.parametrize(
    "padded",
    [messages._pad(b"\xff\xfe name", 64), b"\x00\x00\x00\x05abc" + b"\x01" * 57, b"\x00\x00\x00\x05abc"],
    ids=["invalid-utf8", "bad-padding", "short"],
)
def test_name_box_with_malformed_content_is_refused(thread_rec: ThreadRecord, padded: bytes) -> None:
    box = p.aead_seal(p.kdf(KEY.seed, labels.KDF_THREAD_NAME), messages._name_ad(TEAM, THREAD), padded)
    core = _core(thread_rec)
    core["name_box"] = box
    with pytest.raises(IntegrityError, match="does not open"):
        _signed_thread(core).name(KEY)


def test_thread_record_claiming_another_team_does_not_name(thread_rec: ThreadRecord) -> None:
    core = _core(thread_rec)
    core["team"] = OTHER_TEAM
    with pytest.raises(IntegrityError):
        _signed_thread(core).name(KEY)


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"team_seq": 0},
        {"expire": -1},
        {"expire": MAX_EXPIRE + 1},
        {"time": -1},
        {"extra": 1},
        {"team": "x" * 65},
        {"name_box": b"\x00" * 1025},
        {"creator": 5},
    ],
)
def test_malformed_thread_core_is_an_encoding_error(thread_rec: ThreadRecord, change: dict[str, Value]) -> None:
    core = _core(thread_rec)
    core.update(change)
    with pytest.raises(EncodingError):
        _signed_thread(core)


def test_malformed_thread_records_are_encoding_errors(thread_rec: ThreadRecord) -> None:
    with pytest.raises(EncodingError, match="too large"):
        ThreadRecord.parse(b"\x00" * 4097)
    for raw in [
        b"",
        thread_rec.raw[:-1],
        thread_rec.raw + b"\x00",
        encode({"core": thread_rec.core_raw}),
        encode({"core": thread_rec.core_raw, "sig": thread_rec.sig[:-1]}),
        encode({"core": thread_rec.core_raw, "sig": thread_rec.sig, "x": 1}),
        encode({"core": b"\x00" * 2049, "sig": thread_rec.sig}),
    ]:
        with pytest.raises(EncodingError):
            ThreadRecord.parse(raw)


@pytest.mark.parametrize("expire", [-1, MAX_EXPIRE + 1])
def test_make_thread_refuses_expiry_out_of_range(expire: int) -> None:
    with pytest.raises(EncodingError, match="expiry"):
        make_thread(KEY, "x", team_seq=1, expire=expire, creator="m", device=CREATOR, time=T0)


def test_make_thread_accepts_expiry_bounds() -> None:
    for expire in (0, MIN_EXPIRE, MAX_EXPIRE):
        assert make_thread(KEY, "x", team_seq=1, expire=expire, creator="m", device=CREATOR, time=T0).expire == expire
    for expire in (1, MIN_EXPIRE - 1, MAX_EXPIRE + 1, -1):  # a short expiry would hide every drop in the grace
        with pytest.raises(EncodingError, match="expiry"):
            make_thread(KEY, "x", team_seq=1, expire=expire, creator="m", device=CREATOR, time=T0)


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


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.binary(max_size=40)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
    | st.sampled_from(["0" * 32, "f" * 32, "", "a" * 64, "a" * 65])
)
keys = st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=8
)


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


# -- the reader's checks: ThreadChecker ---------------------------------------------------------------------


def test_interleaved_senders_in_order_are_accepted() -> None:
    room = Room(3)
    for i, who in enumerate([0, 1, 0, 2, 1, 0, 2, 2, 1, 0]):
        room.post(who, T0 + i)
    reader = room.reader()
    serve(reader, room.log, NOW)
    assert {d: s.seq for d, s in reader.senders.items()} == {
        DEVICES[0].device_id: 4,
        DEVICES[1].device_id: 3,
        DEVICES[2].device_id: 3,
    }
    assert set(reader.known) == {m.id for m in room.log}
    assert reader.senders[DEVICES[2].device_id] == SenderState(3, room.log[7].id, T0 + 7)
    # The posting clients' own view agrees.
    room.catch_up(NOW)
    assert state_of(room.view) == state_of(reader)


def test_first_messages_need_no_predecessor() -> None:
    room = Room(3)
    for who in range(3):
        room.post(who, T0 + who, read=False)
    reader = room.reader()
    serve(reader, room.log, NOW)
    assert all(s.seq == 1 for s in reader.senders.values())


def test_dropped_message_is_detected() -> None:
    room = Room(2)
    a1 = room.post(0, T0)
    b1 = room.post(1, T0 + 1)
    room.post(0, T0 + 2)  # a2: dropped
    a3 = room.post(0, T0 + 3, read=False)
    reader = room.reader()
    serve(reader, [a1, b1], NOW)
    before = state_of(reader)
    with pytest.raises(IntegrityError, match="dropped or reordered messages of one sender"):
        serve(reader, [a3], NOW)
    assert state_of(reader) == before  # a refused message changes nothing


def test_dropped_first_message_is_detected() -> None:
    room = Room(2)
    room.post(0, T0)
    a2 = room.post(0, T0 + 1)
    with pytest.raises(IntegrityError, match="dropped"):
        serve(room.reader(), [a2], 10**12)  # no expiry: no clock explains it


def test_messages_of_one_sender_reordered_are_detected() -> None:
    room = Room(2)
    a1, a2 = room.post(0, T0), room.post(0, T0 + 1)
    with pytest.raises(IntegrityError):
        serve(room.reader(), [a2, a1], NOW)
    room.post(1, T0 + 2)
    a3 = room.post(0, T0 + 3)
    with pytest.raises(IntegrityError, match="dropped"):
        serve(room.reader(), [a1, a3, a2], NOW)


def test_reordered_after_an_expiry_gap_names_the_sequence() -> None:
    """a2 looked expired (skipped), then the server serves it late: a replay or reorder."""
    room = Room(1, expire=60)
    a1, a2, a3 = room.post(0, T0), room.post(0, T0 + 10), room.post(0, T0 + 20)
    reader = room.reader()
    serve(reader, [a1, a3], T0 + 1000)
    with pytest.raises(IntegrityError, match="sequence 2 after 3"):
        serve(reader, [a2], T0 + 1000)


def test_replayed_message_is_detected() -> None:
    room = Room(3)
    a1, b1 = room.post(0, T0), room.post(1, T0 + 1)
    c1 = room.post(2, T0 + 2)
    reader = room.reader()
    serve(reader, [a1, b1, c1], NOW)
    for m in (a1, b1, c1):
        with pytest.raises(IntegrityError, match="replayed a message we already have"):
            serve(reader, [m], NOW)
    with pytest.raises(IntegrityError, match="replayed"):
        serve(room.reader(), [a1, a1], NOW)


def test_replay_is_detected_after_a_reload() -> None:
    room = Room(2)
    a1, b1, a2 = room.post(0, T0), room.post(1, T0 + 1), room.post(0, T0 + 2)
    reader = room.reader()
    serve(reader, [a1, b1, a2], NOW)
    reloaded = reload(reader)
    assert reloaded == reader and state_of(reloaded) == state_of(reader)
    for m in (a1, b1, a2):
        with pytest.raises(IntegrityError, match="replayed"):
            serve(reloaded, [m], NOW)
    b2 = room.post(1, T0 + 3)
    serve(reloaded, [b2], NOW)  # and goes on accepting
    a3 = room.post(0, T0 + 4)
    a4 = room.post(0, T0 + 5, read=False)
    with pytest.raises(IntegrityError, match="dropped"):
        serve(reload(reloaded), [a4], NOW)  # a3 missing, noticed by a reloaded reader too
    serve(reloaded, [a3, a4], NOW)


def test_replay_of_a_forgotten_expired_message_is_still_detected() -> None:
    room = Room(2, expire=60)
    a1, b1 = room.post(0, T0), room.post(1, T0 + 1000)
    reader = room.reader()
    serve(reader, [a1, b1], T0)
    reader.forget_expired(T0 + 1000)
    assert a1.id not in reader.known
    with pytest.raises(IntegrityError, match="replayed or reordered"):
        serve(reader, [a1], T0 + 1000)


def test_equivocation_same_sequence_twice_is_refused() -> None:
    """One device signed two different first messages: the second one served is refused."""
    poster = Poster(DEVICES[0], "member-0")
    a1, a1_fork = poster.make(T0, text="yes"), poster.make(T0, text="no")
    reader = ThreadChecker(TEAM, THREAD, 0)
    serve(reader, [a1], NOW)
    with pytest.raises(IntegrityError, match="sequence 1 after 1"):
        serve(reader, [a1_fork], NOW)


def test_message_chained_to_a_fork_is_refused() -> None:
    """The server splices a2 (chained to a1') after a1: the chain does not match."""
    poster = Poster(DEVICES[0], "member-0")
    a1 = poster.make(T0, text="yes")
    poster.post(T0, text="no")  # a1'
    a2 = poster.post(T0 + 1)
    with pytest.raises(IntegrityError, match="does not chain"):
        serve(ThreadChecker(TEAM, THREAD, 0), [a1, a2], NOW)


def test_message_with_wrong_prev_time_is_refused() -> None:
    poster = Poster(DEVICES[0], "member-0")
    a1 = poster.post(T0)
    a2 = poster.make(T0 + 5, prev_time=T0 + 1)
    with pytest.raises(IntegrityError, match="does not chain"):
        serve(ThreadChecker(TEAM, THREAD, 0), [a1, a2], NOW)


def test_message_older_than_its_predecessor_is_refused() -> None:
    poster = Poster(DEVICES[0], "member-0")
    a1 = poster.post(T0)
    a2 = poster.make(T0, time=T0 - 1)
    with pytest.raises(IntegrityError, match="older than"):
        serve(ThreadChecker(TEAM, THREAD, 0), [a1, a2], NOW)


def test_message_of_another_thread_is_refused() -> None:
    room, other = Room(2), Room(2, thread=OTHER_THREAD)
    a1 = room.post(0, T0)
    x1 = other.post(1, T0 + 1)
    reader = room.reader()
    serve(reader, [a1], NOW)
    with pytest.raises(IntegrityError, match="another thread or team"):
        serve(reader, [x1], NOW)


def test_message_of_another_team_is_refused() -> None:
    """Same thread id, another team: still refused (the checker binds both)."""
    room, other = Room(2), Room(2, key=OTHER_KEY, thread=THREAD)
    a1 = room.post(0, T0)
    x1 = other.post(1, T0 + 1)
    assert x1.header.thread == THREAD
    reader = room.reader()
    serve(reader, [a1], NOW)
    with pytest.raises(IntegrityError, match="another thread or team"):
        serve(reader, [x1], NOW)


def test_message_served_before_one_its_sender_had_read_is_refused() -> None:
    room = Room(2)
    a1 = room.post(0, T0)
    b1 = room.post(1, T0 + 5)  # B read a1 first
    assert b1.header.seen == (Seen(a1.id, T0),)
    with pytest.raises(IntegrityError, match="another member had already read"):
        serve(room.reader(), [b1, a1], NOW)
    with pytest.raises(IntegrityError, match="already read"):
        serve(room.reader(), [b1], NOW)  # or a1 dropped altogether
    serve(room.reader(), [a1, b1], NOW)


def test_seen_message_that_expired_may_be_missing() -> None:
    room = Room(2, expire=60)
    room.post(0, T0)
    b1 = room.post(1, T0 + 5)
    boundary = T0 + 60 - EXPIRY_GRACE  # a1 counts as expired from here on
    with pytest.raises(IntegrityError, match="already read"):
        serve(room.reader(), [b1], boundary - 1)
    serve(room.reader(), [b1], boundary)
    serve(room.reader(), [b1], T0 + 60)


@pytest.mark.parametrize("expire", [60, 3600])
def test_gap_explained_by_expiry_is_accepted_only_once_expired(expire: int) -> None:
    room = Room(2, expire=expire)
    a1 = room.post(0, T0)
    b1 = room.post(1, T0 + 5)
    a2 = room.post(0, T0 + 10)  # dropped by the server
    a3 = room.post(0, T0 + 20)
    assert a3.header.prev_time == T0 + 10
    boundary = a2.header.time + expire - EXPIRY_GRACE  # expired(a2.time, now) from here on
    reader = room.reader()
    serve(reader, [a1, b1], T0)
    for too_early in (boundary - 1, boundary - 1000):
        with pytest.raises(IntegrityError, match="expiry does not explain the gap"):
            serve(reader, [a3], too_early)
    for late_enough in (boundary, a2.header.time + expire, T0 + 10**6):
        r = reload(reader)
        serve(r, [a3], late_enough)
        assert r.senders[DEVICES[0].device_id].seq == 3
    if expire == 60:
        assert boundary < a2.header.time  # EXPIRY_GRACE > expire: "expired" before it was even posted


def test_gap_at_a_new_readers_start_is_explained_by_expiry() -> None:
    """A reader arriving late: the sender's first messages are gone."""
    room = Room(1, expire=3600)
    room.post(0, T0)
    a2 = room.post(0, T0 + 10)
    a3 = room.post(0, T0 + 20)
    boundary = a2.header.time + 3600 - EXPIRY_GRACE
    with pytest.raises(IntegrityError, match="dropped"):
        serve(room.reader(), [a3], boundary - 1)
    serve(room.reader(), [a3], boundary)


def test_without_expiry_a_gap_is_never_explained() -> None:
    room = Room(1, expire=0)
    room.post(0, T0)
    room.post(0, T0 + 1)
    a3 = room.post(0, T0 + 2)
    assert not room.reader().expired(0, 2**62)
    with pytest.raises(IntegrityError, match="dropped"):
        serve(room.reader(), [a3], 2**62)


def test_expired_predicate() -> None:
    c = ThreadChecker(TEAM, THREAD, 60)
    assert c.expired(T0, T0 + 60 - EXPIRY_GRACE)
    assert not c.expired(T0, T0 + 60 - EXPIRY_GRACE - 1)
    assert not ThreadChecker(TEAM, THREAD, 0).expired(0, 2**62)


def _withheld_room(expire: int) -> tuple[ThreadChecker, str, str]:
    room = Room(2, expire=expire)
    room.post(0, T0)
    room.post(0, T0 + 10)
    room.post(1, T0 + 20)
    reader = room.reader()
    serve(reader, room.log, T0 + 20)
    return reader, DEVICES[0].device_id, DEVICES[1].device_id


def test_check_nothing_withheld_detects_a_rollback() -> None:
    reader, a, b = _withheld_room(0)
    reader.check_nothing_withheld({a: 2, b: 1}, NOW)
    reader.check_nothing_withheld({a: 3, b: 1, "d" * 32: 9}, NOW)  # more than we saw is fine
    for served in ({a: 1, b: 1}, {a: 2, b: 0}, {a: 2}, {b: 1}, {}):
        with pytest.raises(IntegrityError, match="withheld"):
            reader.check_nothing_withheld(served, 2**62)


def test_check_nothing_withheld_excuses_expired_messages() -> None:
    reader, a, b = _withheld_room(60)
    a_boundary = T0 + 10 + 60 - EXPIRY_GRACE  # a2 (A's newest) expired from here on
    b_boundary = T0 + 20 + 60 - EXPIRY_GRACE
    with pytest.raises(IntegrityError, match="withheld"):
        reader.check_nothing_withheld({a: 1, b: 1}, a_boundary - 1)
    reader.check_nothing_withheld({a: 1, b: 1}, a_boundary)
    reader.check_nothing_withheld({b: 1}, a_boundary)
    with pytest.raises(IntegrityError, match="withheld"):
        reader.check_nothing_withheld({}, a_boundary)  # B's newest has not expired yet
    reader.check_nothing_withheld({}, b_boundary)


def test_forget_expired_drops_only_expired_ids() -> None:
    room = Room(2, expire=60)
    a1, b1, a2 = room.post(0, T0), room.post(1, T0 + 500), room.post(0, T0 + 1000)
    reader = room.reader()
    serve(reader, room.log, T0)
    reader.forget_expired(T0 + 60 - EXPIRY_GRACE - 1)
    assert set(reader.known) == {a1.id, b1.id, a2.id}
    reader.forget_expired(T0 + 60 - EXPIRY_GRACE)
    assert reader.known == {b1.id: T0 + 500, a2.id: T0 + 1000}
    senders_before = dict(reader.senders)
    reader.forget_expired(T0 + 10**6)
    assert reader.known == {}
    assert reader.senders == senders_before  # the chains are kept: replays are still caught by sequence
    assert reader.newest_seen(DEVICES[0].device_id) == []  # nothing forgotten is named in `seen`


def test_forget_expired_keeps_everything_without_expiry() -> None:
    room = Room(2, expire=0)
    for i in range(5):
        room.post(i % 2, T0 + i)
    reader = room.reader()
    serve(reader, room.log, NOW)
    reader.forget_expired(2**62)
    assert set(reader.known) == {m.id for m in room.log}


def test_forget_expired_keeps_the_newest_max_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages, "MAX_KNOWN", 3)
    room = Room(2, expire=0)
    for i in range(6):
        room.post(i % 2, T0 + i)
    reader = room.reader()
    serve(reader, room.log, NOW)
    reader.forget_expired(NOW)
    assert set(reader.known) == {m.id for m in room.log[-3:]}


def test_seen_naming_a_quiet_devices_old_message_after_pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    """D posts once, A posts more than MAX_KNOWN times; B (whose view was never pruned) posts naming D's message
    (still D's newest). Nothing was dropped, yet a pruned reader refuses B's message."""
    monkeypatch.setattr(messages, "MAX_KNOWN", 3)
    room = Room(3)
    d1 = room.post(2, T0)
    for i in range(4):
        room.post(0, T0 + 1 + i)
    b1 = room.post(1, T0 + 10)
    assert Seen(d1.id, T0) in b1.header.seen
    reader = room.reader()
    serve(reader, room.log[:-1], NOW)
    reader.forget_expired(NOW)  # what a client does each time it loads its cache
    assert d1.id not in reader.known and reader.senders[DEVICES[2].device_id].id == d1.id
    serve(reader, [b1], NOW)  # today: IntegrityError("... another member had already read")


def test_newest_seen_names_the_newest_of_other_devices() -> None:
    room = Room(4)
    for i, who in enumerate([0, 1, 2, 3, 1, 2]):
        room.post(who, T0 + i)
    room.catch_up(NOW)
    log = room.log
    assert room.view.newest_seen(DEVICES[0].device_id) == [
        Seen(log[5].id, T0 + 5),
        Seen(log[4].id, T0 + 4),
        Seen(log[3].id, T0 + 3),
    ]
    assert [s.id for s in room.view.newest_seen("x" * 32)] == [log[5].id, log[4].id, log[3].id, log[0].id]
    assert len(room.view.newest_seen("x" * 32)) == MAX_SEEN


def test_newest_seen_caps_at_max_seen() -> None:
    posters = [Poster(DeviceKeys.generate(), f"m{i}") for i in range(MAX_SEEN + 2)]
    msgs = [q.post(T0 + i) for i, q in enumerate(posters)]
    c = ThreadChecker(TEAM, THREAD, 0)
    for m in msgs:
        c.accept(m, NOW)
    assert [s.id for s in c.newest_seen(posters[0].device_id)] == [m.id for m in msgs[::-1][:MAX_SEEN]]


def test_checker_state_round_trips() -> None:
    room = Room(3, expire=3600)
    for i, who in enumerate([0, 1, 2, 0]):
        room.post(who, T0 + i)
    reader = room.reader()
    serve(reader, room.log, T0 + 10)
    again = reload(reader)
    assert again == reader
    assert (again.team, again.thread, again.expire) == (TEAM, THREAD, 3600)
    assert ThreadChecker.from_value(again.to_value()) == reader
    empty = ThreadChecker(TEAM, THREAD, 0)
    assert reload(empty) == empty


@pytest.mark.parametrize(
    "change",
    [
        {"senders": {"d": [1, "x"]}},
        {"senders": {"d": [1, "x", 2, 3]}},
        {"senders": {"d": "x"}},
        {"senders": {"d": ["1", "x", 2]}},
        {"senders": {"d": [1, 2, 2]}},
        {"senders": {"d": [1, "x", "2"]}},
        {"senders": [1]},
        {"known": {"x": "1"}},
        {"known": [1]},
        {"expire": -1},
        {"team": 5},
        {"extra": 1},
        {"team": "x" * 65},
    ],
)
def test_malformed_checker_state_is_an_encoding_error(change: dict[str, Value]) -> None:
    state = dict(ThreadChecker(TEAM, THREAD, 0).to_value())
    state.update(change)
    with pytest.raises(EncodingError):
        ThreadChecker.from_value(decode(encode(state)))


@pytest.mark.parametrize("missing", ["team", "thread", "expire", "senders", "known"])
def test_checker_state_missing_a_field_is_an_encoding_error(missing: str) -> None:
    partial = dict(ThreadChecker(TEAM, THREAD, 0).to_value())
    del partial[missing]
    with pytest.raises(EncodingError):
        ThreadChecker.from_value(decode(encode(partial)))
    with pytest.raises(EncodingError):
        ThreadChecker.from_value([])


@PROPS
@given(st.sampled_from(["team", "thread", "expire", "senders", "known"]), values)
def test_checker_state_decoder_fails_closed(name: str, value: Value) -> None:
    state = dict(CHECKER_STATE)
    state[name] = value
    with contextlib.suppress(EncodingError):
        ThreadChecker.from_value(decode(encode(state)))


# -- properties: simulated clients ------------------------------------------------------------------------------

schedules = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 100)), min_size=1, max_size=12)


def simulate(schedule: Sequence[tuple[int, int]]) -> list[Message]:
    """Three devices post in turn; before each post the poster reads a random part of what it has not read yet."""
    posters = [Poster(DEVICES[i], f"member-{i}") for i in range(3)]
    views = [ThreadChecker(TEAM, THREAD, 0) for _ in range(3)]
    read = [0, 0, 0]
    log: list[Message] = []
    for i, (who, fraction) in enumerate(schedule):
        upto = read[who] + (len(log) - read[who]) * fraction // 100
        for m in log[read[who] : upto]:
            views[who].accept(m, NOW)  # every client is itself a checking reader
        read[who] = upto
        log.append(posters[who].post(T0 + i, views[who].newest_seen(posters[who].device_id)))
    return log


def accepts(served: Sequence[Message]) -> bool:
    reader = ThreadChecker(TEAM, THREAD, 0)
    try:
        for m in served:
            reader.accept(m, NOW)
    except IntegrityError:
        return False
    return True


@SIMS
@given(schedules)
def test_posting_order_is_always_accepted(schedule: list[tuple[int, int]]) -> None:
    log = simulate(schedule)
    reader = ThreadChecker(TEAM, THREAD, 0)
    serve(reader, log, NOW)
    assert set(reader.known) == {m.id for m in log}
    assert accepts([Message.parse(m.raw) for m in log])
    reload(reader).check_nothing_withheld({d: s.seq for d, s in reader.senders.items()}, NOW)


@SIMS
@given(schedules)
def test_dropping_one_message_is_detected_exactly_when_provable(schedule: list[tuple[int, int]]) -> None:
    """Provable: a later message of the same sender (sequence gap) or a later ``seen`` names it."""
    log = simulate(schedule)
    for j, dropped in enumerate(log):
        later = log[j + 1 :]
        not_last = any(m.header.device == dropped.header.device for m in later)
        named = any(s.id == dropped.id for m in later for s in m.header.seen)
        assert accepts(log[:j] + later) is not (not_last or named), (j, not_last, named)
        if not_last:
            assert not accepts(log[:j] + later)  # the case the brief calls always detectable


@SIMS
@given(schedules)
def test_replaying_any_message_anywhere_later_is_detected(schedule: list[tuple[int, int]]) -> None:
    log = simulate(schedule)
    for j in range(len(log)):
        for k in range(j + 1, len(log) + 1):
            assert not accepts(log[:k] + [log[j]] + log[k:]), (j, k)


@SIMS
@given(schedules)
def test_swapping_two_messages_of_one_sender_is_detected(schedule: list[tuple[int, int]]) -> None:
    log = simulate(schedule)
    for i in range(len(log)):
        for k in range(i + 1, len(log)):
            if log[i].header.device == log[k].header.device:
                swapped = list(log)
                swapped[i], swapped[k] = swapped[k], swapped[i]
                assert not accepts(swapped), (i, k)


@SIMS
@given(schedules, st.randoms(use_true_random=False))
def test_any_causal_order_is_accepted_and_others_are_not(schedule: list[tuple[int, int]], rnd: random.Random) -> None:
    """The server may interleave senders freely, as long as each message follows its predecessor and what it
    names in ``seen``; every other order breaks one of those and is refused."""
    log = simulate(schedule)
    by_id = {m.id: m for m in log}

    def deps(m: Message) -> set[str]:
        return ({m.header.prev} if m.header.prev else set()) | {s.id for s in m.header.seen}

    assert all(d in by_id for m in log for d in deps(m))
    order: list[Message] = []
    done: set[str] = set()
    while len(order) < len(log):
        ready = [m for m in log if m.id not in done and deps(m) <= done]
        pick = rnd.choice(ready)
        order.append(pick)
        done.add(pick.id)
    assert accepts(order)
    shuffled = list(log)
    rnd.shuffle(shuffled)
    causal = all(deps(m) <= {x.id for x in shuffled[:i]} for i, m in enumerate(shuffled))
    assert accepts(shuffled) is causal


EXPIRE = 600


@SIMS
@given(st.lists(st.integers(1, 400), min_size=2, max_size=8), st.integers(0, 3000), st.data())
def test_dropping_from_an_expiring_thread_is_excused_only_by_expiry(
    steps: list[int], age: int, data: st.DataObject
) -> None:
    poster = Poster(DEVICES[0], "member-0")
    t = T0
    log = []
    for step in steps:
        t += step
        log.append(poster.post(t))
    now = T0 + age
    j = data.draw(st.integers(0, len(log) - 2))  # drop log[j], never the last one
    reader = ThreadChecker(TEAM, THREAD, EXPIRE)
    served = log[:j] + log[j + 1 :]
    excused = log[j].header.time + EXPIRE <= now + EXPIRY_GRACE
    try:
        for m in served:
            reader.accept(m, now)
    except IntegrityError as e:
        assert not excused and "dropped" in str(e)
    else:
        assert excused


def test_a_message_naming_an_older_team_state_than_one_before_it_is_refused() -> None:
    """After a removal the team state moves on; a message written at the old state and stored later is spliced in."""
    a, b = DeviceKeys.generate(), DeviceKeys.generate()
    checker = ThreadChecker(KEY.team_id, THREAD, 0)
    new = make_message(
        KEY,
        Body("after the change"),
        thread=THREAD,
        rec=REC,
        team_seq=5,
        sender="a",
        device=a,
        seq=1,
        prev=None,
        prev_time=0,
        seen=[],
        time=T0,
    )
    old = make_message(
        KEY,
        Body("from before"),
        thread=THREAD,
        rec=REC,
        team_seq=4,
        sender="b",
        device=b,
        seq=1,
        prev=None,
        prev_time=0,
        seen=[],
        time=T0 + 1,
    )
    checker.accept(new, T0 + 2)
    with pytest.raises(IntegrityError, match="older than a message before it"):
        checker.accept(old, T0 + 2)
    again = ThreadChecker.from_value(checker.to_value())  # the high-water mark survives a reload
    with pytest.raises(IntegrityError, match="older than a message before it"):
        again.accept(old, T0 + 2)
    fresh = ThreadChecker(KEY.team_id, THREAD, 0)
    fresh.accept(old, T0 + 2)
    fresh.accept(new, T0 + 2)  # in the order an honest server stores them
