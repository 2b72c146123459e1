"""One sync pass of a folder with a team: scan, one listing, reconcile (client/sync/plan.py), apply.

``sync_pass`` is the whole pass as one async function over an open session, so that a watch loop can
call it again and again. It holds the folder's lock for the pass, checks the listing against the index
before touching anything (a lie stops the pass: nothing changed here), then applies the actions one by
one with the existing ``Documents`` methods (uploads through ``write_op``, downloads through the
verified temporary-file-then-rename path of ``_fetch_into``), saving the index as it goes. Whatever a
kill leaves undone, the next pass finishes: a file whose version is already stored is recognised by
comparing content while pulling (never a second version, never a conflict with itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from client import download
from client.checkpoints import protocols_of
from client.client import Client
from client.docplaces import checked_local, root_id
from client.docs import PUT_CONCURRENCY, Fetched
from client.downloadbatch import BATCH_ITEMS, SMALL
from client.putbase import Base
from client.sanitize import escape
from client.savepace import SavePace
from client.sync import plan
from client.sync.folders import SyncFolders, catch_up
from client.sync.ignore import rules
from client.sync.remote import remote_heads
from client.sync.renames import rename_here
from client.sync.scan import LocalFile, scan
from security.authority import POLICY
from vault.acts import Act
from vault.chains import TeamState
from vault.envelope import CONFLICT, DELETE, MOVE, PUT
from vault.errors import (
    BadName,
    BatchFailed,
    Conflict,
    CryptoError,
    IntegrityError,
    NotFound,
    PolicyDenied,
    RollbackDetected,
    ServerMismatch,
    VaultError,
    WouldOverwrite,
)
from vault.fileio import signature
from vault.localindex import LocalCopy
from vault.syncindex import SyncEntry, SyncIndex, head_digest
from vault.teamkeys import TeamKey

Progress = Callable[[int], None]
PULL_CONCURRENCY = 8  # downloads in flight in one pass, and small ones (one batch download: client/downloadbatch.py):
SMALL_PULLS = 2 * BATCH_ITEMS
BIG_FILE = 16 * 1024 * 1024  # a transfer of this many bytes or more is "big": each holds its own buffers
BIG_IN_FLIGHT = 2  # big uploads, and big downloads, in flight in one pass (peak memory: 8 at once reached 224 MiB)
SAVE_EVERY = 0.5  # seconds between index saves during a pass while they are cheap (SavePace), and at its end
FAILED = "failed"  # an action that could not be done (the reason in its detail)
KEEP_WHEN_GONE = (plan.DELETE_REMOTE, plan.REFUSED, plan.FORGET, plan.SKIPPED, plan.NOT_PUSHED)
IN_STEP = "in-step"  # a pull that found the file already holding the version (a pass finishing a killed one)
SECURITY = (RollbackDetected, CryptoError, ServerMismatch)  # a lying server: the pass stops at once
CHANGED_WHILE_READ = "changed while it was uploaded: not stored, pushed again by the next pass"


@dataclass
class Outcome:
    """What one pass did: report rows ({"action", "name", "doc", "seq", "detail", ...}) and whether it is in step."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    trouble: int = 0  # conflicts, refusals, failures and changes not pushed
    refused: int = 0  # local deletions held back

    def add(self, action: str, name: str, doc: str | None = None, seq: int | None = None, detail: str = "",
            **more: Any) -> None:
        self.rows.append({"action": action, "name": name, "doc": doc, "seq": seq, "detail": detail, **more})
        if action in (plan.CONFLICT, plan.REFUSED, plan.NOT_PUSHED, FAILED):
            self.trouble += 1
        if action == plan.REFUSED:
            self.refused += 1


def _failure(a: plan.Action, error: BaseException, lf: LocalFile | None) -> str:
    """The detail of a failed action: an upload whose file changed since the scan (it grew while it was read,
    which stops the upload) says so, whatever error the transfer ended with."""
    uploading = a.kind in (plan.PUSH, plan.MOVE) and lf is not None
    if uploading and lf is not None and signature(lf.path) != (lf.size, lf.mtime_ns, lf.ino):
        return CHANGED_WHILE_READ
    return f"{a.kind}: {error}"


def _refused(a: plan.Action, error: Conflict) -> str:
    """The detail of a push the server refused (409) while the team's head was still the version it went on."""
    return f"{a.kind}: {error} (kept here as it is: the next pass pushes it again)"


class SyncRun:
    """Applying one pass's actions to one folder (built by ``sync_pass``)."""

    def __init__(self, c: Client, team: TeamState, keys: list[TeamKey], root: Path, index: SyncIndex,
                 folders: SyncFolders, me_name: str, may_write: bool, progress: Progress | None,
                 out: Outcome | None) -> None:
        self.c, self.team, self.keys, self.root, self.index, self.folders = c, team, keys, root, index, folders
        self.me_name, self.may_write, self.progress = me_name, may_write, progress
        self.out = Outcome() if out is None else out
        self.deferred: list[plan.Action] = []  # conflicts found while pulling, done once the pulls are
        self._pace = SavePace(SAVE_EVERY)
        self._root_id: tuple[int, int] | None = None  # the folder as its first local change found it (``_local``)

    def _local(self, name: str, pull: bool = False) -> Path:
        """DIR/``name``, refused if a link on the way (or the file itself) would lead anywhere else: every local
        change of a pass is made at the very path it scanned (``checked_local``; ``pull``: its folder made if need
        be)."""
        if self._root_id is None:
            self._root_id = root_id(self.root) or (-1, -1)
        return checked_local(self.root, self._root_id, name, make_folder=pull)

    def save(self, force: bool = False) -> None:
        """The folder's index as it is now, saved by the batch's saving thread (client/saver.py) after the saves handed
        over before it and once the folders of the new names it records are fsync'd; ``force``: now, and waited for."""
        saver = self.c.docs.saver
        if not (force or self._pace.due() and not saver.busy("index")):
            return
        index, folders, pace = replace(self.index, files=dict(self.index.files), docs=dict(self.index.docs)), \
            self.folders, self._pace

        def save() -> None:
            with pace.saving():
                folders.save(index)

        saver.submit_placed(self.c.docs.take_unsynced(), save, "index")
        if force:
            saver.wait()

    def _uploaded(self, name: str) -> SyncEntry:
        """The index entry for ``name`` from the local copies entry its upload recorded (content and stat as read)."""
        doc = self.keys[0].doc_id(name)
        copy = self.c.docs.copies.load().copy(self.team.team_id, doc, str(self.root / name))
        assert copy is not None  # write_op records it for its source
        raw = self.c.docs.sent.get(copy.vid, b"")  # the record it signed and sent: the next pass need not parse it
        return replace(SyncEntry.of(doc, copy), raw=raw)

    async def pull(self, a: plan.Action, local: dict[str, LocalFile]) -> None:
        target = self._local(a.name, pull=True)  # its folder made if need be, then the path checked again
        entry = self.index.files.get(a.name)
        # Replaced only if it is still the file the index knows (unchanged), and still so after the download.
        held = signature(target)
        expect = held if held is not None and entry is not None and entry.same_stat(*held) else None
        try:
            fetched, copy = await self.c.docs.fetch_newest(self.team, a.name, target, self.progress, expect=expect,
                                                           placed=True)  # checked by ``_local`` (no link, not home)
        except WouldOverwrite:  # a different file is there: both changed (handled after the batch of pulls)
            if a.name not in local:  # not one the scan took (hidden, ignored, special): never ours to move
                self.out.add(plan.SKIPPED, a.name, a.doc, a.seq, "a local file this folder does not sync has "
                             "this name: not touched, the team's version not fetched (review round 6)")
                return
            self.deferred.append(replace(a, kind=plan.CONFLICT))
            return
        self._fetched(a, fetched, copy, a.detail)

    def _fetched(self, a: plan.Action, fetched: Fetched, copy: LocalCopy | None, detail: str) -> None:
        """Record and report the newest version fetched into ``a.name`` (a deletion meanwhile: the next pass)."""
        seq = fetched.doc.record.core.seq
        if copy is None:
            self.out.add(plan.SKIPPED, a.name, a.doc, seq, "deleted meanwhile: the next pass removes it")
            return
        entry = SyncEntry.of(fetched.doc.record.core.doc, copy)
        if copy.vid == fetched.doc.vid:  # its record as verified: a pass listed it byte for byte need not parse it
            entry = replace(entry, raw=head_digest(fetched.doc.record.raw))
        self.index.record(a.name, entry)
        if fetched.written:
            self.out.add(plan.PULL, a.name, a.doc, seq, detail)
        else:
            self.out.add(IN_STEP, a.name, a.doc, seq, "already the same here")

    async def push(self, a: plan.Action, lf: LocalFile) -> None:
        base = Base(if_version=a.base) if a.base is not None else Base()
        try:
            seq, vid = await self.c.docs.write_op(self.team.name, a.name, PUT, source=lf.path, base=base,
                                                  progress=self.progress)
        except Conflict as e:
            if not await self._overtaken(a):
                self.out.add(FAILED, a.name, a.doc, a.seq, _refused(a, e))
                return
            await self.conflict(a)
            return
        self._recorded(a, lf, seq, plan.PUSH)

    async def _overtaken(self, a: plan.Action) -> bool:
        """After a 409 on a push: has the team's head moved past ``a.base`` (a version conflict)? If not, the server
        refused the upload for another reason (a key rotation due, a link ending this member's rights being stored:
        server/holds.py): no conflict copy is made, the file stays as it is and the next pass pushes it again."""
        _, records = await self.c.docs.find_doc(self.team, a.name)
        return (records[-1].core.seq if records else 0) != (a.base or 0)

    def _recorded(self, a: plan.Action, lf: LocalFile, seq: int, what: str, **more: Any) -> None:
        """Index the file as uploaded (its content and stat as read for the upload) and report it; a file that
        changed while it was read is reported and pushed again by the next pass."""
        entry = self._uploaded(a.name)
        self.index.record(a.name, entry)
        detail = a.detail
        try:
            st = lf.path.stat()
            if not entry.same_stat(st.st_size, st.st_mtime_ns, st.st_ino):
                detail = "changed while it was uploaded: pushed again by the next pass"
                self.out.trouble += 1
        except FileNotFoundError:
            detail = "removed while it was uploaded"
        self.out.add(what, a.name, entry.doc, seq, detail, **more)

    async def delete_local(self, a: plan.Action) -> None:
        entry = self.index.files[a.name]
        # The listed head is only signed and judged on its own: the deletion acted on is the one the document's
        # whole version chain ends with, checked as `history` checks it (team state and key never going back,
        # pins), so a removed member's backdated deletion served as the head deletes nothing (review round 6).
        records = await self.c.docs.versions(self.team, entry.doc)
        head = records[-1] if records else None
        if head is None or head.core.op != DELETE or head.core.seq != a.seq:
            raise IntegrityError(f"{escape(a.name)}: the server listed a deletion its version chain does not end "
                                 "with; nothing deleted")
        target = self._local(a.name)
        st = target.lstat()
        if not stat.S_ISREG(st.st_mode) or not entry.same_stat(st.st_size, st.st_mtime_ns, st.st_ino):
            self.out.add("skipped", a.name, a.doc, a.seq, "changed since this pass looked: kept, next pass decides")
            return
        target.unlink()
        self._prune(target.parent)
        self.index.forget(a.name)
        self.index.saw(entry.doc, a.seq or 1)
        self.out.add(plan.DELETE_LOCAL, a.name, a.doc, a.seq, "deleted in the team (a signed deletion)")

    def _prune(self, folder: Path) -> None:
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    async def delete_remote(self, a: plan.Action) -> None:
        entry = self.index.files[a.name]
        try:
            seq, _ = await self.c.docs.write_op(self.team.name, a.name, DELETE, base=Base(if_version=a.base))
        except Conflict:
            self.out.add("skipped", a.name, a.doc, a.seq, "changed in the team meanwhile: the next pass fetches it")
            return
        self.index.forget(a.name)
        self.index.saw(entry.doc, seq)
        self.out.add(plan.DELETE_REMOTE, a.name, a.doc, seq, "deleted here: a signed deletion stored")

    async def move(self, a: plan.Action, lf: LocalFile) -> None:
        assert a.source is not None
        old = self.index.files[a.source]
        moved_from = {"name": a.source, "doc": old.doc, "vid": old.vid}
        seq, _ = await self.c.docs.write_op(self.team.name, a.name, MOVE, source=lf.path,
                                            extra={"moved_from": moved_from}, base=Base(if_version=a.over))
        self._recorded(a, lf, seq, plan.MOVE, source=a.source)
        try:
            dseq, _ = await self.c.docs.write_op(self.team.name, a.source, DELETE, extra={"moved_to": a.name},
                                                 base=Base(if_version=a.base))
        except Conflict:
            self.out.add("skipped", a.source, old.doc, None, "changed in the team meanwhile: the next pass fetches it")
            return
        self.index.forget(a.source)
        self.index.saw(old.doc, dseq)

    async def _fetch_over(self, a: plan.Action, held: tuple[int, int, int]) -> None:
        """The newest version over a file found to hold an earlier one, if it still has stat ``held``."""
        try:
            fetched, copy = await self.c.docs.fetch_newest(self.team, a.name, self._local(a.name), self.progress,
                                                           expect=held)
        except WouldOverwrite:
            self.out.add(plan.SKIPPED, a.name, a.doc, a.seq, "changed since this pass looked: kept, next pass decides")
            return
        self._fetched(a, fetched, copy, "this file held an earlier version (a pass stopped before it recorded it): "
                      "the newest fetched over it")

    async def _holds_a_version(self, a: plan.Action) -> tuple[int, int, int] | None:
        """The stat of the file under ``a.name`` if it is byte for byte a version of its document newer than the indexed
        one: a pull that a killed pass renamed into place before the index recorded it, not an edit here.
        Only versions of the file's size are compared (the local copies entry first, else by downloading each
        into a verified temporary beside the file, removed at once)."""
        entry = self.index.files.get(a.name)
        path = self._local(a.name)
        if entry is None or not path.is_file():
            return None
        held = signature(path)
        if held is None:
            return None
        size = held[0]
        later = [v for v in await self.c.docs.history(self.team.name, a.name) if v.record.core.seq > entry.seq
                 and v.record.core.doc == entry.doc and v.opened is not None and not v.opened.deleted
                 and v.opened.size == size]
        if not later:
            return None
        mine = download.hash_file(path)  # the kind a download's digest is of
        copy = self.c.docs.copies.load().copy(self.team.team_id, entry.doc, str(path))
        if copy is not None and copy.vid in {v.vid for v in later} and download.holds(path, copy.digest, mine):
            return held
        for v in reversed(later):
            assert v.opened is not None
            tmp, digest = await download.receive_beside(self.c.session.api, v.record, v.opened, path, None)
            tmp.unlink(missing_ok=True)
            if digest == mine:
                return held
        return None

    async def conflict(self, a: plan.Action) -> None:
        """Keep the local file as a conflict copy beside the name, fetch the team's version into the name,
        and upload the copy as its own document (a reader keeps it here only). A file that holds a version
        already (a killed pass's pull) is no conflict: the head is fetched over it."""
        held = await self._holds_a_version(a)
        if held is not None:
            await self._fetch_over(a, held)
            return
        src = self._local(a.name)
        copy = plan.conflict_name(a.name, self.me_name, self.c.session.now())
        n = 1
        while os.path.lexists(self.root / copy):
            n += 1
            copy = plan.conflict_name(a.name, f"{self.me_name} {n}", self.c.session.now())
        os.rename(src, self._local(copy))
        fetched, got = await self.c.docs.fetch_newest(self.team, a.name, src, self.progress)
        rec = fetched.doc.record
        if got is not None:
            self.index.record(a.name, SyncEntry.of(rec.core.doc, got))
        else:
            self.index.forget(a.name)
        detail = f"both changed: the team's version {rec.core.seq} is under the name, yours is kept as {copy}"
        if self.may_write:
            of = {"name": a.name, "doc": rec.core.doc, "vid": rec.version_id}
            path = self.root / copy
            st = path.stat()
            seq, _ = await self.c.docs.write_op(self.team.name, copy, CONFLICT, source=path, extra={"conflict_of": of},
                                                base=Base(if_version=0))
            self.index.record(copy, self._uploaded(copy))
            if not self.index.files[copy].same_stat(st.st_size, st.st_mtime_ns, st.st_ino):
                detail += " (it changed while it was uploaded: pushed again by the next pass)"
            detail += f", stored as its own document (version {seq})"
        else:
            detail += "; you may only read this team: it is not uploaded"
        self.out.add(plan.CONFLICT, a.name, rec.core.doc, rec.core.seq, detail, copy=copy)

    async def apply(self, actions: list[plan.Action], local: dict[str, LocalFile],
                    sizes: dict[str, int] | None = None) -> None:
        """New documents in one batch put (several uploads in flight), pulls several at a time (``sizes``: the
        listed sizes, so that at most ``BIG_IN_FLIGHT`` big ones are in flight), then the rest in order; a lying
        server stops it all (the index saved first). The caller saves the index at the end."""
        new = [a for a in actions if a.kind == plan.PUSH and a.doc is None and a.name in local]
        if len(new) < 2:
            new = []
        pulls = [a for a in actions if a.kind == plan.PULL]
        if new:
            await self.push_new(new, local)
        gate, big_gate = asyncio.Semaphore(PULL_CONCURRENCY), asyncio.Semaphore(BIG_IN_FLIGHT)
        small = asyncio.Semaphore(SMALL_PULLS)

        full: list[plan.Action] = []  # pulls that found the disk full while others were landing: once more after

        async def pull(a: plan.Action) -> None:
            size = (sizes or {}).get(a.name, SMALL)
            async with big_gate if size >= BIG_FILE else contextlib.nullcontext(), small if size < SMALL else gate:
                await self.guarded(a, local, full)

        self.deferred = []
        try:
            with self.c.docs.fetch_batch():
                async with asyncio.TaskGroup() as tasks:
                    for a in pulls:
                        tasks.create_task(pull(a))
        except ExceptionGroup as group:  # a security error (guarded lets nothing else through): the others stopped
            raise group.exceptions[0] from None
        for a in sorted(full, key=lambda a: (sizes or {}).get(a.name, SMALL)):  # one at a time, smallest first
            await self.guarded(a, local)
        done = {id(a) for a in new + pulls}
        for a in self.deferred + [a for a in actions if id(a) not in done]:  # conflicts upload: after the batch
            await self.guarded(a, local)

    async def guarded(self, a: plan.Action, local: dict[str, LocalFile], full: list[plan.Action] | None = None
                      ) -> None:
        """Apply ``a``; a failure is reported and the pass goes on, except a lying server, which stops it. With
        ``full``, a full disk is not reported but ``a`` put there, to be tried again once the others are done."""
        try:
            await self.apply_one(a, local)
        except SECURITY:
            self.save(force=True)
            raise
        except (VaultError, OSError) as e:
            if full is not None and isinstance(e, OSError) and e.errno == errno.ENOSPC:
                full.append(a)
                return
            self.out.add(FAILED, a.name, a.doc, a.seq, _failure(a, e, local.get(a.name)))
        self.save()

    async def push_new(self, new: list[plan.Action], local: dict[str, LocalFile]) -> None:
        """New documents stored with a batch put (big files in a second one, ``BIG_IN_FLIGHT`` at a time); one
        that exists meanwhile is a conflict."""
        big = [a for a in new if local[a.name].size >= BIG_FILE]
        small = [a for a in new if local[a.name].size < BIG_FILE]
        if small:
            await self._put_batch(small, local, PUT_CONCURRENCY)
        if big:
            await self._put_batch(big, local, BIG_IN_FLIGHT)

    async def _put_batch(self, batch: list[plan.Action], local: dict[str, LocalFile], concurrency: int) -> None:
        try:
            stored = await self.c.docs.put_many(self.team.name, [(local[a.name].path, a.name) for a in batch],
                                                self.progress, concurrency, base=Base(if_version=0))
            failed: list[tuple[str, BaseException]] = []
        except BatchFailed as e:
            stored, failed = e.stored, e.failed
        except SECURITY:
            raise
        except VaultError as e:
            stored, failed = [], [(a.name, e) for a in batch]
        by_name = {a.name: a for a in batch}
        for name, seq, _ in stored:
            self._recorded(by_name[name], local[name], seq, plan.PUSH)
        for name, error in failed:
            a = by_name[name]
            if isinstance(error, Conflict) and not await self._overtaken(a):
                self.out.add(FAILED, a.name, a.doc, a.seq, _refused(a, error))
            elif isinstance(error, Conflict):
                await self.guarded(replace(a, kind=plan.CONFLICT), local)
            else:
                self.out.add(FAILED, a.name, a.doc, a.seq, _failure(a, error, local.get(a.name)))
        self.save()

    async def apply_one(self, a: plan.Action, local: dict[str, LocalFile]) -> None:
        lf = local.get(a.name)
        if a.kind == plan.PULL:
            await self.pull(a, local)
        elif a.kind == plan.PUSH:
            assert lf is not None
            await self.push(a, lf)
        elif a.kind == plan.CONFLICT:
            await self.conflict(a)
        elif a.kind == plan.DELETE_LOCAL:
            await self.delete_local(a)
        elif a.kind == plan.DELETE_REMOTE:
            await self.delete_remote(a)
        elif a.kind == plan.MOVE:
            assert lf is not None
            await self.move(a, lf)
        elif a.kind == plan.RENAME_LOCAL:
            left = await rename_here(self.c.docs, self.team, self.keys, self.index, self._local, a)
            if left is not None:
                self._prune(left)
                self.out.add(plan.RENAME_LOCAL, a.name, a.doc, a.seq, a.detail, source=a.source)
            else:  # as before: the old file's signed deletion, the new name fetched
                assert a.source is not None
                old = self.index.files[a.source]
                await self.delete_local(plan.Action(plan.DELETE_LOCAL, a.source, old.doc, a.over))
                await self.pull(plan.Action(plan.PULL, a.name, a.doc, a.seq), local)
        elif a.kind == plan.FORGET:
            self.index.forget(a.name)
        elif a.kind == plan.REFRESH:
            assert lf is not None
            entry = self.index.files[a.name]
            self.index.record(a.name, replace(entry, size=lf.size, mtime_ns=lf.mtime_ns, ino=lf.ino))
        else:
            self.out.add(a.kind, a.name, a.doc, a.seq, a.detail)


async def sync_pass(c: Client, team_name: str, folder: Path, *, dry_run: bool = False, confirm_deletes: bool = False,
                    hidden_ok: bool = False, on_plan: Callable[[int], Progress | None] | None = None,
                    only: frozenset[str] | None = None, outcome: Outcome | None = None) -> Outcome:
    """One pass of ``folder`` with team ``team_name`` (see the module's docstring). A new folder is made on
    its first sync only; a folder the index knows that is gone is the "vanished" case (deletions held back).
    ``on_plan(bytes to transfer)``: called once the plan is made, returns the progress callback to use.
    ``only``: the folder paths a watcher saw change: only those are scanned (``scan``); the listing is whole.
    ``outcome``: the caller's, filled as the pass goes (what a pass stopped by a lying server did: review 14)."""
    s = c.session
    root = folder.absolute()
    folders = SyncFolders(s.home.path, s.device)
    with contextlib.suppress(FileNotFoundError):
        root = root.resolve(strict=True)
    view = await c.chains.view()
    try:
        team = view.team_by_name(team_name)
    except NotFound:
        known = folders.load(root)
        if known is None or team_name not in (known.team, known.team_name):
            raise
        team = None
    if team is None or s.me not in team.members:
        raise PolicyDenied(f"you are no longer in team {escape(team_name)}: sync stopped, nothing was changed in "
                           f"{escape(str(root))} (your files are kept as they are)")
    if root.exists() and not root.is_dir():
        raise BadName(f"{root} is not a folder")
    folders.check_place(root)
    with folders.locked(root):
        index = folders.load(root)
        folders.check_team(index, root, team.team_id)
        # As read (entries are frozen): a pass that changes nothing else saves only its time at the end.
        before = replace(index, files=dict(index.files), docs=dict(index.docs)) if index is not None else None
        index = index or SyncIndex(team.team_id, str(root))
        index.team_name = team.name
        copies_now = signature(c.docs.copies.path)  # before it is read: a write meanwhile is caught up next time
        if copies_now is None or copies_now != index.copies_seen:  # else read for nothing: caught up with it already
            catch_up(index, c.docs.copies.load(), root)
            index.copies_seen = copies_now
        copies_mark = c.docs.copies.mark()
        vanished = not root.exists()
        if vanished and not index.files and not dry_run:
            root.mkdir(parents=True)
            vanished = False
        spec = rules(root)  # read once: the scan and the listed names are judged by the same rules
        found = scan(root, index, hidden_ok, only, spec) if root.exists() else None
        local = found.files if found is not None else {}
        vanished = vanished or (not local and bool(index.files))
        keys = await c.keys.keys_for(team)
        held = {e.vid: (name, e) for name, e in index.files.items()}  # versions verified when they were recorded
        # Deleted heads too: a deletion is a signed act to apply. A head that is the version an index entry holds
        # is not verified again (it was when the entry was recorded; the pins still judge it), nor even parsed
        # when listed byte for byte as a pass saw it before; another record under that version id is verified.
        listing, same = await c.docs.heads(team_name, deleted=None, seen=index.seen(),
                                           known={vid for vid, (_, e) in held.items() if not e.raw})
        remote = remote_heads(root, spec, listing, same, keys[0].doc_id, hidden_ok, held, local)
        for d in listing:  # the record of a known head, as listed: the next pass need not parse it
            if d.known and d.record.core.op != DELETE:
                index.record(held[d.vid][0], replace(held[d.vid][1], raw=head_digest(d.record.raw)))
        may_write = POLICY.entitled(Act(s.me, s.device.device_id, s.now(), "doc.write"), view.org, view.members,
                                    team)
        actions = plan.reconcile(local, found.present if found else set(), index, remote, may_write=may_write,
                                 confirm_deletes=confirm_deletes, vanished=vanished,
                                 max_delete_share=protocols_of(view.org).sync_delete_percent / 100)
        if not root.exists() and index.files:  # gone (an unmounted disk?): nothing is written where it was
            actions = [a if a.kind in KEEP_WHEN_GONE else
                       plan.Action(FAILED, a.name, a.doc, a.seq, detail=f"{a.kind}: the folder is gone; nothing is "
                                   "written there (make it again, or sync into another folder)") for a in actions]
        sizes = {r.name: r.size for r in remote if r.name is not None}
        total = sum(local[a.name].size if a.kind in (plan.PUSH, plan.MOVE, plan.CONFLICT) and a.name in local else 0
                    for a in actions) + sum(sizes.get(a.name, 0) for a in actions
                                            if a.kind in (plan.PULL, plan.CONFLICT))
        progress = on_plan(total) if on_plan is not None and not dry_run else None
        run = SyncRun(c, team, keys, root, index, folders, view.name_of(s.me), may_write, progress, outcome)
        for name, why in found.skipped if found else []:
            run.out.add(plan.SKIPPED, name, None, None, why)
        if dry_run:
            for a in actions:
                run.out.add(a.kind, a.name, a.doc, a.seq, a.detail or "(dry run)",
                            **({"source": a.source} if a.source else {}))
            return run.out
        for partial in found.partials if found else []:  # a killed pass's download: never a document, never kept
            partial.unlink(missing_ok=True)
        await run.apply(actions, local, sizes)
        c.docs.saver.wait()  # the pass's saves made: the last one below after them
        ours = c.docs.copies.only_ours_since(copies_mark, copies_now)
        if ours is not None:  # what the next pass would read and catch up with: done now, the file not read again
            catch_up(index, ours[0], root)
            index.copies_seen = ours[1]
        index.last_sync = s.now()
        if before is not None and index == replace(before, last_sync=index.last_sync):
            folders.save_last(index)  # nothing else changed (a no-op pass): the time alone, not the whole index
        else:
            folders.save(index)
        return run.out
