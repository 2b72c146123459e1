"""The client's encrypted thread cache: what it accepted of each thread of one team.

Kept in ``threads/<keyed hash of the team id>.bin`` under the client's home, sealed with a key
from the unlocked keystore: messages, read positions (unread counts), our own last acknowledged
message, and the ordering checker's state (``vault.messages.ThreadChecker``), so a later read
also catches a server that rolls a thread back. Expired messages are dropped whenever it is
loaded or saved. ``client.threads`` fills it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from client.client import Client
from vault.encoding import Fields, Value
from vault.errors import DecryptionFailed, EncodingError, VaultError
from vault.fileio import atomic_write, locked
from vault.localstate import file_name, local_key, open_local, seal_local
from vault.messages import ThreadChecker

MAX_CACHED = 2000  # messages kept per thread in the local cache


@dataclass
class Shown:
    """A verified, decrypted message."""

    pos: int
    id: str
    time: int
    sender: str
    device: str
    seq: int
    text: str
    attach: list[dict[str, str]]
    gen: int

    def to_value(self) -> dict[str, Value]:
        return {"pos": self.pos, "id": self.id, "time": self.time, "sender": self.sender, "device": self.device,
                "seq": self.seq, "text": self.text, "attach": list(self.attach), "gen": self.gen}

    @classmethod
    def from_value(cls, v: Value) -> Shown:
        f = Fields(v, "cached message")
        attach = [{str(k): str(x) for k, x in Fields(a, "attachment").raw.items()} for a in f.list_("attach")]
        return cls(f.int_("pos"), f.str_("id"), f.int_("time"), f.str_("sender"), f.str_("device"), f.int_("seq"),
                   f.str_("text", 1 << 20), attach, f.int_("gen"))


@dataclass
class CachedThread:
    name: str
    record: bytes
    checker: ThreadChecker
    pos: int = 0  # highest server position accepted
    read: int = 0  # highest position shown to the member (unread = messages after it)
    messages: list[Shown] = field(default_factory=list)
    # Our device's newest message the server acknowledged (seq, id, time): the next post chains
    # to it, and a server that never serves it is caught.
    own: tuple[int, str, int] | None = None

    def to_value(self) -> dict[str, Value]:
        return {"name": self.name, "record": self.record, "checker": self.checker.to_value(), "pos": self.pos,
                "read": self.read, "messages": [m.to_value() for m in self.messages[-MAX_CACHED:]],
                "own": list(self.own) if self.own else None}

    @classmethod
    def from_value(cls, v: Value) -> CachedThread:
        f = Fields(v, "cached thread")
        own = f.raw.get("own")
        mine = None
        if isinstance(own, list) and len(own) == 3 and isinstance(own[0], int) and isinstance(own[1], str) \
                and isinstance(own[2], int):
            mine = (own[0], own[1], own[2])
        return cls(f.str_("name"), f.bytes_("record", max_size=4096), ThreadChecker.from_value(f.raw["checker"]),
                   f.int_("pos", 0), f.int_("read", 0), [Shown.from_value(m) for m in f.list_("messages")], mine)

    @property
    def expire(self) -> int:
        return self.checker.expire

    def drop_expired(self, t: int) -> None:
        if self.expire:
            self.messages = [m for m in self.messages if not self.checker.expired(m.time, t)]
        self.checker.forget_expired(t)

    def unread(self, me: str) -> int:
        return sum(1 for m in self.messages if m.pos > self.read and m.sender != me)


class ThreadCache:
    """The encrypted per-team cache file.

    Several commands of one member may run at once (``thread follow`` beside ``thread post``):
    each save takes a lock, reads what the others saved and keeps, per thread, the state that
    got furthest (and the newest read position and own message of both), so no save rolls
    another's back."""

    def __init__(self, s: Client, team_id: str) -> None:
        self.name = f"threads/{team_id}"
        self.clock = s.session.clock
        self._key = local_key(s.session.device)
        # The file is named by a keyed hash of the team id: the listing does not say which teams we are in.
        self.path = s.session.home.path / "threads" / f"{file_name(self._key, self.name)}.bin"
        legacy = s.session.home.path / "threads" / f"{team_id}.bin"
        if legacy.exists() and not self.path.exists():  # written by an older version
            legacy.replace(self.path)
        legacy.with_suffix(".lock").unlink(missing_ok=True)
        self.threads: dict[str, CachedThread] = self._load()
        t = self.clock.now()
        for ct in self.threads.values():
            ct.drop_expired(t)

    def _load(self) -> dict[str, CachedThread]:
        if not self.path.exists():
            return {}
        try:
            value = open_local(self._key, self.name, self.path.read_bytes())
            return {tid: CachedThread.from_value(item)
                    for tid, item in Fields(value, "thread cache").dict_("threads").raw.items()}
        except (DecryptionFailed, EncodingError) as e:
            raise VaultError(f"the local thread cache {self.path} does not open: it was altered, is not yours or "
                             "is from another version (delete it to start over; the next read checks everything "
                             "again)") from e

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        with locked(self.path.with_suffix(".lock")):
            yield

    def save(self) -> None:
        with self._locked():
            t = self.clock.now()
            for ct in self.threads.values():
                ct.drop_expired(t)  # a long follow drops what expired meanwhile, too
            written: dict[str, Value] = {}
            disk = self._load()
            for tid in set(disk) | set(self.threads):
                mine, theirs = self.threads.get(tid), disk.get(tid)
                if mine is None or theirs is None:
                    written[tid] = (mine or theirs).to_value()  # type: ignore[union-attr]
                    continue
                # Our own numbers and read positions from both; in memory too (never reuse a number).
                mine.own = max((o for o in (mine.own, theirs.own) if o is not None), default=None)
                mine.read = max(mine.read, theirs.read)
                # What is written is whichever state got further; our in-memory state stays ours (a
                # follow must still show what it has not shown yet).
                ahead = theirs.pos > mine.pos and theirs.record == mine.record
                value = theirs.to_value() if ahead else mine.to_value()
                value.update({"own": list(mine.own) if mine.own else None, "read": mine.read})
                written[tid] = value
            atomic_write(self.path, seal_local(self._key, self.name, {"threads": written}))
