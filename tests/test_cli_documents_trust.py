"""Issue 15, documents: no silent overwrites, no lost updates, folder names (real server, real CLI).

* ``get`` never replaces an existing file unless ``--force``; a file that already holds exactly the
  version is a no-op success; ``-o -`` writes the verified plaintext, and nothing else, to stdout.
* ``put`` names the version its file came from (the local copies index): the lost update of the
  issue (bob edits version 1, alice stores version 2, bob puts) is refused as a conflict naming both
  versions; ``--if-version N`` and ``--force-new-version``.
* ``put -r DIR`` / ``put notes/*.md`` keep folders in names; ``get TEAM PREFIX/ -o DIR`` brings them
  back; every rule of ``vault/names.py`` refuses its bad name; a bad name another member's modified
  client stored is shown escaped and never used as a path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MVAULT, Member, Org
from tests.helpers.members import unlock_here
from tests.helpers.tampering import FRAME_CT, HEADER, blob_file, blob_replaced, version_row

MiB = 1024 * 1024


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def names(m: Member, team: str = "drafting") -> list[str]:
    return sorted(d["name"] for d in m.json("ls", team))


def versions(m: Member, name: str, team: str = "drafting") -> int:
    return len(m.json("history", team, name))



@pytest.fixture(autouse=True)
def _unlocked(org: Org) -> None:
    """alice's and bob's commands open their keystores through an agent (no Argon2id each; the unlock itself:
    tests/test_auth.py)."""
    unlock_here(org.alice, org.bob)


def test_get_never_overwrites_a_file_unless_forced_or_identical(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    src = write(tmp_path / "bob" / "strategy.md", "version one\n")
    bob.ok("put", "drafting", str(src))

    out = tmp_path / "alice" / "out.md"
    out.parent.mkdir()
    first = alice.json("get", "drafting", "strategy.md", "-o", str(out))[0]
    assert out.read_text() == "version one\n" and first["written"] is True

    # the same file again: it holds exactly this version, nothing to do (known from the index, unread)
    again = alice.json("get", "drafting", "strategy.md", "-o", str(out))[0]
    assert again["written"] is False and out.read_text() == "version one\n"
    assert "already there" in alice.ok("get", "drafting", "strategy.md", "-o", str(out)).out

    # a copy the index never saw, with the same content: compared after download, still a no-op
    same = write(tmp_path / "alice" / "same.md", "version one\n")
    assert alice.json("get", "drafting", "strategy.md", "-o", str(same))[0]["written"] is False

    # local edits, same size and other sizes: refused, untouched, exit 1
    for edit in ("version ONE\n", "my local edits to be merged\n"):
        out.write_text(edit)
        r = alice.fails("get", "drafting", "strategy.md", "-o", str(out), contains="exists and is not version 1")
        assert r.code == 1 and "--force" in r.err
        assert out.read_text() == edit
    # the default output name (in the current folder) is protected the same way
    write(tmp_path / "strategy.md", "alice's own strategy.md\n")
    alice.fails("get", "drafting", "strategy.md", contains="exists", cwd=tmp_path)
    assert (tmp_path / "strategy.md").read_text() == "alice's own strategy.md\n"
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".mvault-part")]

    alice.ok("get", "drafting", "strategy.md", "-o", str(out), "--force")
    assert out.read_text() == "version one\n"


def test_get_to_standard_output_only_what_verifies(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    data = os.urandom(3 * MiB + 1000)  # three full frames and a last one
    src = write(tmp_path / "big.bin", data)
    vid = bob.json("put", "drafting", str(src))[0]["vid"]

    def get_stdout(m: Member) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([MVAULT, "get", "drafting", "big.bin", "-o", "-"], env=m.env(), capture_output=True,
                              cwd=tmp_path, timeout=300)

    p = get_stdout(alice)
    assert p.returncode == 0, p.stderr
    assert p.stdout == data
    assert not (tmp_path / "-").exists()

    # a body cut after its first frame: each frame so far decrypts, but the end never verifies;
    # nothing at all reaches standard output
    original = blob_file(org, version_row(org, vid)["blob"]).read_bytes()
    with blob_replaced(org, vid, original[:HEADER + FRAME_CT]):
        p = get_stdout(alice)
    assert p.returncode != 0 and p.stdout == b""
    assert p.stderr.decode().startswith("error: ")

    # --json has nowhere to go beside the document
    r = alice.run("get", "drafting", "big.bin", "-o", "-", "--json")
    assert r.code == 2 and r.out == ""


def test_a_stale_put_is_refused_as_a_conflict_naming_both_versions(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    mine = write(tmp_path / "bob" / "strategy.md", "v1 by bob\n")
    bob.ok("put", "drafting", str(mine))  # version 1; bob's file is version 1
    bob.ok("put", "drafting", str(mine))  # version 2 on top of it: his file was the newest, no conflict
    theirs = tmp_path / "alice" / "strategy.md"
    theirs.parent.mkdir()
    alice.ok("get", "drafting", "strategy.md", "-o", str(theirs))
    write(theirs, "v3 by alice\n")
    assert alice.json("put", "drafting", str(theirs))[0]["version"] == 3

    # the lost update: bob's file came from version 2, alice stored 3; bob's put is refused
    write(mine, "bob's edit of version 2\n")
    r = bob.fails("put", "drafting", str(mine), contains="based on version 2 but version 3 (by alice")
    assert r.code == 1 and "--force-new-version" in r.err and "mvault get drafting strategy.md" in r.err
    assert versions(bob, "strategy.md") == 3
    # --if-version: only if the newest is N
    bob.fails("put", "drafting", str(mine), "--if-version", "2", contains="it is at version 3")
    assert versions(bob, "strategy.md") == 3
    # bob fetches version 3 elsewhere, merges, and says which version he merged
    merged = tmp_path / "bob" / "v3.md"
    bob.ok("get", "drafting", "strategy.md", "-o", str(merged))
    write(mine, "bob's edit merged with v3\n")
    assert bob.json("put", "drafting", str(mine), "--if-version", "3")[0]["version"] == 4
    bob.ok("get", "drafting", "strategy.md", "-o", str(tmp_path / "check.md"))
    assert (tmp_path / "check.md").read_text() == "bob's edit merged with v3\n"

    # alice's file is version 3 now: refused; --force-new-version stores it on top
    write(theirs, "alice insists\n")
    alice.fails("put", "drafting", str(theirs), contains="based on version 3 but version 4 (by bob")
    assert alice.json("put", "drafting", str(theirs), "--force-new-version")[0]["version"] == 5
    # a file this home never fetched nor stored: on top of the newest, as before
    fresh = write(tmp_path / "elsewhere" / "strategy.md", "from nowhere\n")
    assert alice.json("put", "drafting", str(fresh))[0]["version"] == 6

    # --if-version 0: only a new document
    new = write(tmp_path / "bob" / "new.md", "new\n")
    assert bob.json("put", "drafting", str(new), "--if-version", "0")[0]["version"] == 1
    bob.fails("put", "drafting", str(new), "--if-version", "0", contains="it already exists")
    bob.fails("put", "drafting", str(write(tmp_path / "bob" / "other.md", "x")), "--if-version", "2",
              contains="does not exist yet")
    assert "other.md" not in names(bob)
    r = bob.run("put", "drafting", str(new), "--if-version", "1", "--force-new-version")
    assert r.code == 2 and "exclude each other" in r.err

    # in a batch, the stale file fails and the others are stored
    write(theirs, "alice again\n")
    other = write(tmp_path / "alice" / "notes.md", "notes\n")
    r = alice.fails("put", "drafting", str(theirs), str(other), contains="1 of 2 files were not stored")
    assert "based on version 5 but version 6" in r.err
    assert "notes.md" in names(alice) and versions(alice, "strategy.md") == 6

    # the issue's own steps, in bob's folder with the README's commands: get, someone stores a newer
    # version, bob edits and puts: refused
    desk = tmp_path / "desk"
    desk.mkdir()
    bob.ok("get", "drafting", "notes.md", cwd=desk)
    write(other, "alice's notes, version 2\n")
    assert alice.json("put", "drafting", str(other))[0]["version"] == 2
    write(desk / "notes.md", "bob's edit of version 1\n")
    bob.fails("put", "drafting", "notes.md", cwd=desk, contains="based on version 1 but version 2 (by alice")
    assert versions(bob, "notes.md") == 2


def test_folders_put_and_get_keep_relative_paths(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    tree = tmp_path / "tree"
    files = {"a.md": "a\n", "sub/b.md": "b\n", "sub/deeper/c.md": "c\n"}
    for name, text in files.items():
        write(tree / name, text)
    os.symlink("/etc/hostname", tree / "sub" / "link.md")  # not followed, not stored
    r = bob.ok("put", "drafting", "-r", str(tree))
    assert "skipped" in r.err and "link.md" in r.err
    assert names(bob) == sorted(files)

    # plain paths: relative inside the current folder keep their folders; others are file names
    work = tmp_path / "work"
    write(work / "notes" / "n1.md", "n1\n")
    write(work / "notes" / "n2.md", "n2\n")
    write(tmp_path / "outside.md", "o\n")
    bob.ok("put", "drafting", "notes/n1.md", "./notes/n2.md", "../outside.md", cwd=work)
    assert {"notes/n1.md", "notes/n2.md", "outside.md"} <= set(names(bob))
    # without -o a document goes to its name here, folders and all (and put names it back the same way)
    here = tmp_path / "here"
    here.mkdir()
    alice.ok("get", "drafting", "notes/n1.md", cwd=here)
    assert (here / "notes" / "n1.md").read_text() == "n1\n"
    bob.ok("put", "drafting", str(work / "notes" / "n1.md"), "--as", "archive/2027/n1.md")
    assert "archive/2027/n1.md" in names(bob)
    r = bob.run("put", "drafting", str(tree))
    assert r.code == 2 and "put -r" in r.err

    # a prefix into a folder: names under it, with their folders, nothing else
    out = tmp_path / "out"
    got = alice.json("get", "drafting", "sub/", "-o", str(out))
    assert sorted(f["name"] for f in got) == ["sub/b.md", "sub/deeper/c.md"]
    assert (out / "sub" / "b.md").read_text() == "b\n" and (out / "sub" / "deeper" / "c.md").read_text() == "c\n"
    assert not (out / "a.md").exists()
    # every document; what is already there is left alone, a local edit is refused (and only it)
    write(out / "sub" / "b.md", "alice's edit\n")
    r = alice.fails("get", "drafting", "/", "-o", str(out), contains="1 of 7 documents were not fetched")
    assert "sub/b.md" in r.err and (out / "sub" / "b.md").read_text() == "alice's edit\n"
    for name, text in files.items():
        if name != "sub/b.md":
            assert (out / name).read_text() == text
    assert (out / "notes" / "n1.md").read_text() == "n1\n" and (out / "archive" / "2027" / "n1.md").exists()
    alice.ok("get", "drafting", "/", "-o", str(out), "--force")
    assert (out / "sub" / "b.md").read_text() == "b\n"

    # a folder on the way that is a link out of the target: nothing written through it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out2 = tmp_path / "out2"
    out2.mkdir()
    os.symlink(elsewhere, out2 / "sub")
    alice.fails("get", "drafting", "sub/", "-o", str(out2), contains="outside")
    assert list(elsewhere.iterdir()) == []

    # and the folder round trip: the fetched tree, put back, is the same names (with bases known)
    write(out / "sub" / "deeper" / "c.md", "c, edited by alice\n")
    stored = {d["name"]: d["version"] for d in alice.json("put", "drafting", "-r", str(out))}
    assert stored["sub/deeper/c.md"] == 2 and set(stored) == set(names(alice))


def test_every_bad_name_is_refused(org: Org, tmp_path: Path) -> None:
    bob = org.bob
    src = write(tmp_path / "file.md", "x\n")
    bad = {
        "": "may not be empty",
        "/etc/passwd": "may not start with /",
        "a//b.md": "empty folder or file name",
        "notes/": "empty folder or file name",
        "./a.md": "'.' segment",
        "../../pwned.txt": "'..' segment",
        "a/../b.md": "'..' segment",
        "a\\b.md": "backslash",
        "bell\x07.md": "control character",
        "esc\x1b[2J.md": "control character",
        "c1\x9b.md": "control character",
        "bidi\u202egnp.md": "format character",
        "zero\u200bwidth.md": "format character",
        "line\u2028sep.md": "line separator",
        "cafe\u0301.md": "NFC",
        "x" * 256 + ".md": "at most 255 bytes",
        "/".join(["d" * 200] * 6): "at most 1024 bytes",
    }
    for name, rule in bad.items():
        r = bob.fails("put", "drafting", str(src), "--as", name, contains=rule)
        assert r.code == 1
        assert not any(c in r.err for c in "\x07\x1b\x9b\u202e\u200b\u2028"), r.err
    # a file whose own name breaks a rule, and a folder holding one
    ctl = write(tmp_path / "odd" / "tab\there.md", "x\n")
    bob.fails("put", "drafting", str(ctl), contains="control character")
    bob.fails("put", "drafting", "-r", str(ctl.parent), contains="control character")
    assert names(bob) == []
    # get: a name that would be a local path is checked too (with -o FILE any name may be fetched)
    bob.fails("get", "drafting", "../../pwned.txt", contains="'..' segment", cwd=tmp_path)
    bob.fails("get", "drafting", "bad//prefix/", "-o", str(tmp_path / "x"), contains="empty folder")
    assert not (tmp_path.parent / "pwned.txt").exists()


# A member with a modified client stores names the CLI refuses (the check is in the client, the
# server never sees names): the real client library with the check replaced, as such a program would.
WRITER = """
import sys
from pathlib import Path
import client.docs
from client.cli._common import Ctx, with_session
client.docs.check_name = lambda name: name
team, path, names = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
async def go(s):
    await s.docs.put_many(team, [(path, n) for n in names])
with_session(Ctx(False), go)
"""


def test_a_bad_name_from_another_member_is_shown_escaped_and_never_a_path(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    src = write(tmp_path / "evil.txt", "evil\n")
    hostile = ["../../pwned.txt", "docs/\x1b]0;title\x07.md", "/tmp/abs.md"]
    p = subprocess.run([sys.executable, "-c", WRITER, "drafting", str(src), *hostile], env=bob.env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    bob.ok("put", "drafting", str(write(tmp_path / "docs" / "good.md", "good\n")), "--as", "docs/good.md")

    r = alice.ok("ls", "drafting")
    assert "\x1b" not in r.out and "\\x1b]0;title\\x07" in r.out
    assert r.out.count("not a valid name") == 3
    out = tmp_path / "deep" / "er" / "out"
    r = alice.fails("get", "drafting", "/", "-o", str(out), contains="3 of 4 documents were not fetched")
    assert (out / "docs" / "good.md").read_text() == "good\n"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["docs", "docs/good.md"]
    assert not (tmp_path / "deep" / "pwned.txt").exists() and not Path("/tmp/abs.md").exists()
    # fetched into a file named by the member, a bad name is only a lookup key
    alice.ok("get", "drafting", "../../pwned.txt", "-o", str(tmp_path / "safe.txt"))
    assert (tmp_path / "safe.txt").read_text() == "evil\n"
