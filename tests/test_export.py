"""Issue 20, exports: a team's documents as plain files and a manifest signed in SSH's format, read and checked
with Debian's ``age`` and OpenSSH's ``ssh-keygen -Y verify`` alone, and by ``mvault export verify``.

Everything through the real CLI against the real server (tests/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Member, Org
from tests.helpers.agetools import AGE, AGE_KEYGEN, age_decrypt_untar, age_identity
from tests.helpers.tampering import DECRYPTION, blob_file, blob_replaced, flip_middle, version_row
from tests.test_cli_documents_trust import WRITER  # a member's modified client: names the CLI refuses

SSH_KEYGEN = shutil.which("ssh-keygen")
needs_tools = pytest.mark.skipif(not (AGE and AGE_KEYGEN and SSH_KEYGEN),
                                 reason="Debian's age and openssh-client (.ci/run installs them)")


def write(m: Member, name: str, text: str, team: str = "drafting") -> None:
    src = m.home.parent / f"src-{m.name}"
    src.mkdir(exist_ok=True)
    f = src / "file"
    f.write_text(text)
    m.ok("put", team, str(f), "--as", name, "--force-new-version")


def several_versions(org: Org) -> dict[str, tuple[str, str, int]]:
    """Documents by two authors, several versions each: name -> (content, newest author, version)."""
    alice, bob = org.alice, org.bob
    write(alice, "plan.md", "plan v1\n")
    write(bob, "plan.md", "plan v2 by bob\n")
    write(alice, "notes/minutes.txt", "minutes v1\n")
    write(alice, "notes/minutes.txt", "minutes v2\n")
    write(alice, "notes/minutes.txt", "minutes v3 by alice\n")
    write(bob, "budget.csv", "a,b\n1,2\n")
    return {"plan.md": ("plan v2 by bob\n", "bob", 2), "notes/minutes.txt": ("minutes v3 by alice\n", "alice", 3),
            "budget.csv": ("a,b\n1,2\n", "bob", 1)}


def ssh_verify(folder: Path) -> subprocess.CompletedProcess[str]:
    """OpenSSH alone checks the manifest: the principal is the one line of allowed_signers."""
    assert SSH_KEYGEN is not None
    principal = (folder / "allowed_signers").read_text().split(" ")[0]
    with (folder / "manifest.json").open("rb") as manifest:
        return subprocess.run([SSH_KEYGEN, "-Y", "verify", "-f", str(folder / "allowed_signers"), "-I", principal,
                               "-n", "mvault-export", "-s", str(folder / "manifest.json.sig")], stdin=manifest,
                              capture_output=True, text=True)


def files_match(folder: Path, manifest: dict[str, Any]) -> None:
    """Each file's SHA-256 and size as the manifest lists them, checked with hashlib only (no project code)."""
    for f in manifest["files"]:
        data = (folder / f["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["size"], f["sha256"]), f["path"]


@needs_tools
def test_export_read_with_ssh_keygen_alone(org: Org) -> None:
    expected = several_versions(org)
    out = org.alice.home.parent / "export"
    r = org.alice.ok("export", "drafting", "--out", str(out))
    assert "SHA256:" in r.err
    assert ssh_verify(out).returncode == 0, ssh_verify(out).stderr
    manifest = json.loads((out / "manifest.json").read_bytes())
    files_match(out, manifest)
    by_name = {f["name"]: f for f in manifest["files"]}
    assert set(by_name) == set(expected)
    for name, (content, author, version) in expected.items():
        f = by_name[name]
        assert (out / f["path"]).read_text() == content
        assert (f["author_name"], f["version"]) == (author, version)
    assert manifest["exporter"]["name"] == "alice" and manifest["team_name"] == "drafting"
    assert org.alice.ok("export", "verify", str(out)).code == 0


@needs_tools
def test_age_export_for_two_successors_read_with_age_and_ssh_keygen(org: Org, tmp_path: Path) -> None:
    expected = several_versions(org)
    key1, r1 = age_identity(tmp_path, "successor1")
    key2, r2 = age_identity(tmp_path, "successor2")
    archive = tmp_path / "handover.age"
    org.bob.ok("export", "drafting", "plan.md", "notes/", "--age-recipient", r1, "--age-recipient", r2,
               "--out", str(archive))
    assert not archive.read_bytes().count(b"plan v2 by bob")  # encrypted
    for n, key in enumerate((key1, key2)):
        out = tmp_path / f"read{n}"
        age_decrypt_untar(archive, key, out)
        assert ssh_verify(out).returncode == 0, ssh_verify(out).stderr
        manifest = json.loads((out / "manifest.json").read_bytes())
        files_match(out, manifest)
        assert {f["name"]: (f["author_name"], f["version"]) for f in manifest["files"]} == {
            n: (a, v) for n, (_, a, v) in expected.items() if n != "budget.csv"}
        assert manifest["exporter"]["name"] == "bob"
        assert org.bob.ok("export", "verify", str(out)).code == 0
    assert org.bob.ok("export", "verify", str(archive), "--identity", str(key2)).code == 0
    # an altered archive: age refuses it, and so does export verify (a security error: exit 3)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 1
    bad = tmp_path / "altered.age"
    bad.write_bytes(bytes(data))
    assert subprocess.run([str(AGE), "-d", "-i", str(key1), str(bad)], capture_output=True).returncode != 0
    assert org.bob.fails("export", "verify", str(bad), "--identity", str(key1)).code == 3
    other, _ = age_identity(tmp_path, "stranger")
    assert org.bob.fails("export", "verify", str(archive), "--identity", str(other)).code == 3


@needs_tools
def test_an_altered_file_or_manifest_is_caught(org: Org, tmp_path: Path) -> None:
    several_versions(org)
    good = tmp_path / "export"
    org.alice.ok("export", "drafting", "--out", str(good))
    manifest = json.loads((good / "manifest.json").read_bytes())
    plan = next(f["path"] for f in manifest["files"] if f["name"] == "plan.md")

    def variant(name: str) -> Path:
        copy = tmp_path / name
        shutil.copytree(good, copy, symlinks=True)
        return copy

    # a file altered: the signed manifest's hash no longer matches (export verify; and sha256 with no code of ours)
    v = variant("file-altered")
    (v / plan).write_text("plan v2 by bob, with a change\n")
    assert ssh_verify(v).returncode == 0  # the manifest itself is intact...
    with pytest.raises(AssertionError):
        files_match(v, manifest)  # ...and its hash for the file does not match
    assert "does not match the manifest" in org.alice.fails("export", "verify", str(v)).err
    # the manifest altered (a hash replaced to fit an altered file): ssh-keygen and export verify both refuse
    v = variant("manifest-altered")
    text = (v / "manifest.json").read_text()
    entry = next(f for f in manifest["files"] if f["name"] == "plan.md")
    forged = b"forged\n"
    (v / plan).write_bytes(forged)
    (v / "manifest.json").write_text(text.replace(entry["sha256"], hashlib.sha256(forged).hexdigest()).replace(
        f'"size":{entry["size"]}', f'"size":{len(forged)}'))
    assert ssh_verify(v).returncode != 0
    assert org.alice.fails("export", "verify", str(v)).code == 3
    # a file added, a file removed, a file replaced by a link to something else: refused
    v = variant("added")
    (v / "files" / "extra.txt").write_text("planted\n")
    assert "not in its manifest" in org.alice.fails("export", "verify", str(v)).err
    v = variant("removed")
    (v / plan).unlink()
    assert "missing from the export" in org.alice.fails("export", "verify", str(v)).err
    v = variant("linked")
    (v / plan).unlink()
    (v / plan).symlink_to(tmp_path / "export" / plan)
    assert "not a regular file" in org.alice.fails("export", "verify", str(v)).err
    # another key's allowed_signers line: the signature is not by it
    v = variant("other-signer")
    other = tmp_path / "other-export"
    org.bob.ok("export", "drafting", "budget.csv", "--out", str(other))
    shutil.copy(other / "allowed_signers", v / "allowed_signers")
    assert ssh_verify(v).returncode != 0
    assert org.alice.fails("export", "verify", str(v)).code == 3


@needs_tools
def test_hostile_document_names_stay_inside_the_export_and_print_escaped(org: Org, tmp_path: Path) -> None:
    src = tmp_path / "evil.txt"
    src.write_text("evil\n")
    hostile = ["../../pwned.txt", "/tmp/abs-export.md", "docs/\x1b]0;title\x07.md", ".ssh/authorized_keys",
               "rlo\u202etxt.exe", "a", "A", "a/b"]
    p = subprocess.run([sys.executable, "-c", WRITER, "drafting", str(src), *hostile], env=org.bob.env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "deep" / "export"
    out.parent.mkdir()
    r = org.alice.ok("export", "drafting", "--out", str(out))
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in r.out + r.err
    assert "\\x1b]0;title\\x07" in r.out and "\\u202e" in r.out
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert sorted(f["name"] for f in manifest["files"]) == sorted(hostile)  # the names themselves, kept exactly
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(["allowed_signers", "manifest.json", "manifest.json.sig",
                              *(f["path"] for f in manifest["files"])])
    for path in written:  # nothing hidden, nothing beside or above the export, no two files on one path
        assert not any(part.startswith(".") for part in path.split("/")), path
    assert len({p.casefold() for p in written}) == len(written)
    assert not (tmp_path / "pwned.txt").exists() and not Path("/tmp/abs-export.md").exists()
    assert ssh_verify(out).returncode == 0
    files_match(out, manifest)
    v = org.alice.ok("export", "verify", str(out))
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in v.out + v.err


@needs_tools
def test_a_tampered_blob_stops_the_export_and_leaves_nothing(org: Org, tmp_path: Path) -> None:
    """The server is the attacker: a document body altered on its disk (the last one exported, so others were
    written before) fails the export with a security error, and no folder or archive is left behind."""
    several_versions(org)
    plan = next(r for r in org.alice.json("ls", "drafting") if r["name"] == "plan.md")
    path = blob_file(org, version_row(org, plan["vid"])["blob"])
    with blob_replaced(org, plan["vid"], flip_middle(path.read_bytes())):
        out = tmp_path / "export"
        assert org.alice.fails("export", "drafting", "--out", str(out), contains=DECRYPTION).code == 3
        assert not out.exists()
        archive = tmp_path / "export.age"
        _, recipient = age_identity(tmp_path, "successor")
        r = org.alice.fails("export", "drafting", "--age-recipient", recipient, "--out", str(archive),
                            contains=DECRYPTION)
        assert r.code == 3 and not archive.exists()
    org.alice.ok("export", "drafting", "--out", str(out))  # the body restored: the export goes through
