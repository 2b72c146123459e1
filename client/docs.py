"""A team's documents: put (one file or a batch), get, ls and history.

Every record the server returns is checked before use: signed by its author's device, judged by
the authority, and forming an unbroken version chain that extends the pinned one. Plaintext is
written only after the signature and the final tag verify (client/download.py), and never over an
existing file unless asked. Every upload names its parent: the version its file came from, as the
local copies index (client/localcopies.py) remembers it; a file based on an older version than the
newest is a conflict, not a silent overwrite of someone else's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from client import download, downloadbatch
from client.docpins import deletion_ahead, pinned_deletions, save_merged
from client.docplaces import check_unique_names, deleted_error, inside, outside_home, would_overwrite
from client.home import Pins
from client.keyring import Keyring
from client.localcopies import Entry, LocalCopies, copy_of
from client.putbase import Base
from client.review import review_for
from client.savepace import SavePace
from client.saver import Saver, take
from client.session import Session
from client.upload import encrypting_stream
from client.uploadbatch import BATCH_ITEMS, IN_FLIGHT, SMALL, UploadBatcher, envelope_of, size_of
from client.view import Chains, View, check_doc_pin, check_listed_head, check_listed_version, check_no_doc_hidden
from security.authority import POLICY, paused_note
from vault.acts import ALLOWANCE, Act, doc_act
from vault.chains import TeamState
from vault.encoding import Value
from vault.envelope import DELETE, PUT, DocWriter, Opened, Record, open_record
from vault.errors import (
    BadName,
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
from vault.localindex import LocalCopy, content_hasher
from vault.names import check_name
from vault.review import REVIEW_KEY, review_month
from vault.syncindex import Seen, head_digest
from vault.teamkeys import TeamKey
from vault.wire.schemas import Docs, Stored, Versions

Progress = Callable[[int], None]
PUT_CONCURRENCY = 16  # uploads in flight in one batch put
GET_CONCURRENCY = 64  # fetches in flight in one folder get
PIN_FLUSH = 64  # document pins saved at least this often during a batch put (or every second)


@dataclass
class DocVersion:
    record: Record
    opened: Opened | None  # None: a version under a key generation we never held (no-history teams), or ``known``
    vid: str
    known: bool = False  # a head ``ls`` was told this client checked before: not verified or opened again


@dataclass
class Fetched:
    doc: DocVersion
    path: Path | None  # where it is (absolute); None: written to standard output
    written: bool  # False: the file already held exactly this version


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
        # The local copies entries of a batch: saved at each flush of the pins while cheap, less often once not.
        self._copies_pace = SavePace(0.0)
        self._copies: LocalCopies | None = None
        self._batch_copies: list[Entry] = []  # index entries of a batch put not yet saved
        # Heads that are a document's first version, as the team's last ``ls`` checked them: its whole history.
        self._listed_first: dict[tuple[str, str], Record] = {}
        self._first_opened: dict[bytes, Opened] = {}  # their metadata as it opened them, by record bytes
        self._batcher: UploadBatcher | None = None  # during a batch put of many files: small ones go in batches
        self._bodies: dict[str, downloadbatch.BodyBatcher] | None = None  # by team, during a fetch batch
        self._unsynced: set[Path] | None = None  # in a fetch batch: directories to fsync (``take_unsynced``)
        self._home_real: Path | None = None
        self.sent: dict[str, bytes] = {}  # vid -> SHA-256 of the record this command signed and stored under it
        self.saver = Saver()  # a batch's saves of the pins and local copies, in order (client/saver.py)

    @property
    def copies(self) -> LocalCopies:
        """The local copies index of this home (opened when a command first needs it)."""
        if self._copies is None:
            self._copies = LocalCopies(self.session.home.path, self.session.device)
        return self._copies

    async def _versions(self, team: TeamState, doc: str) -> list[Record]:
        return self._check_doc_pin(team, doc, await self._chain(team, doc))

    async def _chain(self, team: TeamState, doc: str) -> list[Record]:
        """Every version of ``doc``, each checked (signed, judged) and chained; not yet held against the pins."""
        try:
            res = await self.session.api.get(f"/api/v1/teams/{team.team_id}/docs/{doc}", Versions)
        except NotFound:  # a server before session 18 answered 404 for a document with no version
            return []
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
        return records

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
            POLICY.judge(Act(c.author, c.device, c.time, doc_act(c.op), team_seq=c.team_seq, gen=c.gen), view.org,
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
        self._copies_pace = SavePace(0.0)
        try:
            yield
        finally:
            self._flush_batch_pins(final=True)
            self._batch_pins = self._bodies = self._unsynced = None

    def _flush_batch_pins(self, final: bool = False) -> None:
        """Merge the batch's new document pins into the file (re-read: the furthest version of
        each document wins, so pins others saved meanwhile stay). Also done every second or
        PIN_FLUSH versions during a batch, so a killed batch leaves its acknowledged versions pinned.
        The local copies index entries of the stored files follow (never ahead of the pins): with them
        while that index is small, then less often (``SavePace``: a big index costs more to seal than the
        pins; entries a killed batch did not save are made up by the next sync pass, docs/sync.md).
        A batch's saves (a put's or a fetch's) are made by ``saver``'s thread, in order, off the event loop
        (client/saver.py): what they write is taken here; the last flush waits for all of them."""
        batch, self._batch_docs, self._batch_flushed = self._batch_docs, {}, time.monotonic()
        home, store, pace = self.session.home, self.copies, self._copies_pace
        copies: list[Entry] | None = None
        if final or (pace.due() and not self.saver.busy("copies")):
            copies, self._batch_copies = self._batch_copies, []

        def save() -> None:
            if copies is None:
                save_merged(home, batch)
                return
            with pace.saving():
                save_merged(home, batch)
                store.save(copies)

        self.saver.submit_placed(self.take_unsynced(), save, "pins" if copies is None else "copies")  # folders first
        if final:
            self.saver.wait()

    async def find_doc(self, team: TeamState, name: str) -> tuple[str, list[Record]]:
        """The document id for a name (the team's name key, the same in every generation)."""
        keys = await self.keyring.keys_for(team)
        doc = keys[0].doc_id(name)
        return doc, await self._versions(team, doc)

    async def versions(self, team: TeamState, doc: str) -> list[Record]:
        """Every version of document ``doc`` (an id), checked and pinned as for any command."""
        return await self._versions(team, doc)

    def open_version(self, rec: Record, keys: list[TeamKey]) -> Opened:
        """A checked version's metadata, opened with the team key of its generation."""
        return self._open(rec, keys)

    def _open(self, rec: Record, keys: list[TeamKey]) -> Opened:
        if (opened := self._first_opened.pop(rec.raw, None)) is not None:  # these very bytes, opened by ``heads``
            return opened
        for key in keys:
            if key.gen == rec.core.gen:
                return open_record(rec, key)
        raise PolicyDenied(f"you hold no key for generation {rec.core.gen} of this team")

    async def put(self, team_name: str, path: Path, name: str | None = None,
                  progress: Progress | None = None) -> tuple[int, str]:
        [(_, seq, vid)] = await self.put_many(team_name, [(path, name or path.name)], progress)
        return seq, vid

    async def put_many(self, team_name: str, items: list[tuple[Path, str]], progress: Progress | None = None,
                       concurrency: int = PUT_CONCURRENCY, base: Base | None = None,
                       review_by: date | None = None) -> list[tuple[str, int, str]]:
        """Encrypt and upload files as new documents or versions: (name, version, vid) for each.

        One view of the team and one listing for the whole batch; up to ``concurrency`` uploads in
        flight. Every file is still its own signed version, checked against the pins like a single
        put, and on top of the version it is based on (``Base``). If some fail, the others are still
        stored, and a ``BatchFailed`` names both sides. Each carries a review-by date (``client/review.py``).
        """
        for _, name in items:
            check_name(name)
        check_unique_names([name for _, name in items])
        view, team, keys, current = await self._writable(team_name)
        with self._pin_batch():
            review = review_for(team.kind, review_by, self.session.now())
            return await self._put_all(view, team, keys, current, items, progress, concurrency, base or Base(), review)

    async def _writable(self, team_name: str) -> tuple[View, TeamState, list[TeamKey], TeamKey]:
        """The view, the team (refused unless this device may write in it now), its keys and the current one."""
        view = await self.chains.view()
        team = view.team_by_name(team_name)
        s = self.session
        if not POLICY.entitled(Act(s.me, s.device.device_id, s.now(), "doc.write"), view.org, view.members, team):
            raise PolicyDenied(f"you may not write documents in team {team.name}"
                               f"{paused_note(view.org, s.me, team, s.now())}")
        if team.rotation_reasons(s.now(), view.members, view.org):
            raise Conflict(f"team {team.name} needs a key rotation first and you could not do it")
        return view, team, await self.keyring.keys_for(team), await self.keyring.team_key(team, team.generation)

    async def write_op(self, team_name: str, name: str, op: str, *, source: Path | None = None,
                       extra: dict[str, Value] | None = None, base: Base | None = None, local: Path | None = None,
                       progress: Progress | None = None, index: bool = True) -> tuple[int, str]:
        """Store one version of ``name`` that does ``op`` (vault.envelope ``OPS``): its content read from
        ``source`` (None: empty, as a deletion has), ``extra`` in its metadata (``moved_to``, ``moved_from``,
        ``restored_from``, ``conflict_of``), on top of the head as ``base`` allows (``Base.check``; with no
        ``local`` file there is no index entry to compare, so a plain ``Base()`` goes on top of the head).
        ``local``: the path whose local copies index entry becomes this version (default ``source``; none for
        a deletion; none either without ``index``: ``source`` is a temporary copy). Returns (version number, vid)."""
        check_name(name)
        view, team, keys, current = await self._writable(team_name)
        doc = keys[0].doc_id(name)
        where = local if local is not None else source
        place = str(where.resolve()) if where is not None and op != DELETE and index else None
        with self._pin_batch():
            records = await self._versions(team, doc)
            copy = self.copies.load().copy(team.team_id, doc, place) if place is not None else None
            (base or Base()).check(view, team, name, records, copy)
            _, seq, vid = await self._put_version(team, current, doc, records, source or Path(os.devnull), place, name,
                                                  progress, op=op, extra=extra)
        return seq, vid

    async def _put_all(self, view: View, team: TeamState, keys: list[TeamKey], current: TeamKey,
                       items: list[tuple[Path, str]], progress: Progress | None, concurrency: int,
                       base: Base, review: date | None = None) -> list[tuple[str, int, str]]:
        assert self._batch_pins is not None
        known: set[str] = set(self._batch_pins.docs)
        index = self.copies.load()
        if len(items) > 1:  # which names exist already: one listing instead of a request per file
            res = await self.session.api.get(f"/api/v1/teams/{team.team_id}/docs", Docs)
            for item in res.docs:
                try:
                    known.add(f"{team.team_id}/{Record.parse(item.record).core.doc}")
                except VaultError as e:
                    raise IntegrityError(f"the server listed a malformed document record: {e}") from e
        gate, small_gate = asyncio.Semaphore(concurrency), asyncio.Semaphore(IN_FLIGHT * BATCH_ITEMS)
        alarm: list[VaultError] = []  # a server caught lying: no more uploads to it in this batch
        self._batcher = UploadBatcher(self.session.api, team.team_id) if len(items) > 1 else None

        async def one(path: Path, name: str) -> tuple[str, int, str]:
            async with small_gate if self._batcher is not None and size_of(path) < SMALL else gate:
                if alarm:
                    raise VaultError("not attempted after the error above")
                doc = keys[0].doc_id(name)
                local = str(path.resolve())
                try:
                    listed = len(items) == 1 or f"{team.team_id}/{doc}" in known
                    records = await self._versions(team, doc) if listed else []
                    base.check(view, team, name, records, index.copy(team.team_id, doc, local))
                    return await self._put_version(team, current, doc, records, path, local, name, progress,
                                                   review=review)
                except (RollbackDetected, CryptoError, ServerMismatch) as e:
                    alarm.append(e)
                    raise

        try:
            results = await asyncio.gather(*(one(path, name) for path, name in items), return_exceptions=True)
        finally:
            self._batcher = None
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
                           local: str | None, name: str, progress: Progress | None, op: str = PUT,
                           extra: dict[str, Value] | None = None, review: date | None = None) -> tuple[str, int, str]:
        parent = records[-1].version_id if records else None  # the base, which Base.check found is the head
        if review is not None:  # the date sealed in the metadata; only its month to the server (vault/review.py)
            extra = {**(extra or {}), REVIEW_KEY: review.isoformat()}
        hasher = content_hasher()
        # Opened before the request: a file we cannot read is its own error, not a broken upload.
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            s = self.session
            writer = DocWriter(key=current, team_seq=team.seq, device=s.device, author=s.me, doc=doc,
                               seq=len(records) + 1, parent=parent, time=s.now(), name=name, size=st.st_size,
                               mime="application/octet-stream", mtime=int(st.st_mtime), op=op, extra_meta=extra)
            month = "" if review is None else f"?review={review_month(review)}"
            if self._batcher is not None and st.st_size < SMALL and review is None:  # among others in one request
                res = await self._batcher.put(await envelope_of(encrypting_stream(writer, f, progress, hasher)))
            else:  # a review month travels in the query, which a batch item has no place for
                res = await s.api.upload(f"/api/v1/teams/{team.team_id}/docs/{doc}{month}",
                                         encrypting_stream(writer, f, progress, hasher), Stored,
                                         length=writer.upload_length())
        assert writer.record is not None
        if res.vid != writer.record.version_id:
            raise IntegrityError("the server acknowledged a different version than we sent")
        self.sent[res.vid] = head_digest(writer.record.raw)  # a synced folder's index entry takes it (``raw``)
        seq = len(records) + 1
        self._check_doc_pin(team, doc, [*records, writer.record])
        if local is not None:
            self._batch_copies.append((team.team_id, doc, local, LocalCopy(res.vid, seq, hasher.digest(), st.st_size,
                                                                          st.st_mtime_ns, st.st_ino)))
        return name, seq, res.vid

    async def ls(self, team_name: str, deleted: bool | None = False,
                 known: Container[str] = ()) -> list[DocVersion]:
        return (await self.heads(team_name, deleted, known))[0]

    async def heads(self, team_name: str, deleted: bool | None = False, known: Container[str] = (),
                    seen: Mapping[bytes, Seen] | None = None) -> tuple[list[DocVersion], list[Seen]]:
        """The head of every document of the team, checked (signed, judged, not behind its pin, none withheld),
        a deletion past its pin pinned once its chain checks (``client.docpins``); then those whose head is a signed
        deletion left out (``deleted`` False), or only those (True), or all (None). ``known``: version ids this
        client verified and opened before (a synced folder's sealed index): such a head is parsed and held against
        the pins like any other, but not verified or opened again (``known`` True, ``opened`` None; the caller
        takes what it recorded about that version). ``seen``: heads by the ``head_digest`` of their record, as a
        synced folder's index recorded them: a record listed with such a digest is that very record, held against
        the pins and the withheld check but not parsed (second list)."""
        view = await self.chains.view()
        team = view.team_by_name(team_name)
        keys = await self.keyring.keys_for(team)
        res = await self.session.api.get(f"/api/v1/teams/{team.team_id}/docs", Docs)
        pins = self.session.home.pins()
        out, same = [], []
        listed = set()
        ahead: list[Record] = []  # verified deletion heads past their pins: pinned once their chains check
        self._listed_first = {k: v for k, v in self._listed_first.items() if k[0] != team.team_id}
        for item in res.docs:
            hit = seen.get(head_digest(item.record)) if seen else None
            if hit is not None:
                listed.add(f"{team.team_id}/{hit.doc}")
                check_listed_version(pins, f"{team.team_id}/{hit.doc}", hit.seq, hit.vid)
                same.append(hit)
                continue
            rec = Record.parse(item.record)
            key = f"{team.team_id}/{rec.core.doc}"
            listed.add(key)
            if rec.core.team != team.team_id:
                raise IntegrityError("the server listed a document of another team")
            if rec.version_id in known:
                check_listed_head(pins, key, rec)
                out.append(DocVersion(rec, None, rec.version_id, known=True))
                continue
            self._verify_author(view, team, rec)
            check_listed_head(pins, key, rec)
            if deletion_ahead(pins, key, rec):
                ahead.append(rec)
            try:
                opened: Opened | None = self._open(rec, keys)
            except PolicyDenied:
                opened = None
            if rec.core.seq == 1 and rec.core.parent is None:
                self._listed_first[(team.team_id, rec.core.doc)] = rec
                if opened is not None:
                    self._first_opened[rec.raw] = opened
            out.append(DocVersion(rec, opened, rec.version_id))
        check_no_doc_hidden(pins, team.team_id, listed)
        new = await pinned_deletions(pins, team.team_id, ahead, lambda doc: self._chain(team, doc))
        save_merged(self.session.home, new)
        if deleted is not None:
            out = [d for d in out if (d.record.core.op == DELETE) == deleted]
            same = same if not deleted else []
        out.sort(key=lambda d: d.opened.name if d.opened else "\uffff" + d.vid)
        return out, same

    async def history(self, team_name: str, name: str) -> list[DocVersion]:
        view = await self.chains.view()
        team = view.team_by_name(team_name)
        _, records = await self.find_doc(team, name)
        if not records:
            raise NotFound(f"no document named {name!r} in team {team.name}")
        keys = await self.keyring.keys_for(team)
        return [DocVersion(r, self._open(r, keys), r.version_id) for r in records]

    async def get(self, team_name: str, name: str, out: Path | None, version: int | None = None,
                  progress: Progress | None = None, force: bool = False, make_folders: bool = False) -> Fetched:
        """Fetch one version (the newest by default) into ``out`` (None: standard output; ``make_folders``:
        make the folders on its way). An existing file is replaced only with ``force``; if it already holds
        exactly that version, nothing is done."""
        view = await self.chains.view()
        team = view.team_by_name(team_name)
        d, opened = await self._version(team, name, version)
        if out is None:
            await download.to_stdout(self.session.api, d.record, opened, progress)
            return Fetched(d, None, True)
        if make_folders:
            out.parent.mkdir(parents=True, exist_ok=True)
        target = out.resolve()
        written = await self._fetch_into(team, d, opened, target, progress, force)
        self.copies.save(self._batch_copies)
        self._batch_copies = []
        return Fetched(d, target, written)

    async def get_folder(self, team_name: str, prefix: str, folder: Path, progress: Progress | None = None,
                         force: bool = False, hidden: bool = False,
                         ) -> tuple[list[Fetched], list[tuple[str, BaseException]]]:
        """Every document whose name starts with ``prefix`` (``""``: all), newest version, into ``folder``/NAME
        (folders made as needed), each as ``get`` would. A name that is not a valid document name, or would land
        outside ``folder`` however it resolves, is reported among the failures, after the rest were fetched.
        Hidden names (a part starting with ``.``: ``.ssh/authorized_keys``) are not written unless ``hidden``
        (review round 5: start-up files planted in a folder that is often the home); nothing goes into this home."""
        view = await self.chains.view()
        team = view.team_by_name(team_name)
        root = folder.resolve()
        names = sorted(d.opened.name for d in await self.ls(team_name)
                       if d.opened is not None and d.opened.name.startswith(prefix))
        if not names:
            raise NotFound(f"no document under {prefix!r} in team {team.name}")
        done: list[Fetched] = []
        failed: list[tuple[str, BaseException]] = []
        gate, big = asyncio.Semaphore(GET_CONCURRENCY), asyncio.Semaphore(2)  # small ones share batch downloads

        async def one(name: str) -> None:
            async with gate:
                try:
                    check_name(name)
                    if not hidden and any(part.startswith(".") for part in name.split("/")):
                        raise BadName(f"{name!r} is a hidden name (a part starts with '.'): a folder get writes "
                                      "it only with --hidden (or get it by name)")
                    target = self._outside_home(inside(root, name))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target = inside(root, name)  # again: a folder on the way may be a link made meanwhile
                    d, opened = await self._version(team, name, None, await self._first_listed(team, name))
                    async with big if d.record.core.body_len >= downloadbatch.SMALL else contextlib.nullcontext():
                        done.append(Fetched(d, target, await self._fetch_into(team, d, opened, target, progress,
                                                                              force)))
                except (VaultError, OSError) as e:
                    if isinstance(e, (RollbackDetected, CryptoError, ServerMismatch)):
                        raise  # a lying server: stop, not one more file from it
                    failed.append((name, e))
        try:  # pins and local copies entries saved together (and whatever a failure leaves, as it stops)
            with self.fetch_batch():
                async with asyncio.TaskGroup() as tasks:
                    for name in names:
                        tasks.create_task(one(name))
        except ExceptionGroup as group:
            raise group.exceptions[0] from None
        return sorted(done, key=lambda f: str(f.path)), sorted(failed, key=lambda f: f[0])

    async def fetch_newest(self, team: TeamState, name: str, out: Path, progress: Progress | None = None,
                           force: bool = False, expect: tuple[int, int, int] | None = None, placed: bool = False,
                           ) -> tuple[Fetched, LocalCopy | None]:
        """The newest version of ``name`` into ``out`` (absolute) as ``get`` fetches it (for the sync engine):
        what was fetched, and the local copies entry now recorded for ``out`` (None: the newest version is a
        deletion, and nothing was written). ``expect``: replace the file at ``out`` only if it still has this
        (size, mtime_ns, inode) once the download verified (else ``WouldOverwrite``: it was saved meanwhile).
        ``placed``: a sync pass just checked ``out`` (``SyncRun._local``): not resolved again for the home's sake."""
        d, opened = await self._version(team, name, None, await self._first_listed(team, name))
        if opened.deleted:
            return Fetched(d, None, False), None
        written = await self._fetch_into(team, d, opened, out, progress, force or expect is not None, expect, placed)
        ours = next((e[3] for e in reversed(self._batch_copies) if e[2] == str(out)), None)
        if self._batch_pins is None:
            self.copies.save(self._batch_copies)
            self._batch_copies = []
        # none recorded: the file was known to hold this version, and its entry stands
        copy = ours if ours is not None else self.copies.load().copy(team.team_id, d.record.core.doc, str(out))
        return Fetched(d, out, written), copy

    @contextlib.contextmanager
    def fetch_batch(self) -> Iterator[None]:
        """Many fetches (no upload among them): pins and local copies entries saved together every second and at the
        end, as a batch put saves them, not after each file; small bodies in batch downloads (client/downloadbatch)."""
        self._bodies, self._unsynced = {}, set()
        with self._pin_batch():  # which ends the batch downloads too (its last flush settles the new names)
            yield

    def take_unsynced(self) -> set[Path]:
        """The folders this fetch batch placed new names in so far, to fsync before anything that records those files
        is saved (local copies, a folder's index): a crash may lose new names, never leave an entry for a name not
        there (``saver.submit_placed``)."""
        return take(self._unsynced)

    def _outside_home(self, out: Path, placed: bool = False) -> Path:
        if self._home_real is None:  # the home's own path resolved once a command (it is ours, not a document's)
            self._home_real = self.session.home.path.resolve()
        return out if placed else outside_home(self._home_real, out)

    async def _first_listed(self, team: TeamState, name: str) -> list[Record] | None:
        """``name``'s history without a request: its first version if the team's last ``ls`` checked it as its head
        and this home pinned no other version of it (pinned as ``_versions`` pins); else None (ask). Used once."""
        doc = (await self.keyring.keys_for(team))[0].doc_id(name)
        rec = self._listed_first.pop((team.team_id, doc), None)
        if rec is None or (rec.core.team, rec.core.doc, rec.core.seq, rec.core.parent) != (team.team_id, doc, 1, None):
            return None
        pins = self._batch_pins if self._batch_pins is not None else self.session.home.pins()
        pin = pins.docs.get(f"{team.team_id}/{doc}")
        if pin is not None and (int(pin[0]), str(pin[1])) != (1, rec.version_id):
            return None
        return self._check_doc_pin(team, doc, [rec])

    async def _version(self, team: TeamState, name: str, version: int | None,
                       records: list[Record] | None = None) -> tuple[DocVersion, Opened]:
        """Version ``version`` (default: the newest) of document ``name``, checked and opened; ``records``: its
        checked history if the caller has it (``_first_listed``), else it is asked for."""
        if records is None:
            _, records = await self.find_doc(team, name)
        if not records:
            raise NotFound(f"no document named {name!r} in team {team.name}")
        if version is not None and not 1 <= version <= len(records):
            raise NotFound(f"{name!r} has versions 1..{len(records)}, not {version}")
        rec = records[(version or len(records)) - 1]
        opened = self._open(rec, await self.keyring.keys_for(team))  # a deletion's metadata is checked too
        if rec.core.op == DELETE:
            raise deleted_error(await self.chains.view(), team, name, rec, version)
        if opened.name != name:
            raise IntegrityError("the document's encrypted name does not match the requested name")
        return DocVersion(rec, opened, rec.version_id), opened

    async def _fetch_into(self, team: TeamState, d: DocVersion, opened: Opened, out: Path, progress: Progress | None,
                          force: bool, expect: tuple[int, int, int] | None = None, placed: bool = False) -> bool:
        """``out`` (absolute) holds the version afterwards: False if it already did (nothing written).
        The index entry for ``out`` waits in ``_batch_copies`` for the caller to save."""
        rec = d.record
        self._outside_home(out, placed)
        exists = os.path.lexists(out)
        if exists and out.is_dir():  # nothing there by that name (the usual pull): no second look
            raise VaultError(f"{out} is a directory; give a file name with -o")
        if exists and not force:
            st = out.stat()
            if st.st_size != opened.size:
                raise would_overwrite(out, opened.name, rec)
            known = self.copies.load().copy(team.team_id, rec.core.doc, str(out))
            if known is not None and known.vid == rec.version_id and known.same_file(st.st_size, st.st_mtime_ns,
                                                                                     st.st_ino):
                return False  # written (or stored) from this very file, and untouched since
        digest, placed, placed_st = await downloadbatch.fetch_beside(
            self._bodies, self.session.api, rec, opened, out, progress, force, self._unsynced, expect, exists,
            lambda: would_overwrite(out, opened.name, rec))
        self._batch_copies.append((team.team_id, rec.core.doc, str(out), copy_of(out, rec.version_id, rec.core.seq,
                                                                                 digest, placed_st)))
        return placed
