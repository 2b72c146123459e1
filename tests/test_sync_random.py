"""Issue 16: two members editing one team folder at random (fixed seed, bounded), syncing in turns.

Random creations, edits, deletions and renames (also between subfolders) on both sides between passes.
Afterwards both folders are identical, and every content a member had in a file when a pass ran exists
as a file, as a version of a document, or as a conflict copy: sync never loses a byte.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from client.client import Client
from tests.conftest import Member, Org
from tests.helpers.members import in_session
from tests.test_sync import tree, write

ROUNDS = int(os.environ.get("MVAULT_LONG", "0")) or 6  # passes per member (MVAULT_LONG: more)
FOLDERS = ("", "a/", "b/c/")


def mutate(rnd: random.Random, folder: Path, who: str, step: int) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    kind = rnd.choice(["create", "create", "edit", "edit", "delete", "rename"] if files else ["create"])
    if kind == "create":
        write(folder / f"{rnd.choice(FOLDERS)}n{rnd.randint(0, 6)}.md", f"{who} {step} new {rnd.random()}\n")
    elif kind == "edit":
        rnd.choice(files).write_text(f"{who} {step} edit {rnd.random()}\n")
    elif kind == "delete":
        rnd.choice(files).unlink()
    else:
        src = rnd.choice(files)
        dst = folder / f"{rnd.choice(FOLDERS)}r{rnd.randint(0, 6)}.md"
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, dst)


def sync_ok(m: Member, folder: Path) -> None:
    r = m.run("sync", "drafting", str(folder), "--confirm-deletes")
    assert r.code in (0, 1), r.err  # 1: a conflict was reported
    assert "Traceback" not in r.err


def all_contents(org: Org, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every version's content of every document of the team (fetched in one in-process session)."""
    tmp.mkdir()

    async def fetch(c: Client) -> set[str]:
        seen: set[str] = set()
        for i, d in enumerate(await c.docs.ls("drafting", deleted=None)):
            assert d.opened is not None
            for v in await c.docs.history("drafting", d.opened.name):
                if v.opened is not None and v.opened.size:
                    out = tmp / f"v{i}-{v.record.core.seq}"
                    await c.docs.get("drafting", d.opened.name, out, v.record.core.seq)
                    seen.add(out.read_text())
        return seen

    return in_session(org.server, org.alice, fetch, monkeypatch)


@pytest.mark.long
def test_random_edits_on_two_members_converge_and_lose_nothing(org: Org, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(int(os.environ.get("MVAULT_SYNC_SEED", "1616")))
    members = [(org.alice, tmp_path / "A"), (org.bob, tmp_path / "B")]
    saved: set[str] = set()
    for step in range(ROUNDS):
        for m, folder in members:
            folder.mkdir(exist_ok=True)
            for _ in range(rnd.randint(1, 3)):
                mutate(rnd, folder, m.name, step)
            saved |= set(tree(folder).values())
            sync_ok(m, folder)
    for _ in range(2):
        for m, folder in members:
            sync_ok(m, folder)
    a, b = tree(members[0][1]), tree(members[1][1])
    assert a == b
    lost = saved - set(a.values()) - all_contents(org, tmp_path / "versions", monkeypatch)
    assert not lost
