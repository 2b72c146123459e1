"""Issue 16, crash safety both ways: `mvault sync` killed with SIGKILL at random points of passes that push
and pull at once (many small files and a few of a few MiB), then run again to completion; and a file
appended to while it is being uploaded.

After every kill, every file under a real name holds bytes some member saved under that name (no partial
file). After the completing pass: no download temporary is left in the folder, no local edit is lost, every
version of every document is content a member saved under its name and no two consecutive versions are the
same content (each save here has a size of its own, so a version stored twice would show), no conflict copy
(a pass never conflicts with its own earlier, killed work), and the other member's sync sees the same tree.
``MVAULT_LONG`` (as tests/test_authority_model.py reads it) runs 20 cycles instead of 3.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from client.client import Client
from tests.conftest import MVAULT, Member, Org
from tests.helpers.members import in_session, unlock_here
from tests.test_sync_crash import killed

LONG = int(os.environ.get("MVAULT_LONG", "0") or 0)
CYCLES = 20 if LONG else 3
SMALL = 30  # small files per member (60 in all)
MIB = 1024 * 1024


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files(folder: Path) -> dict[str, str]:
    """Every regular file under ``folder`` (hidden ones too): relative name -> sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): digest(p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


def real(folder: Path) -> dict[str, str]:
    """The files sync treats as documents (no hidden part, no temporary)."""
    return {n: h for n, h in files(folder).items() if not any(part.startswith(".") for part in n.split("/"))}


class Saves:
    """Every content each member saved under each name (as sha256), and the sizes, each save's own."""

    def __init__(self) -> None:
        self.by_name: dict[str, set[str]] = defaultdict(set)
        self.last: dict[str, str] = {}

    def save(self, path: Path, name: str, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.by_name[name].add(digest(data))
        self.last[name] = digest(data)


def original(name: str) -> str:
    """The name a conflict copy was made of (``NAME (conflict MEMBER DATE TIME).EXT``), else ``name``."""
    return re.sub(r" \(conflict alice [^)]*\)", "", name)


def sync_ok(m: Member, folder: Path) -> str:
    r = m.run("sync", "drafting", str(folder), "--json")
    assert r.code == 0, f"sync failed ({r.code}): {r.err}{r.out}"
    return r.out


def versions(org: Org, monkeypatch: pytest.MonkeyPatch, tmp: Path) -> dict[str, list[str]]:
    """Every document's versions in order (sha256 of each one's content), fetched in one in-process session."""
    tmp.mkdir()

    async def fetch(c: Client) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for i, d in enumerate(await c.docs.ls("drafting")):
            assert d.opened is not None
            name = d.opened.name
            out[name] = []
            for v in await c.docs.history("drafting", name):
                target = tmp / f"{i}-{v.record.core.seq}"
                await c.docs.get("drafting", name, target, v.record.core.seq)
                out[name].append(digest(target.read_bytes()))
        return out

    return in_session(org.server, org.alice, fetch, monkeypatch)


def test_kill_9_at_random_points_of_passes_both_ways_then_sync_again(org: Org, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(1616)
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    a, b = tmp_path / "a", tmp_path / "b"
    saves = Saves()
    mine = {"alice": [f"alice/s{i % 3}/f{i}.md" for i in range(SMALL)] + ["big/alice.bin"],
            "bob": [f"bob/f{i}.txt" for i in range(SMALL)] + ["big/bob.bin"]}
    count: dict[str, int] = defaultdict(int)

    def edit(folder: Path, name: str) -> None:
        """A new content for ``name`` of a size no earlier save of it had (small: a line more; big: a few KiB)."""
        count[name] += 1
        k = count[name]
        if name.endswith(".bin"):
            data = rnd.randbytes(3 * MIB + 4096 * k)
        else:
            data = b"".join(f"{name} save {j}\n".encode() for j in range(k))
        saves.save(folder / name, name, data)

    for name in mine["alice"] + mine["bob"]:
        edit(a, name)
    saves.save(a / "big/still.bin", "big/still.bin", rnd.randbytes(2 * MIB))
    sync_ok(alice, a)
    sync_ok(bob, b)
    start = time.monotonic()
    alice.ok("sync", "drafting", str(a), "--dry-run")
    unit = max(0.3, time.monotonic() - start)  # about one command's start-up, login and scan on this machine

    kills = 0
    for cycle in range(CYCLES):
        for name in rnd.sample(mine["bob"][:-1], 4) + (["big/bob.bin"] if cycle % 2 == 0 else []):
            edit(b, name)  # versions for alice to pull
        sync_ok(bob, b)
        for name in rnd.sample(mine["alice"][:-1], 4) + (["big/alice.bin"] if cycle % 2 == 1 else []):
            edit(a, name)  # local changes for alice to push
        new = f"alice/new/c{cycle}.md"
        edit(a, new)
        mine["alice"].append(new)
        kills += killed(alice.env(), a, unit * rnd.uniform(0.5, 2.5))
        for name, h in real(a).items():  # nothing partial under a real name, whenever the kill came
            assert h in saves.by_name[original(name)], f"{name}: bytes nobody saved under this name after a kill"

    assert kills >= 1  # the points above hit passes at work (else this test checks nothing)
    r = alice.run("sync", "drafting", str(a), "--json")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.err  # 1: a conflict copy (see below)
    assert sync_ok(alice, a).strip() == "[]"  # in step: nothing was left half-done
    assert files(a) == real(a)  # no temporary left anywhere in the folder

    # Every member's last save is in the folder. A conflict copy is tolerated only in the one window no record
    # covers (a kill after the server stored alice's upload, before her client recorded it, then a new save of
    # the same file): the copy holds a save of hers the document does not have (nothing lost). Never a conflict
    # on a file she did not edit, never a copy of content the document already has (a conflict with itself).
    now = real(a)
    conflicts = {copy: original(copy) for copy in now if original(copy) != copy}
    for copy, name in conflicts.items():
        assert name in mine["alice"], f"{copy}: a conflict on a file only bob edited"
        assert now[copy] in saves.by_name[name]
        saves.by_name[copy] = {now[copy]}
    assert set(now) - set(conflicts) == set(saves.last)
    for name, last in saves.last.items():
        assert now[name] in saves.by_name[name]
        assert last == now[name] or last in {now[c] for c, n in conflicts.items() if n == name}, f"{name}: lost"
    expected = now
    sync_ok(bob, b)
    assert files(b) == real(b) and real(b) == real(a)

    stored = versions(org, monkeypatch, tmp_path / "versions")
    assert set(stored) == set(expected)
    for name, chain in stored.items():
        assert set(chain) <= saves.by_name[name], f"{name}: a version nobody saved"
        assert all(x != y for x, y in zip(chain, chain[1:], strict=False)), f"{name}: a version stored twice"
        assert chain[-1] == expected[name]
    for copy, name in conflicts.items():
        assert not set(stored[copy]) & set(stored[name]), f"{copy}: content its document already had"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # stored (renamed away) between the listing and the stat
        return 0


@pytest.mark.parametrize("batch", [False, True], ids=["alone", "in-a-batch-put"])
def test_a_file_appended_to_while_it_is_uploaded_is_pushed_again_by_the_next_pass(org: Org, tmp_path: Path,
                                                                                   batch: bool) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    if batch:  # two new files: one batch put (client/docs.py put_many) instead of one write_op
        (a / "agenda.md").write_text("agenda\n")
    big = a / "minutes.bin"
    first = random.Random(7).randbytes(64 * MIB)
    big.write_bytes(first)
    uploads = org.server.data_dir / "tmp"
    p = subprocess.Popen([MVAULT, "sync", "drafting", str(a), "--json"], env=alice.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    # The big file's upload under way: more than the small file could ever write (in a batch, agenda.md's
    # temporary upload can appear first; an append seen before the big upload began would be uploaded with it).
    while not any(_size(f) > MIB for f in uploads.glob("upload-*")):
        assert p.poll() is None and time.monotonic() < end, "the upload was never seen under way"
        time.sleep(0.005)
    with big.open("ab") as f:
        f.write(b"appended while it was uploaded\n")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, err  # reported (a change not stored), not a server caught lying (3), no crash
    assert "Traceback" not in err
    rows = {r["name"]: r for r in json.loads(out)}
    grew = rows["minutes.bin"]
    assert grew["action"] == "failed" and "changed while it was uploaded" in grew["detail"]
    assert set(rows) == ({"minutes.bin", "agenda.md"} if batch else {"minutes.bin"})
    sync_ok(alice, a)
    assert big.read_bytes() == first + b"appended while it was uploaded\n"  # the member's file untouched
    sync_ok(bob, b)
    assert (b / "minutes.bin").read_bytes() == big.read_bytes()
    history = alice.json("history", "drafting", "minutes.bin")
    assert [v["size"] for v in history][-1] == len(first) + len(b"appended while it was uploaded\n")
    assert len({v["size"] for v in history}) == len(history)  # nothing stored twice


@pytest.mark.parametrize("lost", ["folder-index-after-push", "folder-index-after-pull", "both-indexes-after-pull"])
def test_a_pass_killed_before_it_recorded_its_work_is_finished_without_a_conflict(org: Org, tmp_path: Path,
                                                                                  lost: str) -> None:
    """The state a kill leaves at a deterministic point: the folder's index (saved every half second) and, for a
    pull, the local copies index (saved every second) put back as they were before the pass. The next pass
    recognises the work as done: a push goes on top of the version it stored, a pull is fetched over (no
    conflict copy, no second version)."""
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "notes").mkdir(parents=True)
    (a / "notes/plan.md").write_text("plan v1\n")
    sync_ok(alice, a)
    sync_ok(bob, b)
    [index] = (alice.home / "sync").glob("*.bin")
    kept = {p: p.read_bytes() for p in [index, *alice.home.glob("index.bin")]
            if p == index or lost == "both-indexes-after-pull"}
    assert len(kept) == (2 if lost == "both-indexes-after-pull" else 1)
    who = "alice" if lost == "folder-index-after-push" else "bob"
    texts = ["plan v1\n", f"plan v2 by {who}\n", f"plan v3 by {who}, a longer line\n"]
    side, member = (a, alice) if who == "alice" else (b, bob)
    (side / "notes/plan.md").write_text(texts[1])
    sync_ok(member, side)
    if who == "bob":
        sync_ok(alice, a)  # the pull
    for p, data in kept.items():
        p.write_bytes(data)  # as if killed right after its work, before it was recorded

    (side / "notes/plan.md").write_text(texts[2])
    if who == "bob":
        sync_ok(bob, b)
    rows = json.loads(sync_ok(alice, a))
    assert [(r["action"], r["name"], r["seq"]) for r in rows] == [("push" if who == "alice" else "pull",
                                                                   "notes/plan.md", 3)]
    assert sorted(p.name for p in a.rglob("*") if p.is_file()) == ["plan.md"]  # no conflict copy
    assert (a / "notes/plan.md").read_text() == texts[2]
    sizes = [v["size"] for v in alice.json("history", "drafting", "notes/plan.md")]
    assert sizes == [len(t) for t in texts]  # no second version
    assert sync_ok(alice, a).strip() == "[]"
