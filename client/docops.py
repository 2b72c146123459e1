"""Deleting, renaming and restoring documents, and a history that follows renames (``mvault rm``, ``mv``,
``restore``, ``history``; the sync engine calls the same functions).

Each is one signed version on top of the document's head (``Documents.write_op``, vault/envelope.py ``op``):
nothing is ever removed from the server, and every version of a deleted document stays readable. Each
operation goes on top of exactly the head it looked at (``Base(if_version=...)``): if someone stored a newer
version meanwhile, it is a conflict and nothing is stored (a deletion or a rename never drops an edit it did
not see). Content for a move or a restore is fetched with the verified download path into a temporary file in
this client's home and uploaded from there, in constant memory.

A rename is two versions: first the ``MOVE`` at the new name (the old head's content, naming the version it
came from), then the ``DELETE`` of the old name (naming the new one). Interrupted between the two, both names
exist and nothing is lost; ``move`` run again sees the new name already holding a move of the old head and
stores only the deletion.
"""

from __future__ import annotations

import contextlib
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from client import download
from client.docs import Documents, DocVersion, Progress
from client.putbase import Base
from client.sanitize import escape
from vault.chains import TeamState
from vault.encoding import Value
from vault.envelope import DELETE, MOVE, RESTORE, Record
from vault.errors import Conflict, IntegrityError, NotFound
from vault.names import check_name
from vault.teamkeys import TeamKey

MAX_MOVES = 64  # renames followed back by ``history`` (a chain longer than this is refused, as is a cycle)


@dataclass(frozen=True)
class Done:
    """One version stored by an operation."""

    team: str  # the team's name
    name: str  # the document's name (the new one for a move)
    doc: str  # its document id
    seq: int
    vid: str
    op: str
    restored_from: int | None = None  # a restore: the version whose content it brought back


async def _team(docs: Documents, team_name: str) -> tuple[TeamState, list[TeamKey]]:
    view = await docs.chains.view()
    team = view.team_by_name(team_name)
    return team, await docs.keyring.keys_for(team)


async def _existing(docs: Documents, team: TeamState, name: str) -> tuple[str, list[Record]]:
    """The document id and versions of ``name``; ``NotFound`` if it has none."""
    check_name(name)
    doc, records = await docs.find_doc(team, name)
    if not records:
        raise NotFound(f"no document named {escape(name)!r} in team {escape(team.name)}")
    return doc, records


@contextlib.contextmanager
def _changed_meanwhile(name: str, outcome: str) -> Iterator[None]:
    """A conflict of an operation that goes on top of the head it looked at: someone stored a newer version
    in between (``Base(if_version)`` names an option the user did not give: say what happened instead)."""
    try:
        yield
    except Conflict as e:
        raise Conflict(f"{escape(name)!r} changed meanwhile (someone stored a newer version); {outcome}") from e


def _command(*words: str) -> str:
    return escape(" ".join(["mvault", *(shlex.quote(w) for w in words)]))


async def remove(docs: Documents, team_name: str, name: str, if_version: int | None = None,
                 moved_to: str | None = None) -> Done:
    """Delete ``name``: a signed ``DELETE`` version on top of its head (``if_version``: only if the head is
    that version). Refused if there is no such document or it is deleted already. This home's local copies
    index forgets the document."""
    team, _ = await _team(docs, team_name)
    doc, records = await _existing(docs, team, name)
    if records[-1].core.op == DELETE:
        raise Conflict(f"{escape(name)!r} is deleted already (version {len(records)}); nothing stored")
    extra: dict[str, Value] | None = {"moved_to": moved_to} if moved_to is not None else None
    if if_version is not None:
        seq, vid = await docs.write_op(team_name, name, DELETE, extra=extra, base=Base(if_version))
    else:
        with _changed_meanwhile(name, "nothing deleted"):
            seq, vid = await docs.write_op(team_name, name, DELETE, extra=extra, base=Base(len(records)))
    docs.copies.forget(team.team_id, doc)
    return Done(team.name, name, doc, seq, vid, DELETE)


async def _copy_version(docs: Documents, team_name: str, name: str, rec: Record, keys: list[TeamKey], op: str,
                        extra: dict[str, Value], base: Base, progress: Progress | None) -> tuple[int, str]:
    """Store a version of ``name`` doing ``op`` whose content is that of ``rec``: fetched and verified into a
    temporary file inside this client's home (never a visible place), uploaded from there, then removed."""
    opened = docs.open_version(rec, keys)
    home = docs.session.home.path
    with tempfile.TemporaryDirectory(prefix=".mvault-op-", dir=home) as tmp_dir:
        tmp, _ = await download.receive_beside(docs.session.api, rec, opened, Path(tmp_dir) / "content", progress)
        return await docs.write_op(team_name, name, op, source=tmp, extra=extra, base=base, index=False,
                                   progress=progress)


async def move(docs: Documents, team_name: str, old: str, new: str, progress: Progress | None = None) -> Done:
    """Rename ``old`` to ``new``: a ``MOVE`` version at ``new`` with ``old``'s newest content, then a
    ``DELETE`` of ``old`` naming ``new``. ``new`` may not exist unless deleted (then the move is its newest
    version); if it already holds this member's own move of ``old``'s head (an interrupted ``move``), only
    the deletion is left to do. Returns the move's version."""
    check_name(new)
    if old == new:
        raise Conflict(f"{escape(old)!r} is already its name; nothing stored")
    team, keys = await _team(docs, team_name)
    old_doc, old_records = await _existing(docs, team, old)
    head = old_records[-1]
    if head.core.op == DELETE:
        raise Conflict(f"{escape(old)!r} is deleted; nothing to rename (bring it back with "
                       f"`{_command('restore', team.name, old)}`)")
    new_doc, new_records = await docs.find_doc(team, new)
    source: dict[str, Value] = {"name": old, "doc": old_doc, "vid": head.version_id}
    done: tuple[int, str] | None = None
    if new_records and new_records[-1].core.op != DELETE:
        moved = docs.open_version(new_records[-1], keys)
        # Only this member's own interrupted move is finished: another writer can store a MOVE naming the same
        # source with their own content, which would otherwise be taken for ours (review round 6).
        mine = new_records[-1].core.author == docs.session.me
        if moved.op != MOVE or moved.moved_from != (old, old_doc, head.version_id) or not mine:
            raise Conflict(f"{escape(new)!r} exists (version {len(new_records)}); nothing renamed (delete it "
                           f"first with `{_command('rm', team.name, new)}`, or choose another name)")
        done = (len(new_records), new_records[-1].version_id)  # an interrupted move: only the deletion is left
    if done is None:
        done = await _copy_version(docs, team_name, new, head, keys, MOVE, {"moved_from": source},
                                   Base(len(new_records)), progress)
    with _changed_meanwhile(old, f"its content is under {escape(new)!r} as it was, but {escape(old)!r} is not "
                                 "deleted (compare them; then rm it, or run the same mv again)"):
        await docs.write_op(team_name, old, DELETE, extra={"moved_to": new}, base=Base(len(old_records)))
    docs.copies.forget(team.team_id, old_doc)
    return Done(team.name, new, new_doc, *done, MOVE)


async def restore(docs: Documents, team_name: str, name: str, version: int | None = None,
                  progress: Progress | None = None) -> Done:
    """Store version ``version`` of ``name``'s content as its newest (``RESTORE``, naming that version).
    Default: for a deleted document, the last version before its newest deletion; a live document needs
    ``version``. A deletion has no content to restore: refused."""
    team, keys = await _team(docs, team_name)
    doc, records = await _existing(docs, team, name)
    if version is None:
        if records[-1].core.op != DELETE:
            raise Conflict(f"{escape(name)!r} is not deleted: say which version to bring back with --version N "
                           f"(1..{len(records)}; `{_command('history', team.name, name)}` lists them)")
        live = [r for r in records[:-1] if r.core.op != DELETE]
        if not live:
            raise Conflict(f"{escape(name)!r} has no version before its deletion to bring back")
        version = live[-1].core.seq
    if not 1 <= version <= len(records):
        raise NotFound(f"{escape(name)!r} has versions 1..{len(records)}, not {version}")
    rec = records[version - 1]
    if rec.core.op == DELETE:
        raise Conflict(f"version {version} of {escape(name)!r} is a deletion: it has no content to bring back")
    with _changed_meanwhile(name, "nothing restored"):
        seq, vid = await _copy_version(docs, team_name, name, rec, keys, RESTORE, {"restored_from": version},
                                       Base(len(records)), progress)
    return Done(team.name, name, doc, seq, vid, RESTORE, version)


async def history(docs: Documents, team_name: str, name: str) -> list[DocVersion]:
    """Every version of ``name``, oldest first, each move preceded by the versions of the document it was moved
    from up to the one it copied (checked as any document's: signed, judged, chained, pinned), following renames
    back; a version already listed (a rename back to an old name) is listed once. Each version's own name
    (``opened.name``) tells where it was stored."""
    team, keys = await _team(docs, team_name)
    _, records = await _existing(docs, team, name)
    out: list[DocVersion] = []
    await _follow(docs, team, keys, records, out, set())
    return out


async def _follow(docs: Documents, team: TeamState, keys: list[TeamKey], records: list[Record],
                  out: list[DocVersion], listed: set[str]) -> None:
    for rec in records:
        if rec.version_id in listed:
            continue
        listed.add(rec.version_id)  # before following: each version is followed at most once
        opened = docs.open_version(rec, keys)
        if opened.op == MOVE and opened.moved_from is not None:
            src_name, src_doc, src_vid = opened.moved_from
            if src_doc != keys[0].doc_id(src_name):
                raise IntegrityError("a moved document names a source whose id is not that of its name")
            if sum(d.opened is not None and d.opened.op == MOVE for d in out) >= MAX_MOVES:
                raise IntegrityError(f"a document was renamed more than {MAX_MOVES} times: not followed further")
            src = await docs.versions(team, src_doc)
            at = next((i for i, r in enumerate(src) if r.version_id == src_vid), None)
            if at is None or src[at].core.op == DELETE:
                raise IntegrityError("a moved document names a version its source document does not have")
            await _follow(docs, team, keys, src[:at + 1], out, listed)
        out.append(DocVersion(rec, opened, rec.version_id))
