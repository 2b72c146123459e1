"""Team threads: signed thread records and encrypted, signed, chained messages.

Formats (``docs/format.md`` has every byte)::

    thread id   = hex(BLAKE2b_16(name_key, H_THREAD_ID || 0x00 || name))
    thread core = encode({"v": 1, "team", "thread", "team_seq", "gen", "expire", "creator", "device", "time",
                          "name_box"})
    name_box    = nonce || AEAD(kdf(seed[gen], KDF_THREAD_NAME), nonce, AD_THREAD_NAME || 0x00 || team || thread,
                                padded name)
    thread rec  = encode({"core": core, "sig": Ed25519(device, SIG_THREAD || 0x00 || core)})
    thread ref  = hex(H(H_THREAD_REF || thread rec)[:16])

    header  = encode({"v": 1, "team", "thread", "rec": thread ref, "team_seq", "gen", "sender", "device", "seq",
                      "prev", "prev_time", "seen", "time", "nonce"})
    ct      = AEAD(kdf(msg_key[gen], KDF_MSG_BODY), nonce, AD_MSG || 0x00 || header, padded body)
    signed  = encode({"header": header, "ct_hash": sha256(ct)})
    sig     = Ed25519(sender device, SIG_MSG || 0x00 || signed)
    id      = hex(H(H_MSG || signed)[:16])
    record  = encode({"header", "ct", "sig"})

``seq`` counts the sending device's messages in this thread from 1; ``prev`` is the id of
that device's previous message in the thread (``prev_time`` its time); ``seen`` lists the
ids and times of the newest messages of others the sender had read. Together they let a
reader detect a server that drops, reorders, replays or splices messages
(``ThreadChecker``). The thread name and message bodies are encrypted; the expiry is in
clear because the server deletes expired messages.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vault.acts import ALLOWANCE
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, Value, decode, encode
from vault.errors import DecryptionFailed, EncodingError, IntegrityError
from vault.keys import DeviceKeys
from vault.msglimits import MAX_BODY as MAX_BODY
from vault.msglimits import MAX_RECORD as MAX_RECORD
from vault.msglimits import MAX_TEXT as MAX_TEXT
from vault.teamkeys import TeamKey

MAX_ATTACH = 8
MAX_SEEN = 4
MAX_NAME = 200  # bytes of a thread name
MAX_EXPIRE = 3650 * 86400
MIN_EXPIRE = 3600  # shorter expiries would let the grace above hide most drops
BODY_BUCKET = 256
# Seconds by which a message may count as expired early: the server accepts message times up to
# 600 s off its clock (and purges by those times), and a reader's clock may differ a little more.
EXPIRY_GRACE = 660
# A message (or thread) is stored only under the current team state, and the server accepts
# signer times within 600 s of its clock: so an honest one is dated at most twice that after
# the next team link's time. Later means it was written after the state it names had ended.
LINK_SKEW = ALLOWANCE
MAX_KNOWN = 5000  # message ids a reader remembers per thread (``seen`` names the newest ones)
_HEADER_FIELDS = {"v", "team", "thread", "rec", "team_seq", "gen", "sender", "device", "seq", "prev", "prev_time",
                  "seen", "time", "nonce"}
_THREAD_FIELDS = {"v", "team", "thread", "team_seq", "gen", "expire", "creator", "device", "time", "name_box"}


def thread_id(key: TeamKey, name: str) -> str:
    """The id of a thread name: a keyed hash under the team's name key (the server never sees names)."""
    raw = check_thread_name(name).encode("utf-8")
    return p.kdf(key.name_key, labels.H_THREAD_ID + b"\x00" + raw, 16).hex()


def check_thread_name(name: str) -> str:
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise EncodingError("thread name is not valid Unicode") from e
    if not raw or len(raw) > MAX_NAME or any(c in name for c in "\x00\n\r/"):
        raise EncodingError(f"a thread name is 1 to {MAX_NAME} bytes without '/', NUL or newlines")
    return name


def _pad(raw: bytes, bucket: int) -> bytes:
    total = -(-(len(raw) + 4) // bucket) * bucket
    return struct.pack(">I", len(raw)) + raw + b"\x00" * (total - len(raw) - 4)


def _unpad(padded: bytes, bucket: int, what: str) -> bytes:
    if len(padded) < 4 or len(padded) % bucket:
        raise EncodingError(f"{what} padding is malformed")
    (n,) = struct.unpack(">I", padded[:4])
    if n > len(padded) - 4 or any(padded[4 + n:]):
        raise EncodingError(f"{what} padding is malformed")
    return padded[4:4 + n]


# -- threads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadRecord:
    raw: bytes
    core_raw: bytes
    sig: bytes
    team: str
    thread: str
    team_seq: int
    gen: int  # the key generation whose seed encrypts the name
    expire: int  # seconds a message is kept; 0 = no expiry
    creator: str
    device: str
    time: int
    name_box: bytes

    @classmethod
    def parse(cls, raw: bytes) -> ThreadRecord:
        if len(raw) > 4096:
            raise EncodingError("thread record is too large")
        outer = Fields(decode(raw), "thread record", {"core", "sig"})
        core_raw = outer.bytes_("core", max_size=2048)
        f = Fields(decode(core_raw), "thread header", _THREAD_FIELDS)
        if f.int_("v") != 1:
            raise EncodingError("unsupported thread record version")
        return cls(raw, core_raw, outer.bytes_("sig", p.SIG_BYTES), f.str_("team", 64), f.str_("thread", 64),
                   f.int_("team_seq", 1), f.int_("gen", 1), _expire(f.int_("expire", 0, MAX_EXPIRE)),
                   f.str_("creator", 64),
                   f.str_("device", 64), f.int_("time", 0), f.bytes_("name_box", max_size=1024))

    def verify(self, device_sign_public: bytes) -> None:
        p.verify(device_sign_public, labels.SIG_THREAD, self.core_raw, self.sig)

    @functools.cached_property
    def ref(self) -> str:
        """What every message of the thread names: one record per thread for all readers."""
        return p.tagged_hash(labels.H_THREAD_REF, self.raw)[:16].hex()

    def name(self, key: TeamKey) -> str:
        """The thread's name, checked against its id (raises ``IntegrityError``). ``key`` is the
        generation the record names: whoever lost that key (a removed member) cannot read it."""
        if (key.team_id, key.gen) != (self.team, self.gen):
            raise IntegrityError("the thread's name is encrypted under another key generation")
        try:
            padded = p.aead_open(p.kdf(key.seed, labels.KDF_THREAD_NAME), _name_ad(self.team, self.thread),
                                 self.name_box)
            name = _unpad(padded, 64, "thread name").decode("utf-8")
        except (DecryptionFailed, EncodingError, UnicodeDecodeError) as e:
            raise IntegrityError("the thread's encrypted name does not open") from e
        if thread_id(key, name) != self.thread:
            raise IntegrityError("the thread's name does not match its id")
        return name


def _expire(value: int) -> int:
    if value != 0 and value < MIN_EXPIRE:
        raise EncodingError(f"a thread's expiry is 0 or at least {MIN_EXPIRE} seconds")
    return value


def _name_ad(team: str, thread: str) -> bytes:
    return labels.AD_THREAD_NAME + b"\x00" + encode({"team": team, "thread": thread})


def make_thread(key: TeamKey, name: str, *, team_seq: int, expire: int, creator: str, device: DeviceKeys,
                time: int) -> ThreadRecord:
    if expire != 0 and not MIN_EXPIRE <= expire <= MAX_EXPIRE:
        raise EncodingError(f"a thread's expiry is 0 (keep messages) or {MIN_EXPIRE // 60} minutes to "
                            f"{MAX_EXPIRE // 86400} days")
    tid = thread_id(key, name)
    name_box = p.aead_seal(p.kdf(key.seed, labels.KDF_THREAD_NAME), _name_ad(key.team_id, tid),
                           _pad(name.encode("utf-8"), 64))
    core = encode({"v": 1, "team": key.team_id, "thread": tid, "team_seq": team_seq, "gen": key.gen, "expire": expire,
                   "creator": creator, "device": device.device_id, "time": time, "name_box": name_box})
    sig = device.sign(labels.SIG_THREAD, core)
    return ThreadRecord.parse(encode({"core": core, "sig": sig}))


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    id: str
    time: int


@dataclass(frozen=True)
class Header:
    raw: bytes
    team: str
    thread: str
    rec: str  # the thread record's ref
    team_seq: int
    gen: int
    sender: str
    device: str
    seq: int
    prev: str | None
    prev_time: int
    seen: tuple[Seen, ...]
    time: int
    nonce: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Header:
        f = Fields(decode(raw), "message header", _HEADER_FIELDS)
        if f.int_("v") != 1:
            raise EncodingError("unsupported message version")
        seen = []
        for item in f.list_("seen", MAX_SEEN):
            s = Fields(item, "seen message", {"id", "time"})
            seen.append(Seen(_hex_id(s.str_("id", 32)), s.int_("time", 0)))
        seq = f.int_("seq", 1)
        prev = f.opt_str("prev", 32)
        if (seq == 1) != (prev is None):
            raise EncodingError("a message names a previous message exactly when it is not the sender's first")
        return cls(raw, f.str_("team", 64), f.str_("thread", 64), _hex_id(f.str_("rec", 32)), f.int_("team_seq", 1),
                   f.int_("gen", 1),
                   f.str_("sender", 64), f.str_("device", 64), seq, _hex_id(prev) if prev is not None else None,
                   f.int_("prev_time", 0), tuple(seen), f.int_("time", 0), f.bytes_("nonce", p.AEAD_NONCE_BYTES))


def _hex_id(value: str) -> str:
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise EncodingError("message id must be 32 lowercase hex characters")
    return value


@dataclass(frozen=True)
class Attachment:
    name: str
    doc: str
    vid: str

    def to_value(self) -> dict[str, Value]:
        return {"name": self.name, "doc": self.doc, "vid": self.vid}


@dataclass(frozen=True)
class Body:
    text: str
    attach: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Message:
    """A stored message as the server holds it: header, ciphertext, signature."""

    raw: bytes
    header: Header
    ct: bytes
    sig: bytes

    @functools.cached_property
    def statement(self) -> bytes:
        return encode({"header": self.header.raw, "ct_hash": p.sha256(self.ct)})

    @functools.cached_property
    def id(self) -> str:
        return p.tagged_hash(labels.H_MSG, self.statement)[:16].hex()

    @classmethod
    def parse(cls, raw: bytes) -> Message:
        if len(raw) > MAX_RECORD:
            raise EncodingError(f"message is too large (at most {MAX_TEXT} bytes of text)")
        f = Fields(decode(raw), "message", {"header", "ct", "sig"})
        ct = f.bytes_("ct", max_size=MAX_BODY + p.AEAD_TAG_BYTES)
        if len(ct) < BODY_BUCKET + p.AEAD_TAG_BYTES:
            raise EncodingError("message ciphertext is too short")
        return cls(raw, Header.parse(f.bytes_("header", max_size=2048)), ct, f.bytes_("sig", p.SIG_BYTES))

    def verify(self, device_sign_public: bytes) -> None:
        """The sender device's signature over header and ciphertext (raises ``BadSignature``)."""
        p.verify(device_sign_public, labels.SIG_MSG, self.statement, self.sig)

    def open(self, key: TeamKey) -> Body:
        """Decrypt under the generation the header names (``DecryptionFailed`` on any alteration)."""
        h = self.header
        if (key.team_id, key.gen) != (h.team, h.gen):
            raise DecryptionFailed()
        padded = p.aead_decrypt(_body_key(key), h.nonce, _msg_ad(h.raw), self.ct)
        try:
            f = Fields(decode(_unpad(padded, BODY_BUCKET, "message body")), "message body", {"text", "attach"})
            text = f.str_("text", MAX_TEXT)
            attach = []
            for item in f.list_("attach", MAX_ATTACH):
                a = Fields(item, "attachment", {"name", "doc", "vid"})
                attach.append(Attachment(a.str_("name", 1024), a.str_("doc", 64), a.str_("vid", 64)))
        except EncodingError as e:
            raise IntegrityError(f"message body is malformed: {e}") from e
        return Body(text, tuple(attach))


def _body_key(key: TeamKey) -> bytes:
    return p.kdf(key.msg_key, labels.KDF_MSG_BODY)


def _msg_ad(header_raw: bytes) -> bytes:
    return labels.AD_MSG + b"\x00" + header_raw


def check_text(text: str) -> bytes:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise EncodingError("message text is not valid Unicode") from e
    if not text.strip():
        raise EncodingError("message is empty")
    if len(raw) > MAX_TEXT:
        raise EncodingError(f"message is {len(raw)} bytes; the limit is {MAX_TEXT} bytes")
    return raw


def make_message(key: TeamKey, body: Body, *, thread: str, rec: str, team_seq: int, sender: str,
                 device: DeviceKeys, seq: int, prev: str | None, prev_time: int, seen: Iterable[Seen],
                 time: int) -> Message:
    check_text(body.text)
    if len(body.attach) > MAX_ATTACH:
        raise EncodingError(f"at most {MAX_ATTACH} attachments")
    for a in body.attach:  # what a reader's ``open`` accepts, so no member can post an unreadable message
        if len(a.name.encode("utf-8", "surrogatepass")) > 1024 or len(a.doc) > 64 or len(a.vid) > 64:
            raise EncodingError("an attachment's name is at most 1024 bytes and its ids 64 characters")
    nonce = p.random_bytes(p.AEAD_NONCE_BYTES)
    header = encode({"v": 1, "team": key.team_id, "thread": thread, "rec": rec, "team_seq": team_seq, "gen": key.gen,
                     "sender": sender, "device": device.device_id, "seq": seq, "prev": prev,
                     "prev_time": prev_time, "seen": [{"id": s.id, "time": s.time} for s in list(seen)[:MAX_SEEN]],
                     "time": time, "nonce": nonce})
    plain = encode({"text": body.text, "attach": [a.to_value() for a in body.attach]})
    if len(plain) + 4 > MAX_BODY:
        raise EncodingError(f"message is too large (at most {MAX_TEXT} bytes of text)")
    ct = p.aead_encrypt(_body_key(key), nonce, _msg_ad(header), _pad(plain, BODY_BUCKET))
    statement = encode({"header": header, "ct_hash": p.sha256(ct)})
    sig = device.sign(labels.SIG_MSG, statement)
    return Message.parse(encode({"header": header, "ct": ct, "sig": sig}))


# -- the reader's checks -------------------------------------------------------------------------


@dataclass
class SenderState:
    seq: int
    id: str
    time: int


@dataclass
class ThreadChecker:
    """What a reader knows of one thread, and the ordering checks on each new message.

    A sans-IO state machine: ``accept`` takes the messages the server served, in its order,
    after their signatures verified; it raises ``IntegrityError`` naming what the server did
    (dropped, reordered, replayed) or returns normally and remembers them. Messages may be
    missing only where the thread's expiry explains it.
    """

    team: str
    thread: str
    expire: int
    senders: dict[str, SenderState] = field(default_factory=dict)  # device -> last message seen
    known: dict[str, int] = field(default_factory=dict)  # message id -> time, for `seen` checks
    team_seq: int = 0  # the newest team state a message named so far
    rec: str = ""  # the thread record's ref every message must name ("" = not checked: unit tests)

    def expired(self, t: int, now: int) -> bool:
        return self.expire > 0 and t + self.expire <= now + EXPIRY_GRACE

    def check_place(self, m: Message) -> None:
        """The message's header names this thread of this team (``accept`` checks it first; a reader calls it
        alone before the signature and the judge, which would otherwise judge it in the wrong team)."""
        if (m.header.team, m.header.thread) != (self.team, self.thread):
            raise IntegrityError("the server served a message of another thread or team")

    def accept(self, m: Message, now: int) -> None:
        h = m.header
        self.check_place(m)
        if self.rec and h.rec != self.rec:
            raise IntegrityError("a message belongs to another record of this thread (the server showed us a "
                                 "thread record its members did not post under)")
        mid = m.id
        if mid in self.known:
            raise IntegrityError("the server replayed a message we already have")
        if h.team_seq < self.team_seq:
            # An honest server stores a message only under the current team state, so states never go
            # back in its order: this one was written before a later team change (e.g. a removal).
            raise IntegrityError(f"a message names team state {h.team_seq}, older than a message before it "
                                 f"({self.team_seq}): it was inserted out of order")
        last = self.senders.get(h.device)
        if last is not None and h.seq <= last.seq:
            raise IntegrityError(f"the server replayed or reordered messages of one sender "
                                 f"(sequence {h.seq} after {last.seq})")
        if h.seq == (last.seq if last else 0) + 1:
            if last is not None and (h.prev != last.id or h.prev_time != last.time):
                raise IntegrityError("a message does not chain to its sender's previous message")
        elif not self.expired(h.prev_time, now):
            have = last.seq if last else 0
            raise IntegrityError(f"the server dropped or reordered messages of one sender (sequence {h.seq} "
                                 f"follows {have}, and the thread's expiry does not explain the gap)")
        if h.time < h.prev_time:
            raise IntegrityError("a message is older than its sender's previous message")
        lasts = {st.id for st in self.senders.values()}
        for s in h.seen:
            if s.id not in self.known and s.id not in lasts and not self.expired(s.time, now):
                raise IntegrityError("the server dropped or reordered a message another member had already read")
        self.senders[h.device] = SenderState(h.seq, mid, h.time)
        self.known[mid] = h.time
        self.team_seq = h.team_seq

    def check_nothing_withheld(self, served_last: Mapping[str, int], now: int) -> None:
        """After a full read: every sender's newest message we saw before is still there
        (or expired); ``served_last`` maps device -> highest sequence the server served."""
        for device, last in self.senders.items():
            if served_last.get(device, 0) < last.seq and not self.expired(last.time, now):
                raise IntegrityError("the server withheld messages we saw before (the thread was rolled back)")

    def forget_expired(self, now: int) -> None:
        kept = sorted(((t, mid) for mid, t in self.known.items() if not self.expired(t, now)), reverse=True)
        self.known = {mid: t for t, mid in kept[:MAX_KNOWN]}

    def newest_seen(self, exclude_device: str) -> list[Seen]:
        """For a new message: the newest messages of other devices (up to ``MAX_SEEN``)."""
        others = sorted(((s.time, s.id) for d, s in self.senders.items() if d != exclude_device), reverse=True)
        return [Seen(mid, t) for t, mid in others[:MAX_SEEN] if mid in self.known]

    def to_value(self) -> dict[str, Value]:
        return {"team": self.team, "thread": self.thread, "expire": self.expire,
                "senders": {d: [s.seq, s.id, s.time] for d, s in self.senders.items()},
                "known": dict(self.known), "team_seq": self.team_seq, "rec": self.rec}

    @classmethod
    def from_value(cls, value: Value) -> ThreadChecker:
        f = Fields(value, "thread state", {"team", "thread", "expire", "senders", "known", "team_seq", "rec"})
        senders = {}
        for d, v in f.dict_("senders").raw.items():
            if not isinstance(v, list) or len(v) != 3:
                raise EncodingError("thread state is malformed")
            seq, mid, t = v
            if not isinstance(seq, int) or not isinstance(mid, str) or not isinstance(t, int):
                raise EncodingError("thread state is malformed")
            senders[d] = SenderState(seq, mid, t)
        known = {}
        for mid, t in f.dict_("known").raw.items():
            if not isinstance(t, int):
                raise EncodingError("thread state is malformed")
            known[mid] = t
        return cls(f.str_("team", 64), f.str_("thread", 64), f.int_("expire", 0), senders, known,
                   f.int_("team_seq", 0), f.str_("rec", 32))
