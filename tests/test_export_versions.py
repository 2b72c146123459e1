"""``mvault export TEAM --all-versions`` (issue 20): every version of each document, by several authors, one file
and one manifest entry each (``NAME@vN``), read and checked with OpenSSH and hashlib alone, and by ``export verify``
(an altered old version is caught); in an age export too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Org
from tests.helpers.agetools import AGE, AGE_KEYGEN, age_decrypt_untar, age_identity
from tests.test_export import files_match, several_versions, ssh_verify

needs_tools = pytest.mark.skipif(not (AGE and AGE_KEYGEN and shutil.which("ssh-keygen")),
                                 reason="Debian's age and openssh-client (.ci/run installs them)")

EVERY = {("plan.md", 1): ("plan v1\n", "alice"), ("plan.md", 2): ("plan v2 by bob\n", "bob"),
         ("notes/minutes.txt", 1): ("minutes v1\n", "alice"), ("notes/minutes.txt", 2): ("minutes v2\n", "alice"),
         ("notes/minutes.txt", 3): ("minutes v3 by alice\n", "alice"), ("budget.csv", 1): ("a,b\n1,2\n", "bob")}


def listed(folder: Path) -> dict[tuple[str, int], tuple[str, str]]:
    manifest = json.loads((folder / "manifest.json").read_bytes())
    files_match(folder, manifest)
    assert len({(f["doc"], f["version"]) for f in manifest["files"]}) == len(manifest["files"])
    return {(f["name"], f["version"]): ((folder / f["path"]).read_text(), f["author_name"]) for f in manifest["files"]}


@needs_tools
def test_every_version_of_every_document(org: Org, tmp_path: Path) -> None:
    several_versions(org)
    out = tmp_path / "all"
    org.alice.ok("export", "drafting", "--all-versions", "--out", str(out))
    assert ssh_verify(out).returncode == 0
    assert listed(out) == EVERY
    assert (out / "files" / "notes" / "minutes.txt@v2").read_text() == "minutes v2\n"
    assert org.bob.ok("export", "verify", str(out), "--check-chain").code == 0
    newest = tmp_path / "newest"
    org.alice.ok("export", "drafting", "--out", str(newest))
    assert sorted(listed(newest)) == [("budget.csv", 1), ("notes/minutes.txt", 3), ("plan.md", 2)]
    (out / "files" / "plan.md@v1").write_text("plan v1, rewritten\n")  # an old version altered afterwards
    r = org.bob.run("export", "verify", str(out))
    assert r.code == 3 and "plan.md@v1" in r.err, r.err


@needs_tools
def test_every_version_of_named_documents_in_an_age_export(org: Org, tmp_path: Path) -> None:
    several_versions(org)
    key, recipient = age_identity(tmp_path, "successor")
    archive = tmp_path / "plan.age"
    org.bob.ok("export", "drafting", "plan.md", "--all-versions", "--age-recipient", recipient, "--out", str(archive))
    plain = tmp_path / "plain"
    age_decrypt_untar(archive, key, plain)
    assert ssh_verify(plain).returncode == 0
    assert listed(plain) == {k: v for k, v in EVERY.items() if k[0] == "plan.md"}
    assert org.bob.ok("export", "verify", str(archive), "--identity", str(key)).code == 0
