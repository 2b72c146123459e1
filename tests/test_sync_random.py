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

from tests.conftest import Org
from tests.helpers.sync_world import all_contents, mutate, sync_ok
from tests.test_sync import tree

ROUNDS = int(os.environ.get("MVAULT_LONG", "0")) // 100 or 6  # passes per member (make test-long: 50)


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
