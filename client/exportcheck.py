"""``mvault export verify``: an export checked with nothing but its own files (docs/lifecycle.md, "Exports").

A folder: ``allowed_signers`` names the signing key, ``manifest.json.sig`` must be its SSH signature of
``manifest.json`` (namespace ``mvault-export``) by that key for the manifest's exporter, and every file under
``files/`` must be one the manifest lists, with its size and SHA-256 (and every listed file present), and nothing
but ``files/`` and those three files may be at the top of the folder. Paths come
from the manifest only after it verified and parsed (``vault/exportmanifest.check_path``), and are opened without
following symbolic links. An ``.age`` export is read as a stream (decrypted with the identities given, the tar read
member by member and hashed): nothing is extracted, so a hostile archive writes nothing anywhere.

What passing proves: the files are those the holder of the key in ``allowed_signers`` listed. Whose key that
is, the reader learns out of band (the fingerprint the exporter gives, or ``mvault verify MEMBER``).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vault import agefile, sshsig
from vault.errors import EncodingError, IntegrityError
from vault.exportmanifest import (
    ALLOWED_SIGNERS,
    FILES,
    MANIFEST,
    MAX_MANIFEST,
    NAMESPACE,
    SIGNATURE,
    Manifest,
    check_path,
)

CHUNK = 1 << 20
_SMALL = {MANIFEST: MAX_MANIFEST, SIGNATURE: sshsig.MAX_ARMORED, ALLOWED_SIGNERS: 4096}


@dataclass(frozen=True)
class Verified:
    manifest: Manifest
    fingerprint: str


def _hash(f: IO[bytes]) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    while chunk := f.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def check_signed(raw: Mapping[str, bytes]) -> Verified:
    """The manifest, if ``manifest.json.sig`` is a signature of it by the key ``allowed_signers`` gives its
    exporter (``IntegrityError`` otherwise)."""
    missing = [n for n in _SMALL if n not in raw]
    if missing:
        raise IntegrityError(f"the export has no {', '.join(missing)}")
    try:
        principal, namespace, public = sshsig.parse_allowed_signers_line(raw[ALLOWED_SIGNERS].decode("ascii"))
        sshsig.verify(raw[SIGNATURE].decode("ascii"), raw[MANIFEST], NAMESPACE, public)
        manifest = Manifest.parse(raw[MANIFEST])
    except (EncodingError, UnicodeDecodeError) as e:
        raise IntegrityError(f"the export's manifest does not verify: {e}") from None
    if namespace != NAMESPACE or principal != manifest.exporter.principal:
        raise IntegrityError("allowed_signers does not name the manifest's exporter for mvault-export")
    return Verified(manifest, sshsig.fingerprint(public))


def check_files(manifest: Manifest, found: Mapping[str, tuple[int, str]]) -> None:
    """Every file the manifest lists is among ``found`` (path -> size, SHA-256 hex) with its size and hash, and
    nothing else is."""
    listed = {e.path: e for e in manifest.files}
    for path, (size, digest) in sorted(found.items()):
        e = listed.get(path)
        if e is None:
            raise IntegrityError(f"{path!r} is in the export but not in its manifest")
        if (size, digest) != (e.size, e.sha256):
            raise IntegrityError(f"{path!r} does not match the manifest (altered or replaced)")
    absent = sorted(set(listed) - set(found))
    if absent:
        raise IntegrityError(f"{absent[0]!r} is in the manifest but missing from the export")


def verify_folder(folder: Path) -> Verified:
    raw: dict[str, bytes] = {}
    for name, limit in _SMALL.items():
        try:
            with _open_inside(folder, name) as small:
                raw[name] = small.read(limit + 1)
        except FileNotFoundError:
            continue
    verified = check_signed(raw)
    extra = sorted(set(os.listdir(folder)) - {FILES, *_SMALL})
    if extra:  # nothing the signature covers may sit beside the export's files (review round 10)
        raise IntegrityError(f"{extra[0]!r} is in the export beside {FILES}/ but not in its manifest")
    found: dict[str, tuple[int, str]] = {}
    root = folder / FILES
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            if os.path.islink(os.path.join(dirpath, d)):
                raise IntegrityError(f"the export holds a symbolic link: {os.path.join(dirpath, d)}")
        for f in files:
            path = Path(dirpath, f).relative_to(folder).as_posix()
            try:
                check_path(path)
            except EncodingError as e:
                raise IntegrityError(str(e)) from None
            with _open_inside(folder, path) as fh:
                found[path] = _hash(fh)
    check_files(verified.manifest, found)
    return verified


def _open_inside(folder: Path, path: str) -> IO[bytes]:
    """``folder/path`` for reading, refused if it or a folder on its way is a symbolic link, or not a file."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        parts = path.split("/")
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise IntegrityError(f"{path!r} in the export is not a regular file or folder (a link?)") from None
    finally:
        os.close(fd)
    f = os.fdopen(leaf, "rb")
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        f.close()
        raise IntegrityError(f"{path!r} in the export is not a regular file")
    return f


def verify_age(path: Path, identity_file: Path) -> Verified:
    identities = agefile.read_identities(identity_file)
    raw: dict[str, bytes] = {}
    found: dict[str, tuple[int, str]] = {}
    with path.open("rb") as src, agefile.decrypting(src, identities) as plain:
        try:
            with tarfile.open(fileobj=plain, mode="r|") as tar:
                for member in tar:
                    name = member.name
                    if name in raw or name in found:
                        raise IntegrityError(f"the archive holds {name!r} twice")
                    if not member.isreg():
                        raise IntegrityError(f"the archive holds {name!r}, which is not a regular file")
                    data = tar.extractfile(member)
                    assert data is not None
                    if name in _SMALL:
                        raw[name] = data.read(_SMALL[name] + 1)
                        continue
                    try:
                        check_path(name)
                    except EncodingError as e:
                        raise IntegrityError(str(e)) from None
                    found[name] = _hash(data)
        except tarfile.TarError as e:
            raise IntegrityError(f"the archive is not a valid tar: {e}") from None
    verified = check_signed(raw)
    check_files(verified.manifest, found)
    return verified
