"""``mvault export``: a team's documents as plain files and a manifest signed in SSH's format (docs/lifecycle.md).

The export is recorded with the server first (an audit event ``doc.export``: the server refuses a member who may
not read the team now and, from a sensitive team, an export without an approved request); only then is any
plaintext written. Each document's newest version is fetched through the verified download (signature, judge, pins,
every frame and the final tag) and hashed as it is written. The manifest (``vault/exportmanifest.py``) is signed by
this device's Ed25519 key as an SSH signature (``vault/sshsig.py``) and the ``allowed_signers`` line for that key is
written beside it.

Two outputs: a new folder (``--out DIR``, made here with mode 0700: it must not exist), or a tar archive inside an
age file to the given recipients (``--age-recipient``; the manifest files come last, after the files they list,
so that the archive is written in one pass without plaintext on disk beyond one anonymous temporary file).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from client import download
from client.client import Client
from client.docs import DocVersion
from client.exportrequests import approved_request, chosen_under
from vault import agefile, sshsig
from vault.chains import TeamState
from vault.errors import NotFound, PolicyDenied, VaultError
from vault.exportmanifest import (
    ALLOWED_SIGNERS,
    MANIFEST,
    NAMESPACE,
    SIGNATURE,
    Entry,
    Exporter,
    Manifest,
    safe_paths,
)
from vault.localindex import SHA256_LIKE
from vault.wire.schemas import AttestRequest, Ok

Progress = Callable[[int], None]


class ExistingOutput(VaultError):
    """The export's output exists already: an export never writes into or over something."""


@dataclass(frozen=True)
class Exported:
    manifest: Manifest
    fingerprint: str  # of the signing key, as ``ssh-keygen -l`` shows it: to give the reader out of band
    skipped: tuple[str, ...]  # version ids of documents under a key generation this member never held


def principal_of(member_id: str) -> str:
    return f"{member_id}@mvault"


def check_output(out: Path) -> None:
    """Refuse an output path that exists (checked before unlocking and again when it is made)."""
    if os.path.lexists(out):
        raise ExistingOutput(f"{out} exists already: an export goes to a new folder or file")


def select(heads: Sequence[DocVersion], names: Sequence[str], team_name: str) -> tuple[list[DocVersion], list[str]]:
    """The documents ``names`` asks for (a name, or a folder ``notes/``; all when none), and the version ids of the
    heads this member holds no key for (left out). A name that matches nothing is an error (nothing is exported)."""
    opened = [d for d in heads if d.opened is not None]
    skipped = sorted(d.vid for d in heads if d.opened is None)
    if not names:
        return opened, skipped
    chosen: dict[str, DocVersion] = {}
    for name in names:
        hits = [d for d in opened if d.opened is not None and (
            d.opened.name == name or (name.endswith("/") and d.opened.name.startswith(name)))]
        if not hits:
            raise NotFound(f"no document named {name!r} in team {team_name}")
        chosen.update((d.vid, d) for d in hits)
    return sorted(chosen.values(), key=lambda d: d.opened.name if d.opened else ""), skipped


async def every_version(s: Client, team: TeamState, heads: Sequence[DocVersion]) -> tuple[list[DocVersion], list[str]]:
    """Every version of each document of ``heads``, oldest first, checked and pinned as for any command (a deletion
    left out); and the version ids under a key generation this member never held (left out too)."""
    keys = await s.docs.keyring.keys_for(team)
    out, skipped = [], []
    for head in heads:
        for rec in await s.docs.versions(team, head.record.core.doc):
            try:
                opened = s.docs.open_version(rec, keys)
            except PolicyDenied:
                skipped.append(rec.version_id)
                continue
            if not opened.deleted:
                out.append(DocVersion(rec, opened, rec.version_id))
    return out, skipped


def version_name(d: DocVersion) -> str:
    """The name an ``--all-versions`` export writes a version under: its name, ``@v`` and its version number (``@``
    stays as it is in a path: ``vault/exportmanifest.safe_paths``)."""
    assert d.opened is not None
    return f"{d.opened.name}@v{d.record.core.seq}"


async def export_team(s: Client, team_name: str, names: Sequence[str], out: Path, recipients: Sequence[str],
                      progress: Progress | None = None, request: str | None = None,
                      all_versions: bool = False) -> Exported:
    """``request``: the id of an approved export request (``client/exportrequests.py``), which a team of the
    ``exports`` rule's sensitive kinds needs: the export then writes the request's documents (or those of ``names``
    among them), to the request's recipients only, and the manifest names the request. ``all_versions``: every
    version of each document chosen, each a file (``version_name``) and a manifest entry."""
    view = await s.chains.view()
    team = view.team_by_name(team_name)
    heads = await s.docs.ls(team_name)
    docs, skipped = select(heads, names, team.name)
    attest = AttestRequest("doc-export", team=team.team_id, count=len(docs))
    req = None
    if request is not None:
        req = approved_request(team, request, s.session.me, s.session.now())
        docs = chosen_under(req, docs, [d for d in heads if d.opened is not None], bool(names))
        if recipients and sorted(set(recipients)) != list(req.recipients):
            raise PolicyDenied("an export under a request goes to the request's recipients only: leave out "
                               "--age-recipient, or give exactly those of `mvault export requests`")
        recipients = req.recipients
        attest = AttestRequest("doc-export", team=team.team_id, count=len(docs), request=req.hash.hex(),
                               docs=[d.record.core.doc for d in docs])
    if not docs:
        raise NotFound(f"team {team.name} has no document this device can export")
    named = {d.vid: d.opened.name for d in docs if d.opened is not None}  # file name per version written
    if all_versions:
        docs, older = await every_version(s, team, docs)
        skipped = sorted({*skipped, *older})
        named = {d.vid: version_name(d) for d in docs}
    await s.session.api.post("/api/v1/audit/attest", attest, Ok)
    device = s.session.device
    exporter = Exporter(s.session.me, view.name_of(s.session.me), device.device_id, principal_of(s.session.me))
    paths = safe_paths(named.values())
    entries: list[Entry] = []

    def entry(d: DocVersion, size: int, digest: bytes) -> Entry:
        assert d.opened is not None
        c = d.record.core
        return Entry(paths[named[d.vid]], d.opened.name, c.doc, c.seq, d.vid, c.author, view.name_of(c.author),
                     c.device, c.time, size, digest.hex())

    made: list[Manifest] = []

    def finish() -> tuple[bytes, bytes, bytes]:
        """The manifest of the files written, its signature and the allowed signers line."""
        made.append(Manifest(view.org.org_id, team.team_id, team.name, exporter, s.session.now(), tuple(entries),
                             None if req is None else req.hash.hex()))
        raw = made[-1].to_bytes()
        signature = sshsig.sign(device, raw, NAMESPACE).encode()
        return raw, signature, sshsig.allowed_signers_line(exporter.principal, NAMESPACE, device.sign_public).encode()

    if recipients:
        with _new_file(out) as f, agefile.encrypting(f, recipients) as sink, tarfile.open(
                fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for d in docs:
                with tempfile.TemporaryFile(prefix="mvault-export-") as plain:
                    assert d.opened is not None
                    digest = await download.receive(s.session.api, d.record, d.opened, plain.fileno(), progress,
                                                    like=SHA256_LIKE)
                    size = plain.seek(0, io.SEEK_END)
                    plain.seek(0)
                    entries.append(entry(d, size, digest))
                    _add(tar, paths[named[d.vid]], size, d.record.core.time, plain)
            for name, data in zip((MANIFEST, SIGNATURE, ALLOWED_SIGNERS), finish(), strict=True):
                _add(tar, name, len(data), s.session.now(), io.BytesIO(data))
    else:
        check_output(out)
        out.mkdir(mode=0o700)
        try:
            for d in docs:
                assert d.opened is not None
                target = out / paths[named[d.vid]]
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                tmp, digest = await download.receive_beside(s.session.api, d.record, d.opened, target, progress,
                                                            like=SHA256_LIKE)
                os.replace(tmp, target)  # a new folder of ours, each path unique: nothing is replaced
                entries.append(entry(d, target.stat().st_size, digest))
            for name, data in zip((MANIFEST, SIGNATURE, ALLOWED_SIGNERS), finish(), strict=True):
                (out / name).write_bytes(data)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # the folder made above: no half export (plaintext) is left
            raise
    return Exported(made[-1], sshsig.fingerprint(device.sign_public), tuple(skipped))


def _add(tar: tarfile.TarFile, name: str, size: int, mtime: int, data: BinaryIO) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o600
    tar.addfile(info, data)


@contextlib.contextmanager
def _new_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` created (never over an existing one), removed again if the block fails."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ExistingOutput(f"{path} exists already: an export goes to a new folder or file") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
    except BaseException:
        path.unlink(missing_ok=True)
        raise
