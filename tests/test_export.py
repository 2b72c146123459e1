"""Issue 20, exports: a team's documents as plain files and a manifest signed in SSH's format, read and checked
with Debian's ``age`` and OpenSSH's ``ssh-keygen -Y verify`` alone, and by ``mvault export verify``.

Everything through the real CLI against the real server (tests/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Member, Org

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")
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
