"""The audit events the server owes, kept on disk in space reserved before the disk filled up.

When the audit log cannot take an event for want of space (``server/recorder.py``: the act was done, its
sealed event is owed), the event must survive a crash or a kill -9 before space comes back: otherwise the act
is in the store and never in the log. Writing it anywhere new needs the very space that is missing, so this
file (``DATA/.owed-audit.bin``, one per process: below) is written in full with zeros when the server opens the
data directory, and later writes only overwrite those bytes: on tmpfs and on ext4/XFS an overwrite of written
blocks takes no new space. (A copy-on-write file system, btrfs or ZFS, allocates on every write: there the reserve
may fail too, and the events are then kept in memory only, as before, with a warning.) It also holds the events
owed while the database is away (PostgreSQL: ``StorageUnavailable``).

One journal per server process (issue 19: ``run --workers N`` and several machines share ``DATA``): the first
process takes ``.owed-audit.bin``, the next ones ``.owed-audit.1.bin``, ``.owed-audit.2.bin`` and so on, each held
under an exclusive ``flock`` for the process's life (the kernel drops it when the process dies, kill -9 included),
so two processes never write one file (before, each overwrote the other's owed events). A process that starts
takes the first journal no living process holds and adopts the owed state of every other such journal (a dead
process's): it saves the whole in its own journal, then clears theirs; a crash in between leaves the events in
both, appended twice at the next start (an extra event, never a missing one, as for a crash during ``settle``).

Two slots of ``SLOT`` bytes; each save writes the whole owed state (the sealed events with their day, and the
hashes of the chain links whose events they are) into the slot that does not hold the newest state, with a
higher generation and a SHA-256 over it, and fsyncs. A save torn by a crash leaves a slot whose hash does not
match: the other slot, the state before, is read. Clearing is saving the empty state.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vault.encoding import Fields, decode, encode
from vault.errors import EncodingError
from vault.fileio import fsync_dir

STEM = ".owed-audit"
NAME = f"{STEM}.bin"  # the first process's; the others' are STEM.1.bin, STEM.2.bin, ...
SLOT = 512 * 1024
MAGIC = b"mvault/owed/v1\n\0"
_HEAD = struct.Struct(">16sQI32s")  # magic, generation, payload length, SHA-256 of generation || length || payload

Owed = list[tuple[bytes, int]]  # sealed events and their day, oldest first


@dataclass
class OwedJournal:
    path: Path
    fd: int  # open for writing, under this process's exclusive flock while it lives
    generation: int = 0
    slot: int = 0  # the slot holding the newest state

    @classmethod
    def open(cls, data: Path) -> tuple[OwedJournal, Owed, list[bytes]]:
        """This process's journal in ``data`` (the first no living process holds, reserved if new) and the owed
        state it holds, with that of every other journal no living process holds (adopted: saved in this one,
        then cleared there)."""
        own: OwedJournal | None = None
        adopted: list[OwedJournal] = []
        events: Owed = []
        links: list[bytes] = []
        try:
            for path in _paths(data):
                new = not path.exists()
                if new and own is not None:
                    break
                journal = cls._take(path)
                if journal is None:
                    continue  # a living process's
                its_events, its_links = journal._read()
                if own is None:
                    own = journal
                elif its_events or its_links:
                    adopted.append(journal)  # a stopped process's owed events
                else:
                    journal.close()
                events += its_events
                links += its_links
                if new:
                    break
            assert own is not None  # the last name tried was new: nobody held it
            if adopted:
                events.sort(key=lambda e: e[1])  # oldest day first; within a day, each process's order
                if own.save(events, links):  # else left where they are too: appended again later, never lost
                    for other in adopted:
                        other.save([], [])
        except BaseException:
            for journal in [*adopted, *([own] if own is not None else [])]:
                journal.close()
            raise
        for other in adopted:
            other.close()
        return own, events, links

    @classmethod
    def _take(cls, path: Path) -> OwedJournal | None:
        """The journal at ``path`` under this process's exclusive lock (created and reserved if new); None if a
        living process holds it."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        journal = cls(path, fd)
        try:
            if os.fstat(fd).st_size < 2 * SLOT:  # new, or its reserve was cut short by a crash: nothing saved yet
                _write_at(fd, bytes(2 * SLOT), 0)  # every byte written: later saves only overwrite them
                os.fsync(fd)
                fsync_dir(path.parent)
        except BaseException:
            journal.close()
            raise
        return journal

    def close(self) -> None:
        """Let the journal go (and its lock: another process may take it)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def save(self, events: Owed, links: list[bytes]) -> bool:
        """Make ``events`` and ``links`` the owed state on disk; False if it does not fit (kept in memory only).
        ``OSError`` if the file cannot be written."""
        payload = encode({"events": [{"leaf": leaf, "day": day} for leaf, day in events], "links": list(links)})
        if _HEAD.size + len(payload) > SLOT:
            return False
        generation, slot = self.generation + 1, 1 - self.slot
        _write_at(self.fd, _HEAD.pack(MAGIC, generation, len(payload), _digest(generation, payload)) + payload,
                  slot * SLOT)
        os.fsync(self.fd)
        self.generation, self.slot = generation, slot
        return True

    def _read(self) -> tuple[Owed, list[bytes]]:
        generation, slot, payload = _newest(os.pread(self.fd, 2 * SLOT, 0))
        self.generation, self.slot = generation, slot
        return _decoded(payload)


def owed_in(data: Path) -> tuple[Owed, list[bytes]]:
    """What every journal in ``data`` holds, read without taking any (for checks and tests)."""
    events: Owed = []
    links: list[bytes] = []
    for path in _paths(data):
        if not path.exists():
            break
        more_events, more_links = _decoded(_newest(path.read_bytes())[2])
        events += more_events
        links += more_links
    return events, links


def _paths(data: Path) -> Iterator[Path]:
    """The journals' names in order: ``.owed-audit.bin``, ``.owed-audit.1.bin``, ..., the first missing one last."""
    yield data / NAME
    n = 1
    while True:
        yield data / f"{STEM}.{n}.bin"
        n += 1


def _newest(raw: bytes) -> tuple[int, int, bytes]:
    """The valid slot of ``raw`` with the highest generation: (generation, slot, payload); (0, 0, b"") if none."""
    best = (0, 0, b"")
    for slot in (0, 1):
        part = raw[slot * SLOT:(slot + 1) * SLOT]
        if len(part) < _HEAD.size:
            continue
        magic, generation, length, digest = _HEAD.unpack_from(part)
        payload = part[_HEAD.size:_HEAD.size + length]
        if magic != MAGIC or len(payload) != length or digest != _digest(generation, payload):
            continue  # never written, or a save torn by a crash
        if generation > best[0]:
            best = (generation, slot, payload)
    return best


def _decoded(payload: bytes) -> tuple[Owed, list[bytes]]:
    if not payload:
        return [], []
    try:
        state = Fields(decode(payload), "owed audit events", {"events", "links"})
        events = [(e.bytes_("leaf", max_size=SLOT), e.int_("day", 0))
                  for e in (Fields(item, "owed event", {"leaf", "day"}) for item in state.list_("events", SLOT))]
        links = [link if isinstance(link, bytes) else b"" for link in state.list_("links", SLOT)]
    except EncodingError:
        return [], []  # a hash that matched over bytes this version did not write: nothing to trust
    return events, [link for link in links if link]


def _digest(generation: int, payload: bytes) -> bytes:
    return hashlib.sha256(struct.pack(">QI", generation, len(payload)) + payload).digest()


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
