"""``mvault republish TEAM``: after following the Security Team's acceptance of a server restored from an
older backup (client/restore.py), put back what this device still holds and the server lost.

This device keeps no chain links (only their heads, in the pins) and no document content except the local
files ``get``/``put``/``sync`` recorded in the local copies index (client/localcopies.py). So: a document
that went back is put again, as a new version on top of the restored head, from a local copy whose version
the server no longer has; everything else that went back (chain links, documents without such a copy) is
listed as lost for good: what was signed in those links (roles, team changes, devices) must be done again.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from client.client import Client
from client.putbase import Base
from client.view import pinned_deleted
from vault.chains import TeamState
from vault.envelope import DELETE, PUT
from vault.errors import NotFound
from vault.localindex import LocalCopy, content_hasher
from vault.teamkeys import TeamKey


def lost_since_restores(pins_log: dict[str, Any]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(chains, documents) that went back in the restores this device followed: id -> [served, pinned]."""
    chains: dict[str, list[int]] = {}
    docs: dict[str, list[int]] = {}
    for r in pins_log.get("restored", []):
        lost = r.get("lost", {})
        chains.update({k: [int(v["served"]), int(v["pinned"])] for k, v in lost.get("chains", {}).items()})
        docs.update({k: [int(v["served"]), int(v["pinned"])] for k, v in lost.get("docs", {}).items()})
    return chains, docs


async def republish(c: Client, team_name: str) -> list[dict[str, Any]]:
    """Put back the team's documents this device holds newer local copies of; one row per thing that went back."""
    s = c.session
    pins = s.home.pins()
    if not pins.log.get("restored"):
        raise NotFound("this device never followed an acceptance of a restored server: nothing to re-publish")
    view = await c.chains.view()
    team = view.team_by_name(team_name)
    keys = await c.keys.keys_for(team)
    lost_chains, lost_docs = lost_since_restores(pins.log)
    rows: list[dict[str, Any]] = []
    if team.team_id in lost_chains:
        served, pinned = lost_chains[team.team_id]
        rows.append({"kind": "chain", "id": team.team_id, "name": team.name, "served": served, "pinned": pinned,
                     "result": "lost", "version": None,
                     "reason": "this device keeps no chain links: sign those team changes again"})
    index = c.docs.copies.load()
    items: list[tuple[Path, str, tuple[bytes, os.stat_result]]] = []
    waiting: list[dict[str, Any]] = []
    prefix = f"{team.team_id}/"
    for key, (served, pinned) in sorted(lost_docs.items()):
        if not key.startswith(prefix):
            continue
        doc = key[len(prefix):]
        if pinned_deleted(s.home.pins().docs.get(key)):
            rows.append(await delete_again(c, team, keys, key, served, pinned))
            continue
        records = await c.docs.versions(team, doc)
        name = c.docs.open_version(records[-1], keys).name if records else None
        row: dict[str, Any] = {"kind": "document", "id": doc, "name": name, "served": served, "pinned": pinned,
                               "result": "lost", "version": None, "reason": ""}
        rows.append(row)
        held = {r.version_id for r in records}
        newer = [(p, cp) for p, cp in index.docs.get(key, {}).items() if cp.vid not in held]
        if not newer:
            row["reason"] = "no local copy of a version the server lacks"
            continue
        path_text, copy = max(newer, key=lambda pc: pc[1].seq)
        path = Path(path_text)
        row["path"] = str(path)
        read = read_copy(path, copy)
        if isinstance(read, str):
            row["reason"] = read
            continue
        row["name"] = name or path.name
        items.append((path, row["name"], read))
        waiting.append(row)
    with tempfile.TemporaryDirectory(prefix=".republish-", dir=s.home.path) as tmp:
        for row, (path, doc_name, (data, st)) in zip(waiting, items, strict=True):
            # Uploaded from the bytes checked above, not from the path again (which may change meanwhile).
            source = Path(tmp) / "content"
            fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            seq, vid = await c.docs.write_op(team.name, doc_name, PUT, source=source,
                                             base=Base(force_new_version=True), index=False)
            c.docs.copies.save([(team.team_id, keys[0].doc_id(doc_name), str(path),
                                 LocalCopy(vid, seq, content_hasher_of(data), st.st_size, st.st_mtime_ns, st.st_ino))])
            row.update({"result": "republished", "version": seq, "reason": ""})
    return rows


async def delete_again(c: Client, team: TeamState, keys: list[TeamKey], key: str, served: int,
                       pinned: int) -> dict[str, Any]:
    """A document this device saw deleted and kept deleted after an acceptance (client/restore.py ``apply``): the
    deletion signed again on top of what the server serves (the pin is dropped first: the member decided)."""
    s = c.session
    doc = key.split("/", 1)[1]
    pins = s.home.pins()
    held = pins.docs.pop(key)
    s.home.lower_pins(pins, docs=[key])  # dropped deliberately (under the pins lock; every other pin merged)
    records = await c.docs.versions(team, doc)
    row: dict[str, Any] = {"kind": "document", "id": doc, "name": None, "served": served, "pinned": pinned,
                           "result": "lost", "version": None, "reason": ""}
    if not records:
        row["reason"] = "no longer served"
        return row
    row["name"] = c.docs.open_version(records[-1], keys).name
    if records[-1].version_id == held[1] or records[-1].core.op == DELETE:
        row.update({"result": "deleted", "reason": "the server serves it deleted"})
        return row
    seq, _ = await c.docs.write_op(team.name, row["name"], DELETE, base=Base(force_new_version=True), index=False)
    row.update({"result": "deleted again", "version": seq})
    return row


def content_hasher_of(data: bytes, like: bytes | None = None) -> bytes:
    h = content_hasher(like)
    h.update(data)
    return h.digest()


def read_copy(path: Path, copy: LocalCopy) -> tuple[bytes, os.stat_result] | str:
    """The content at ``path`` if it is still the version the local copies index recorded there (read once,
    a regular file opened without following a symlink); else why it is not republished."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return f"the local copy {path} is gone"
    except OSError as e:
        return f"the local copy {path} is not a regular file or cannot be read ({e.strerror}): not republished"
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return f"the local copy {path} is not a regular file: not republished"
        data = f.read()
    if len(data) != copy.size or content_hasher_of(data, like=copy.digest) != copy.digest:
        return (f"the local copy {path} changed since this device recorded version {copy.seq} there: "
                "not republished (put it again yourself if it is still that document)")
    return data, st
