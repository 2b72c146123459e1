"""Issue 16: folder sync checked against a model (see the model test, added next)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import Org
from tests.helpers.sync_world import TEAM, files_of, write


def test_a_pass_after_a_rename_or_deletion_lists_deleted_documents_too(org: Org, tmp_path: Path) -> None:
    """Found by the model: the pass after a rename or a deletion stopped with "the server's listing leaves
    out 1 document(s)" (exit 3): the engine asked for the live documents only, so the index's deleted
    documents were missing from its own listing."""
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "plan.md", "plan\n")
    write(a / "gone.md", "gone\n")
    alice.ok("sync", TEAM, str(a))
    bob.ok("sync", TEAM, str(b))
    (a / "sub").mkdir()
    os.rename(a / "plan.md", a / "sub" / "plan.md")
    (a / "gone.md").unlink()
    alice.ok("sync", TEAM, str(a), "--confirm-deletes")
    write(a / "more.md", "more\n")
    rows = alice.json("sync", TEAM, str(a))
    assert [(r["action"], r["name"]) for r in rows] == [("push", "more.md")]
    rows = bob.json("sync", TEAM, str(b))
    assert {(r["action"], r["name"]) for r in rows} >= {("delete-local", "gone.md"), ("pull", "sub/plan.md")}
    assert files_of(b) == files_of(a) == {"sub/plan.md": b"plan\n", "more.md": b"more\n"}
