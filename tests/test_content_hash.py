"""Issue 17, session 15: the local copies index and the sync folder indexes record a plaintext's BLAKE3 (the key
"blake3"); entries written before hold its SHA-256 (the key "sha256") and stay readable, and a file is compared
with an entry by the entry's own hash, so that a folder synced by an older client does not take its unchanged files
for changed ones (every one pushed again) nor miss a rename of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import blake3
import pytest

from client.home import Home
from client.localcopies import LocalCopies
from client.sync.folders import SyncFolders
from tests.conftest import Member, Org
from tests.test_sync import acts, sync, tree, write
from tests.test_sync_safety import two_synced, vids
from vault.encoding import Value
from vault.errors import DecryptionFailed
from vault.keys import DeviceKeys
from vault.localindex import BLAKE3_TAG, LocalCopy, LocalIndex, content_hasher, open_index, seal_index, seal_padded
from vault.localstate import local_key
from vault.syncindex import SyncEntry, SyncIndex, open_sync_index, seal_sync_index

KEY = local_key(DeviceKeys(bytes(range(32)), bytes(32)))


def digest(data: bytes, like: bytes | None = None) -> bytes:
    h = content_hasher(like)
    h.update(data[:3])
    h.update(data[3:])
    return h.digest()


def test_new_digests_are_blake3_and_a_sha256_entry_is_hashed_as_sha256() -> None:
    data = b"strategy draft\n" * 100
    old = hashlib.sha256(data).digest()
    assert digest(data) == BLAKE3_TAG + blake3.blake3(data).digest()
    assert digest(data, like=old) == old  # compared with an old entry: its own hash
    assert digest(data, like=digest(b"other")) == digest(data)
    assert digest(data) != old and len({digest(data), old}) == 2  # kinds never compare equal


def test_an_old_sha256_entry_still_opens_and_a_new_one_is_written_as_blake3() -> None:
    data = b"minutes\n"
    old_entry: dict[str, Value] = {"vid": "ab" * 16, "seq": 2, "sha256": hashlib.sha256(data).digest(), "size": 8,
                                   "mtime_ns": 1_700_000_000_123_456_789, "ino": 42}
    blob = seal_padded(KEY, "index", {"v": 1, "docs": {"t/d": {"/home/m/minutes.md": old_entry}}})  # as before
    index = open_index(KEY, blob)
    copy = index.copy("t", "d", "/home/m/minutes.md")
    assert copy is not None and copy.digest == hashlib.sha256(data).digest()
    assert open_index(KEY, seal_index(KEY, index)) == index  # written back as it was
    assert index.to_value() == {"v": 1, "docs": {"t/d": {"/home/m/minutes.md": old_entry}}}  # the same bytes

    new = dataclasses.replace(copy, digest=digest(data))
    index.record("t", "d", "/home/m/minutes.md", new)
    encoded = index.to_value()["docs"]
    assert isinstance(encoded, dict)
    assert encoded["t/d"] == {"/home/m/minutes.md": {**{k: v for k, v in old_entry.items() if k != "sha256"},
                                                      "blake3": blake3.blake3(data).digest()}}
    assert open_index(KEY, seal_index(KEY, index)).copy("t", "d", "/home/m/minutes.md") == new

    for bad in ({**old_entry, "blake3": bytes(32)}, {k: v for k, v in old_entry.items() if k != "sha256"},
                {**{k: v for k, v in old_entry.items() if k != "sha256"}, "blake3": bytes(33)}):
        with pytest.raises(DecryptionFailed):
            open_index(KEY, seal_padded(KEY, "index", {"v": 1, "docs": {"t/d": {"/p": bad}}}))


@pytest.mark.parametrize("raw", [b"", bytes(range(32))])
def test_sync_entries_of_both_kinds_open_the_same_by_either_path(raw: bytes) -> None:
    """The quick path of ``SyncEntry.from_value`` and the general one agree on both kinds and refuse the same."""
    index = SyncIndex("t" * 32, "/home/m/drafts")
    for name, d in (("old.md", hashlib.sha256(b"x").digest()), ("new.md", digest(b"x"))):
        index.record(name, SyncEntry("ab" * 16, 1, d, 1, 5, 6, "d" * 32, raw))
    fid = "cd" * 16
    opened = open_sync_index(KEY, fid, seal_sync_index(KEY, fid, index))
    assert opened.files == index.files
    for name, entry in index.files.items():
        value = entry.to_value()
        assert ("blake3" in value) == (name == "new.md") and ("sha256" in value) == (name == "old.md")
        assert SyncEntry.from_value(value) == entry  # the quick path
        general = LocalCopy.from_value({k: x for k, x in value.items() if k not in ("doc", "raw")})
        assert general.digest == entry.digest
    new_value = index.files["new.md"].to_value()
    both: dict[str, Value] = {**new_value, "sha256": bytes(32)}
    with pytest.raises(DecryptionFailed):
        open_sync_index(KEY, fid, seal_padded(KEY, f"sync:{fid}", {**index.to_value(), "files": {"a.md": both}}))


def keys_of(m: Member, monkeypatch: pytest.MonkeyPatch) -> DeviceKeys:
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
    return Home(m.home).unlock(agent_ok=False).device


def as_older_client(m: Member, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rewrite ``m``'s folder index and local copies index as a client before session 15 wrote them: every
    entry's digest the SHA-256 of the file it names (so the sealed bytes are that client's)."""
    device = keys_of(m, monkeypatch)
    folders = SyncFolders(m.home, device)
    index = folders.load(folder)
    assert index is not None
    for name, e in list(index.files.items()):
        assert e.digest[:1] == BLAKE3_TAG and len(e.digest) == 33  # written by this client
        index.files[name] = dataclasses.replace(e, digest=hashlib.sha256((folder / name).read_bytes()).digest())
    folders.save(index)
    copies = LocalCopies(m.home, device)
    old = LocalIndex()
    for key, paths in copies.load().docs.items():
        team, doc = key.split("/")
        for path, c in paths.items():
            old.record(team, doc, path, dataclasses.replace(c, digest=hashlib.sha256(Path(path).read_bytes()).digest()))
    copies.path.write_bytes(seal_index(local_key(device), old))


def entry_kinds(m: Member, folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    index = SyncFolders(m.home, keys_of(m, monkeypatch)).load(folder)
    assert index is not None
    return {n: "sha256" if len(e.digest) == 32 else "blake3" for n, e in index.files.items()}


def test_a_folder_synced_by_an_older_client_keeps_its_unchanged_files_and_renames(
        org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bob's folder index holds SHA-256 entries (an older client's). A file touched but not changed is not pushed
    again (it is hashed with SHA-256 to be compared), a renamed one is a move (history follows), an edited one is
    pushed; entries written by this client are BLAKE3. With the new hash used for every comparison, the touched
    file would be a new version and the rename a deletion and a new document."""
    a, b = two_synced(org, tmp_path)
    as_older_client(org.bob, b, monkeypatch)
    assert set(entry_kinds(org.bob, b, monkeypatch).values()) == {"sha256"}
    before = {n: vids(org, org.alice, n) for n in ("a.md", "b.md", "sub/c.md")}

    st = (b / "a.md").stat()
    os.utime(b / "a.md", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched, the same bytes
    os.rename(b / "b.md", b / "renamed.md")
    write(b / "sub/c.md", "sub/c.md v2 by bob\n")
    rows = sync(org.bob, b)
    assert acts(rows) == [("move", "renamed.md"), ("push", "sub/c.md")], rows
    assert vids(org, org.alice, "a.md") == before["a.md"]  # no new version of the touched file
    assert len(vids(org, org.alice, "sub/c.md")) == 2
    kinds = entry_kinds(org.bob, b, monkeypatch)
    assert kinds["sub/c.md"] == "blake3" and kinds["b.md" if "b.md" in kinds else "a.md"] == "sha256"
    assert sync(org.bob, b) == []  # in step, nothing hashed as changed

    sync(org.alice, a)
    assert tree(a) == tree(b)


def test_get_records_blake3_and_an_old_entry_still_opens(org: Org, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``mvault get`` records the file's BLAKE3; with that entry rewritten as SHA-256 (an older client's), the index
    still opens: ``get`` knows the unchanged file it wrote, and a new version replaces the entry with BLAKE3."""
    src = write(tmp_path / "plan.md", "plan v1\n")
    org.alice.ok("put", "drafting", str(src))
    out = tmp_path / "bob" / "plan.md"
    out.parent.mkdir()
    org.bob.ok("get", "drafting", "plan.md", "-o", str(out))
    device = keys_of(org.bob, monkeypatch)
    [(key, paths)] = LocalCopies(org.bob.home, device).load().docs.items()
    [(path, copy)] = paths.items()
    assert Path(path) == out.resolve() and copy.digest == BLAKE3_TAG + blake3.blake3(b"plan v1\n").digest()
    old = LocalIndex()
    team, doc = key.split("/")
    old.record(team, doc, path, dataclasses.replace(copy, digest=hashlib.sha256(b"plan v1\n").digest()))
    LocalCopies(org.bob.home, device).path.write_bytes(seal_index(local_key(device), old))
    assert "unchanged" in org.bob.ok("get", "drafting", "plan.md", "-o", str(out)).out
    write(src, "plan v2\n")
    org.alice.ok("put", "drafting", str(src))
    org.bob.ok("get", "drafting", "plan.md", "-o", str(out), "--force")
    [(_, paths)] = LocalCopies(org.bob.home, device).load().docs.items()
    assert paths[path].digest == BLAKE3_TAG + blake3.blake3(b"plan v2\n").digest()
