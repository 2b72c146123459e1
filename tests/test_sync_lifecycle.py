"""Issue 16, the team's life during sync (real server, real CLI): a reader's folder when the team's version of a
file the reader edited changes (the reader's file is kept beside it, never uploaded) and when the reader deletes a
file (not a deletion in the team; the file comes back only if changed there); a key rotation while
`mvault sync --watch` runs (a document under the new generation arrives without a restart); a disk that fills
during a download (a clear error, nothing half-written under a real name, no temporary left; the next sync after
space is freed completes); a disk that is full for a moment while small documents land (they are tried once more
after the others, not reported failed).

Also on this subject, elsewhere: a reader's edits and new files reported `not-pushed` and pulls still done
(tests/test_sync_safety.py), the removal from the team while `--watch` runs (tests/test_sync_watch_cli.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Member, Org, join_member
from tests.helpers.members import unlock_here
from tests.test_sync import acts, sync, tree, write
from tests.test_sync_watch_cli import wait_for, watching


@pytest.fixture
def reader(org: Org, make_member: Any) -> Member:
    carol = join_member(org, make_member, "carol")
    org.alice.ok("team", "add", "drafting", "carol", "--role", "reader")
    return carol


def test_a_readers_edit_of_a_file_changed_in_the_team_is_kept_beside_it_and_not_uploaded(
        org: Org, reader: Member, tmp_path: Path) -> None:
    a, c = tmp_path / "a", tmp_path / "c"
    write(a / "plan.md", "plan v1\n")
    write(a / "agenda.md", "agenda v1\n")
    sync(org.alice, a)
    sync(reader, c)
    write(c / "plan.md", "carol's notes in the plan\n")
    write(a / "plan.md", "plan v2\n")
    sync(org.alice, a)

    r = reader.run("sync", "drafting", str(c), "--json")
    assert r.code == 1, r.err
    [row] = r.json()
    assert row["action"] == "conflict" and row["name"] == "plan.md" and "not uploaded" in row["detail"]
    assert (c / "plan.md").read_text() == "plan v2\n"
    assert (c / row["copy"]).read_text() == "carol's notes in the plan\n"
    assert sorted(d["name"] for d in org.alice.json("ls", "drafting")) == ["agenda.md", "plan.md"]
    r = reader.run("sync", "drafting", str(c), "--json")  # the copy stays a change of hers, reported, kept
    assert r.code == 1 and acts(r.json()) == [("not-pushed", row["copy"])]

    (c / "agenda.md").unlink()  # a reader's deletion is not the team's: reported, nothing stored
    r = reader.run("sync", "drafting", str(c), "--json")
    assert r.code == 1 and ("not-pushed", "agenda.md") in acts(r.json())
    assert [v["op"] for v in org.alice.json("history", "drafting", "agenda.md")] == ["put"]
    write(a / "agenda.md", "agenda v2\n")
    sync(org.alice, a)
    r = reader.run("sync", "drafting", str(c), "--json")
    assert ("pull", "agenda.md") in acts(r.json()) and (c / "agenda.md").read_text() == "agenda v2\n"


def test_a_key_rotation_while_watching_is_picked_up_without_a_restart(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "before.md", "under the first key\n")
    sync(alice, a)
    with watching(bob, b) as proc:
        wait_for("the first document", lambda: (b / "before.md").is_file(), proc)
        assert alice.json("team", "rotate", "drafting")["generation"] == 2
        write(a / "after.md", "under the second key\n")
        write(a / "before.md", "edited under the second key\n")
        sync(alice, a)
        generations = {d["name"]: d["generation"] for d in alice.json("ls", "drafting")}
        assert generations == {"before.md": 2, "after.md": 2}
        expected = {"before.md": "edited under the second key\n", "after.md": "under the second key\n"}
        wait_for("the versions under the new key", lambda: tree(b) == expected, proc)
        (b / "reply.md").write_text("bob's reply, under the key he picked up\n")
        wait_for("bob's save to be stored", lambda: "reply.md" in {d["name"] for d in alice.json("ls", "drafting")},
                 proc)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        output, errors = proc.communicate()
    assert code == 0, errors
    assert {d["name"]: d["generation"] for d in alice.json("ls", "drafting")}["reply.md"] == 2
    rows = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert {("pull", "after.md"), ("pull", "before.md"), ("push", "reply.md")} <= {(r["action"], r["name"])
                                                                                   for r in rows}
    sync(alice, a)
    assert tree(a) == tree(b)


DISK = 8 * 1024 * 1024  # the member's folder: a tmpfs this small
BIG = 6 * 1024 * 1024  # a document that does not fit once the disk is nearly full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 8 MiB for the member's synced folder (mounting needs root: skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0700", "tmpfs", str(disk)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_disk_that_fills_during_a_download_is_a_clear_error_and_the_next_sync_completes(
        org: Org, tmp_path: Path, small_disk: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", small_disk / "b"
    contents = {f"notes/n{i}.md": f"note {i}\n" * 50 for i in range(5)}
    for name, text in contents.items():
        write(a / name, text)
    big = os.urandom(BIG)
    (a / "scan.bin").write_bytes(big)
    sync(alice, a)
    b.mkdir()
    filler = small_disk / "filler"  # beside the folder, not in it: takes all but 3 MiB
    st = os.statvfs(small_disk)
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 3 * 1024 * 1024))

    r = bob.run("sync", "drafting", str(b), "--json")
    assert r.code == 1, r.err  # reported, not a crash, not a "server lie"
    assert "Traceback" not in r.err and r.err.startswith("{")  # the JSON error line after the report
    rows = {row["name"]: row for row in r.json()}
    assert rows["scan.bin"]["action"] == "failed" and "No space left" in rows["scan.bin"]["detail"]
    assert not (b / "scan.bin").exists()  # nothing half-written under the real name
    assert [p.name for p in b.rglob("*") if p.is_file() and p.name not in {"n0.md", "n1.md", "n2.md", "n3.md",
                                                                            "n4.md"}] == []  # no temporary left
    assert tree(b) == contents  # what fitted is whole

    filler.unlink()
    r = bob.run("sync", "drafting", str(b), "--json")
    assert r.code == 0, r.err
    assert acts(r.json()) == [("pull", "scan.bin")]
    assert (b / "scan.bin").read_bytes() == big
    assert sync(bob, b) == []


def test_pulls_that_found_the_disk_full_for_a_moment_are_tried_again_after_the_others(
        org: Org, tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI at stop 34: the small documents of a pass landed while the same pass's big download held the disk's last
    MiB, and were reported failed though there was room once it ended. Made certain here: the server fills the disk
    as it answers the batch download of the small ones, and frees it at the next body asked for (a retry's). Fails
    on the engine before the retry (every note "failed", No space left)."""
    from server.routes import bodies
    from server.store.blobs import FileBlobs

    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", small_disk / "b"
    contents = {f"notes/n{i}.md": f"note {i}\n" * 50 for i in range(5)}
    for name, text in contents.items():
        write(a / name, text)
    sync(alice, a)
    b.mkdir()
    (b / "notes").mkdir()  # made before the disk fills: a folder takes no data block, but let it be plain
    filler = small_disk / "filler"
    batch, single = bodies._version_bodies, FileBlobs.response
    filled: list[int] = []

    async def filling(request: Any) -> Any:
        if not filled:
            st = os.statvfs(small_disk)
            filled.append(st.f_bavail * st.f_frsize)
            filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize))
        return await batch(request)

    def freeing(self: FileBlobs, name: str, headers: Any) -> Any:
        filler.unlink(missing_ok=True)
        return single(self, name, headers)

    monkeypatch.setattr(bodies, "_version_bodies", filling)
    monkeypatch.setattr(FileBlobs, "response", freeing)
    r = bob.run("sync", "drafting", str(b), "--json")
    assert filled and not filler.exists()  # the disk was full, and a retry's request freed it
    assert r.code == 0, r.err
    assert sorted(acts(r.json())) == sorted(("pull", name) for name in contents)
    assert tree(b) == contents
