"""The audit events the server owes, kept on disk in space reserved before the disk filled up.

When the audit log cannot take an event for want of space (``server/recorder.py``: the act was done, its
sealed event is owed), the event must survive a crash or a kill -9 before space comes back: otherwise the act
is in the store and never in the log. Writing it anywhere new needs the very space that is missing, so this
file (``DATA/.owed-audit.bin``) is written in full with zeros when the server opens the data directory, and
later writes only overwrite those bytes: on tmpfs and on ext4/XFS an overwrite of written blocks takes no new
space. (A copy-on-write file system, btrfs or ZFS, allocates on every write: there the reserve may fail too,
and the events are then kept in memory only, as before, with a warning.)

Two slots of ``SLOT`` bytes; each save writes the whole owed state (the sealed events with their day, and the
hashes of the chain links whose events they are) into the slot that does not hold the newest state, with a
higher generation and a SHA-256 over it, and fsyncs. A save torn by a crash leaves a slot whose hash does not
match: the other slot, the state before, is read. Clearing is saving the empty state.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from vault.encoding import Fields, decode, encode
from vault.errors import EncodingError
from vault.fileio import fsync_dir

NAME = ".owed-audit.bin"
SLOT = 512 * 1024
MAGIC = b"mvault/owed/v1\n\0"
_HEAD = struct.Struct(">16sQI32s")  # magic, generation, payload length, SHA-256 of generation || length || payload

Owed = list[tuple[bytes, int]]  # sealed events and their day, oldest first


@dataclass
class OwedJournal:
    path: Path
    generation: int = 0
    slot: int = 0  # the slot holding the newest state

    @classmethod
    def open(cls, data: Path) -> tuple[OwedJournal, Owed, list[bytes]]:
        """The journal of ``data`` (reserved if new) and the owed state it holds."""
        path = data / NAME
        if not path.exists() or path.stat().st_size < 2 * SLOT:
            tmp = data / f"{NAME}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_at(fd, bytes(2 * SLOT), 0)  # every byte written: later saves only overwrite them
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            fsync_dir(data)
        journal = cls(path)
        events, links = journal._read()
        return journal, events, links

    def save(self, events: Owed, links: list[bytes]) -> bool:
        """Make ``events`` and ``links`` the owed state on disk; False if it does not fit (kept in memory only).
        ``OSError`` if the file cannot be written."""
        payload = encode({"events": [{"leaf": leaf, "day": day} for leaf, day in events], "links": list(links)})
        if _HEAD.size + len(payload) > SLOT:
            return False
        generation, slot = self.generation + 1, 1 - self.slot
        fd = os.open(self.path, os.O_WRONLY)
        try:
            _write_at(fd, _HEAD.pack(MAGIC, generation, len(payload), _digest(generation, payload)) + payload,
                      slot * SLOT)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.generation, self.slot = generation, slot
        return True

    def _read(self) -> tuple[Owed, list[bytes]]:
        best: tuple[int, int, bytes] | None = None
        with self.path.open("rb") as f:
            for slot in (0, 1):
                f.seek(slot * SLOT)
                raw = f.read(SLOT)
                magic, generation, length, digest = _HEAD.unpack_from(raw)
                payload = raw[_HEAD.size:_HEAD.size + length]
                if magic != MAGIC or len(payload) != length or digest != _digest(generation, payload):
                    continue  # never written, or a save torn by a crash
                if best is None or generation > best[0]:
                    best = (generation, slot, payload)
        if best is None:
            return [], []
        self.generation, self.slot, payload = best
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
