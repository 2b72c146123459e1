"""Issue 16, sync bad input: a clear refusal, nothing changed (real server, real CLI).

DIR a file, missing (made on a first sync only), inside or around another synced folder, inside the
client's home; hostile document names from a member's modified client (escaping DIR, absolute, hidden,
control characters) are reported as skipped and never used as paths.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import Org
from tests.test_cli_documents_trust import WRITER
from tests.test_sync import acts, sync, tree, write


def test_dir_a_file_missing_nested_or_in_the_home(org: Org, tmp_path: Path) -> None:
    alice = org.alice
    f = write(tmp_path / "file.txt", "x")
    r = alice.run("sync", "drafting", str(f))
    assert r.code == 2 and "is not a folder" in r.err
    assert alice.run("sync", "drafting").code == 2
    assert alice.run("sync", "status", "a", "b").code == 2

    a = tmp_path / "deep" / "a"
    assert sync(alice, a) == [] and a.is_dir()  # a first sync makes the folder
    write(a / "inner" / "x.md", "x")
    before = alice.json("ls", "drafting")
    r = alice.fails("sync", "drafting", str(a / "inner"), contains="another synced folder")
    assert r.code == 1
    r = alice.fails("sync", "drafting", str(tmp_path / "deep"), contains="another synced folder")
    assert r.code == 1
    r = alice.fails("sync", "drafting", str(alice.home / "docs"), contains="home")
    assert r.code == 1 and not (alice.home / "docs").exists()
    assert alice.json("ls", "drafting") == before == []
    r = alice.run("sync", "status", str(tmp_path / "deep"))
    assert r.code == 2 and "not a synced folder" in r.err


def test_hostile_names_are_skipped_and_never_paths(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    src = write(tmp_path / "evil.txt", "evil\n")
    hostile = ["../../pwned.txt", "/tmp/abs-sync.md", "docs/\x1b]0;title\x07.md", ".ssh/authorized_keys"]
    p = subprocess.run([sys.executable, "-c", WRITER, "drafting", str(src), *hostile], env=bob.env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    bob.ok("put", "drafting", str(write(tmp_path / "good.md", "good\n")), "--as", "good.md")
    a = tmp_path / "x" / "y" / "a"
    r = alice.run("sync", "drafting", str(a), "--json")
    assert r.code == 0, r.err
    rows = r.json()
    assert [x["name"] for x in rows if x["action"] == "pull"] == ["good.md"]
    skipped = [x for x in rows if x["action"] == "skipped"]
    assert sorted(x["name"] for x in skipped) == sorted(hostile) and all(x["detail"] for x in skipped)
    assert "'..' segment" in next(x["detail"] for x in skipped if x["name"] == "../../pwned.txt")
    assert tree(a) == {"good.md": "good\n"}
    assert not (tmp_path / "x" / "pwned.txt").exists() and not Path("/tmp/abs-sync.md").exists()
    text = alice.ok("sync", "drafting", str(a)).out
    assert "\x1b" not in text
    assert acts(sync(alice, a, "--hidden")) == [("pull", ".ssh/authorized_keys"), *(
        ("skipped", x["name"]) for x in skipped if ".ssh" not in x["name"])]
