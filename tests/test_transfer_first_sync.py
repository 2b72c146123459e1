"""A first sync (and a folder ``get``) fetches a document whose listed head is its first version without asking
the server for its versions again: the listing checked that head, which is its whole history. Real server (in
this process, so its handlers can be counted), real CLI; the server as attacker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import server.routes.docs as doc_routes
from server.notes import note as server_note
from tests.conftest import Org
from tests.helpers.members import unlock_here
from tests.helpers.tampering import blob_file, blob_replaced, flip_middle, version_row


@pytest.fixture
def versions_asked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The document ids whose versions a client asked the server for (``GET /teams/T/docs/D``)."""
    asked: list[str] = []
    note = server_note  # what server/routes/docs.py calls (patched there, where it is looked up)

    def counting(request: Any, action: str, detail: dict[str, Any]) -> Any:
        if action == "doc.list" and "doc" in detail:
            asked.append(detail["doc"])
        return note(request, action, detail)

    monkeypatch.setattr(doc_routes, "note", counting)
    yield asked


def _tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha", "sub/b.txt": b"beta" * 1000, "sub/deeper/c.bin": bytes(range(256)) * 5000}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_first_sync_down_asks_only_for_documents_with_history(org: Org, tmp_path: Path,
                                                              versions_asked: list[str]) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    up = tmp_path / "alice"
    files = _tree(up)
    alice.ok("sync", "drafting", str(up))
    (up / "a.txt").write_bytes(b"alpha, second version")  # a document with two versions
    files["a.txt"] = b"alpha, second version"
    alice.ok("sync", "drafting", str(up))
    versions_asked.clear()
    down = tmp_path / "bob"
    bob.ok("sync", "drafting", str(down))
    assert {n: (down / n).read_bytes() for n in files} == files
    assert len(versions_asked) == 1  # a.txt's history; the two first versions came from the listing
    # Pinned as before: the next pass is in step, and a later version is fetched (asking for its history).
    assert all(r["action"] == "in-step" for r in bob.json("sync", "drafting", str(down)))
    (up / "sub/b.txt").write_bytes(b"beta, second version")
    alice.ok("sync", "drafting", str(up))
    bob.ok("sync", "drafting", str(down))
    assert (down / "sub/b.txt").read_bytes() == b"beta, second version"


def test_folder_get_fetches_first_versions_from_the_listing(org: Org, tmp_path: Path,
                                                            versions_asked: list[str]) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    files = _tree(tmp_path / "src")
    alice.ok("sync", "drafting", str(tmp_path / "src"))
    versions_asked.clear()
    bob.ok("get", "drafting", "sub/", "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == files["sub/b.txt"]
    assert (tmp_path / "out" / "sub" / "deeper" / "c.bin").read_bytes() == files["sub/deeper/c.bin"]
    assert versions_asked == []


def test_a_server_that_swaps_a_first_versions_body_is_caught(org: Org, tmp_path: Path,
                                                              versions_asked: list[str]) -> None:
    """The listing's head is all the client checked before the body: a body the server altered still fails its
    signed hash or its frames, the sync stops as a security error (exit 3) and nothing lands under the name."""
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    _tree(tmp_path / "src")
    alice.ok("sync", "drafting", str(tmp_path / "src"))
    [row] = [r for r in alice.json("ls", "drafting") if r["name"] == "sub/deeper/c.bin"]
    blob = version_row(org, row["vid"])["blob"]
    down = tmp_path / "bob"
    with blob_replaced(org, row["vid"], flip_middle(blob_file(org, blob).read_bytes())):
        r = bob.run("sync", "drafting", str(down))
    assert r.code == 3, r.err
    assert not (down / "sub" / "deeper" / "c.bin").exists()
    assert not list(down.rglob("*.mvault-part"))
