"""A team's documents: put (one file or a batch), get (the download pipeline), ls and history.

Every record the server returns is checked before use: signed by its author's device, judged by
the authority, and forming an unbroken version chain that extends the pinned one. Plaintext is
written only after the signature and the final tag verify (a temporary file, renamed on success).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from client.home import Pins
from client.keyring import Keyring
from client.session import Session
from client.view import Chains, View, check_doc_pin, check_listed_head, check_no_doc_hidden
from security.authority import POLICY
from vault.acts import ALLOWANCE, Act
from vault.chains import TeamState
from vault.envelope import FRAME, BodyDecryptor, DocWriter, Opened, Record, open_record
from vault.errors import (
    BatchFailed,
    ChainError,
    Conflict,
    CryptoError,
    IntegrityError,
    NotFound,
    PolicyDenied,
    RollbackDetected,
    ServerMismatch,
    VaultError,
)
from vault.fileio import Stage, prefetch, replace_durably, write_chunks
from vault.teamkeys import TeamKey
from vault.wire.schemas import Docs, Stored, Versions

Progress = Callable[[int], None]
PUT_CONCURRENCY = 16  # uploads in flight in one batch put
PIN_FLUSH = 64  # document pins saved at least this often during a batch put
# Worker threads for streaming crypto and file writes. Our own pool, not the loop's: on any exit
# (errors, Ctrl-C) we wait for submitted work on its concurrent futures before closing the file,
# which asyncio's wrappers do not allow once cancelled.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mvault-io")
DOWNLOAD_BATCH = 1 << 20  # bytes received before a batch goes to the decrypting thread


@dataclass
class DocVersion:
    record: Record
    opened: Opened | None  # None: a version under a key generation we never held (no-history teams)
    vid: str


def check_unique_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise VaultError(f"the document name {name!r} is given twice")
        seen.add(name)


class Documents:
    """The documents of the teams this member is in, for one command."""

    def __init__(self, session: Session, chains: Chains, keyring: Keyring) -> None:
        self.session = session
        self.chains = chains
        self.keyring = keyring
        # During a batch put: the pins read once, and the document pins not yet merged into the file.
        self._batch_pins: Pins | None = None
        self._batch_docs: dict[str, list[Any]] = {}
        self._batch_flushed = 0.0

    async def _versions(self, team: TeamState, doc: str) -> list[Record]:
        try:
            res = await self.session.api.get(f"/api/v1/teams/{team.team_id}/docs/{doc}", Versions)
        except NotFound:
            return self._check_doc_pin(team, doc, [])
        records = []
        for item in res.versions:
            try:
                records.append(Record.parse(item.record))
            except VaultError as e:
                raise IntegrityError(f"the server sent a malformed document record: {e}") from e
        view = await self.chains.view()
        parent: str | None = None
        for i, rec in enumerate(records):
            c = rec.core
            if (c.team, c.doc) != (team.team_id, doc):
                raise IntegrityError("the server sent a version of another document or team")
            if c.seq != i + 1 or c.parent != parent:
                raise IntegrityError("document versions are missing, reordered or do not chain")
            if i and (c.team_seq < records[i - 1].core.team_seq or c.gen < records[i - 1].core.gen):
                raise IntegrityError("a document version goes back to an older team state or key")
            if i and c.time < records[i - 1].core.time - ALLOWANCE:
                raise IntegrityError("a document version is dated before the version it follows")
            self._verify_author(view, team, rec)
            parent = rec.version_id
        return self._check_doc_pin(team, doc, records)

    def _verify_author(self, view: View, team: TeamState, rec: Record) -> None:
        author = view.members.get(rec.core.author)
        if author is None:
            raise IntegrityError("document version signed by an unknown member")
        try:
            device = author.device_at(rec.core.device, rec.core.time)
        except ChainError as e:
            raise IntegrityError("document version signed by a device that was not active then") from e
        rec.verify(device.sign_public)
        c = rec.core
        try:
            POLICY.judge(Act(c.author, c.device, c.time, "doc.write", team_seq=c.team_seq, gen=c.gen), view.org,
                         view.members, team)
        except (PolicyDenied, ChainError) as e:
            raise IntegrityError(f"document version refused: {e}") from e

    def _check_doc_pin(self, team: TeamState, doc: str, records: list[Record]) -> list[Record]:
        pins = self._batch_pins if self._batch_pins is not None else self.session.home.pins()
        key = f"{team.team_id}/{doc}"
        if check_doc_pin(pins, key, records):
            if self._batch_pins is None:
                self.session.home.save_pins(pins)
            else:
                self._batch_docs[key] = pins.docs[key]
                if len(self._batch_docs) >= PIN_FLUSH or time.monotonic() - self._batch_flushed >= 1.0:
                    self._flush_batch_pins()
        return records

    @contextlib.contextmanager
    def _pin_batch(self) -> Iterator[None]:
        """Document pins of many puts kept in memory and merged into the file now and then and at
        the end (``_flush_batch_pins``), instead of the file being rewritten after every put."""
        if self._batch_pins is not None:
            raise VaultError("one batch put at a time per session")
        self._batch_pins, self._batch_docs, self._batch_flushed = self.session.home.pins(), {}, time.monotonic()
        try:
            yield
        finally:
            self._flush_batch_pins()
            self._batch_pins = None

    def _flush_batch_pins(self) -> None:
        """Merge the batch's new document pins into the file (re-read: the furthest version of
        each document wins, so pins others saved meanwhile stay). Also done every second or
        PIN_FLUSH versions during a batch, so a killed batch leaves its acknowledged versions pinned."""
        batch, self._batch_docs, self._batch_flushed = self._batch_docs, {}, time.monotonic()
        if not batch:
            return
        pins = self.session.home.pins()
        for key, value in batch.items():
            old = pins.docs.get(key)
            if old is None or int(old[0]) < int(value[0]):
                pins.docs[key] = value
        self.session.home.save_pins(pins)

    async def find_doc(self, team: TeamState, name: str) -> tuple[str, list[Record]]:
        """The document id for a name (the team's name key, the same in every generation)."""
        keys = await self.keyring.keys_for(team)
        doc = keys[0].doc_id(name)
        return doc, await self._versions(team, doc)

    def _open(self, rec: Record, keys: list[TeamKey]) -> Opened:
        for key in keys:
            if key.gen == rec.core.gen:
                return open_record(rec, key)
        raise PolicyDenied(f"you hold no key for generation {rec.core.gen} of this team")

    async def put(self, team_name: str, path: Path, name: str | None = None,
                  progress: Progress | None = None) -> tuple[int, str]:
        [(_, seq, vid)] = await self.put_many(team_name, [(path, name or path.name)], progress)
        return seq, vid

    async def put_many(self, team_name: str, items: list[tuple[Path, str]], progress: Progress | None = None,
                       concurrency: int = PUT_CONCURRENCY) -> list[tuple[str, int, str]]:
        """Encrypt and upload files as new documents or versions: (name, version, vid) for each.

        One view of the team and one listing for the whole batch; up to ``concurrency`` uploads in
        flight. Every file is still its own signed version, checked against the pins like a single
        put. If some fail, the others are still stored, and a ``BatchFailed`` names both sides.
        """
        check_unique_names([name for _, name in items])
        view = await self.chains.view()
        team = view.team_by_name(team_name)
        s = self.session
        if not POLICY.entitled(Act(s.me, s.device.device_id, s.now(), "doc.write"), view.org, view.members, team):
            raise PolicyDenied(f"you may not write documents in team {team.name}")
        if team.rotation_reasons(s.now(), view.members, view.org):
            raise Conflict(f"team {team.name} needs a key rotation first and you could not do it")
        keys = await self.keyring.keys_for(team)
        current = await self.keyring.team_key(team, team.generation)
        with self._pin_batch():
            return await self._put_all(team, keys, current, items, progress, concurrency)

    async def _put_all(self, team: TeamState, keys: list[TeamKey], current: TeamKey, items: list[tuple[Path, str]],
                       progress: Progress | None, concurrency: int) -> list[tuple[str, int, str]]:
        assert self._batch_pins is not None
        known: set[str] = set(self._batch_pins.docs)
        if len(items) > 1:  # which names exist already: one listing instead of a request per file
            res = await self.session.api.get(f"/api/v1/teams/{team.team_id}/docs", Docs)
            for item in res.docs:
                try:
                    known.add(f"{team.team_id}/{Record.parse(item.record).core.doc}")
                except VaultError as e:
                    raise IntegrityError(f"the server listed a malformed document record: {e}") from e
        gate = asyncio.Semaphore(concurrency)
        alarm: list[VaultError] = []  # a server caught lying: no more uploads to it in this batch

        async def one(path: Path, name: str) -> tuple[str, int, str]:
            async with gate:
                if alarm:
                    raise VaultError("not attempted after the error above")
                doc = keys[0].doc_id(name)
                try:
                    records = await self._versions(team, doc) if len(items) == 1 or f"{team.team_id}/{doc}" in known \
                        else []
                    return await self._put_version(team, current, doc, records, path, name, progress)
                except (RollbackDetected, CryptoError, ServerMismatch) as e:
                    alarm.append(e)
                    raise

        results = await asyncio.gather(*(one(path, name) for path, name in items), return_exceptions=True)
        failed = [(name, r) for (_, name), r in zip(items, results, strict=True) if isinstance(r, BaseException)]
        stored = [r for r in results if not isinstance(r, BaseException)]
        if alarm and len(items) > 1:  # the security error itself, with its own code, not a batch failure
            raise type(alarm[0])(f"{alarm[0]} ({len(stored)} of {len(items)} files were stored before it)")
        if failed:
            if len(items) == 1:
                raise failed[0][1]
            raise BatchFailed(stored, failed)
        return stored

    async def _put_version(self, team: TeamState, current: TeamKey, doc: str, records: list[Record], path: Path,
                           name: str, progress: Progress | None) -> tuple[str, int, str]:
        parent = records[-1].version_id if records else None
        # Opened before the request: a file we cannot read is its own error, not a broken upload.
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            s = self.session
            writer = DocWriter(key=current, team_seq=team.seq, device=s.device, author=s.me, doc=doc,
                               seq=len(records) + 1, parent=parent, time=s.now(), name=name, size=st.st_size,
                               mime="application/octet-stream", mtime=int(st.st_mtime))
            res = await s.api.upload(f"/api/v1/teams/{team.team_id}/docs/{doc}",
                                        _encrypting_stream(writer, f, progress), Stored)
        assert writer.record is not None
        if res.vid != writer.record.version_id:
            raise IntegrityError("the server acknowledged a different version than we sent")
        self._check_doc_pin(team, doc, [*records, writer.record])
        return name, len(records) + 1, res.vid

    async def ls(self, team_name: str) -> list[DocVersion]:
        view = await self.chains.view()
        team = view.team_by_name(team_name)
        keys = await self.keyring.keys_for(team)
        res = await self.session.api.get(f"/api/v1/teams/{team.team_id}/docs", Docs)
        pins = self.session.home.pins()
        out = []
        for item in res.docs:
            rec = Record.parse(item.record)
            if rec.core.team != team.team_id:
                raise IntegrityError("the server listed a document of another team")
            self._verify_author(view, team, rec)
            check_listed_head(pins, f"{team.team_id}/{rec.core.doc}", rec)
            try:
                opened: Opened | None = self._open(rec, keys)
            except PolicyDenied:
                opened = None
            out.append(DocVersion(rec, opened, rec.version_id))
        listed = {f"{team.team_id}/{d.record.core.doc}" for d in out}
        check_no_doc_hidden(pins, team.team_id, listed)
        out.sort(key=lambda d: d.opened.name if d.opened else "\uffff" + d.vid)
        return out

    async def history(self, team_name: str, name: str) -> list[DocVersion]:
        view = await self.chains.view()
        team = view.team_by_name(team_name)
        _, records = await self.find_doc(team, name)
        if not records:
            raise NotFound(f"no document named {name!r} in team {team.name}")
        keys = await self.keyring.keys_for(team)
        return [DocVersion(r, self._open(r, keys), r.version_id) for r in records]

    async def get(self, team_name: str, name: str, out: Path, version: int | None = None,
                  progress: Progress | None = None) -> DocVersion:
        view = await self.chains.view()
        team = view.team_by_name(team_name)
        _, records = await self.find_doc(team, name)
        if not records:
            raise NotFound(f"no document named {name!r} in team {team.name}")
        if version is not None and not 1 <= version <= len(records):
            raise NotFound(f"{name!r} has versions 1..{len(records)}, not {version}")
        rec = records[(version or len(records)) - 1]
        opened = self._open(rec, await self.keyring.keys_for(team))
        if opened.name != name:
            raise IntegrityError("the document's encrypted name does not match the requested name")
        await self._download(team, rec, opened, out, progress)
        return DocVersion(rec, opened, rec.version_id)

    async def _download(self, team: TeamState, rec: Record, opened: Opened, out: Path,
                        progress: Progress | None) -> None:
        out = out.resolve()
        if out.is_dir():
            raise VaultError(f"{out} is a directory; give a file name with -o")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".mvault-part", dir=out.parent)
        tmp = Path(tmp_name)
        dec = BodyDecryptor(opened)
        ok = False

        def decrypt(chunks: list[bytes]) -> list[bytes]:
            return [piece for chunk in chunks for piece in dec.feed(chunk)]

        # A three-stage pipeline in constant memory: the event loop receives batch k+2 while one
        # worker thread decrypts batch k+1 (prefetch) and another writes batch k (the Stage); libsodium,
        # hashing and write() release the GIL. Each stage keeps its order: one call in flight per stage.
        writing: Stage[list[bytes]] = Stage(functools.partial(write_chunks, fd), _POOL)
        body = f"/api/v1/teams/{team.team_id}/versions/{rec.version_id}/body"
        try:
            batches = _batches(self.session.api.download(body), progress)
            async with contextlib.aclosing(prefetch(batches, decrypt, _POOL)) as decrypted:
                async for pieces in decrypted:
                    await writing.push(pieces)
            await writing.drain()
            dec.finish()
            os.fsync(fd)
            ok = True
        finally:
            try:  # interrupted (error, Ctrl-C): the workers finish with fd before it closes
                writing.settle()
            finally:
                os.close(fd)
                try:
                    if ok:
                        replace_durably(tmp, out)
                finally:
                    tmp.unlink(missing_ok=True)


async def _batches(chunks: AsyncIterator[bytes], progress: Progress | None) -> AsyncIterator[list[bytes]]:
    """The received body in batches of at least DOWNLOAD_BATCH bytes (the last one smaller), counted as it arrives."""
    batch: list[bytes] = []
    batched = 0
    async for chunk in chunks:
        batch.append(chunk)
        batched += len(chunk)
        if progress:
            progress(len(chunk))
        if batched >= DOWNLOAD_BATCH:
            yield batch
            batch, batched = [], 0
    if batch:
        yield batch


async def _ticks() -> AsyncIterator[None]:
    """An endless stream of turns for ``prefetch`` (the work itself says when the file ends)."""
    while True:
        yield None


async def _encrypting_stream(writer: DocWriter, f: BinaryIO, progress: Progress | None) -> AsyncIterator[bytes]:
    """The upload body. A worker thread reads and encrypts the next MiB while the event loop sends
    this one (at most two in memory); small files are done inline (a thread trip costs more)."""
    yield writer.upload_prefix()

    eof = False

    def next_piece(_: None = None) -> tuple[int, bytes]:
        nonlocal eof
        if eof:  # prefetch asks for one piece ahead: nothing is read after the end
            return 0, b""
        chunk = f.read(FRAME)
        eof = not chunk
        return len(chunk), writer.encrypt(chunk) if chunk else b""

    if writer.size < FRAME:
        n, data = next_piece()  # reads more than its size: a file that grew is refused
        if data:
            yield data
        if progress and n:
            progress(n)
    else:
        # Closed before finish() (and on any exit): never a worker reading a closed file or encrypting behind it.
        async with contextlib.aclosing(prefetch(_ticks(), next_piece, _POOL)) as pieces:
            async for n, data in pieces:
                if not n:
                    break
                yield data
                if progress:
                    progress(n)
    yield writer.finish()
