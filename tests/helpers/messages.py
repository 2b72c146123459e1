"""The thread world of the message tests (``vault/messages.py``): fixed teams, keys, devices and times,
clients that post like a client (``Poster``) and a room of them (``Room``), and the reader's state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Value, decode, encode
from vault.keys import DeviceKeys
from vault.messages import (
    Body,
    Message,
    Seen,
    SenderState,
    ThreadChecker,
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
