"""The client's batch put through the batch upload (``client/uploadbatch.py``): a sync of many small files
sends them in a few ``put_versions`` requests (big ones alone, as before), and every acknowledgement is checked
as a single upload's is. Real server (in this process, so its handler can be watched and made to lie), real
CLI; the server as attacker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import server.routes.batch as batch_routes
import server.routes.docs as doc_routes
from server import http
from tests.conftest import Org
from tests.helpers.members import unlock_here
from vault.wire import schemas

SMALL_FILES = 30


@pytest.fixture
def requests_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[int]]]:
    """The item count of each batch request the server read, and one entry per single upload."""
    seen: dict[str, list[int]] = {"batch": [], "single": []}
    split, single = batch_routes.split_items, doc_routes._put_version

    def counting(body: bytes) -> list[memoryview]:
        items = split(body)
        seen["batch"].append(len(items))
        return items

    async def counting_single(request: Any, *args: Any) -> Any:
        seen["single"].append(1)
        return await single(request, *args)

    monkeypatch.setattr(batch_routes, "split_items", counting)
    monkeypatch.setattr(doc_routes, "_put_version", counting_single)
    yield seen


def _tree(root: Path) -> dict[str, bytes]:
    files = {f"notes/{i:02}.txt": f"note {i}\n".encode() * (i * 40 + 1) for i in range(SMALL_FILES)}
    files["big.bin"] = bytes(range(256)) * 1024  # 256 KiB: a single upload
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_a_sync_sends_small_files_in_batches(org: Org, tmp_path: Path, requests_seen: dict[str, list[int]]) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    files = _tree(tmp_path / "alice")
    pushed = alice.json("sync", "drafting", str(tmp_path / "alice"))
    assert sorted(r["name"] for r in pushed if r["action"] == "push") == sorted(files)
    assert sum(requests_seen["batch"]) == SMALL_FILES and len(requests_seen["batch"]) < SMALL_FILES // 2
    assert requests_seen["single"] == [1]  # big.bin
    bob.ok("sync", "drafting", str(tmp_path / "bob"))
    assert {n: (tmp_path / "bob" / n).read_bytes() for n in files} == files
    # Edits of those documents (one version on top of each, as before) arrive as their second versions.
    for name in list(files)[:5]:
        (tmp_path / "alice" / name).write_bytes(b"second " + files[name])
    alice.ok("sync", "drafting", str(tmp_path / "alice"))
    bob.ok("sync", "drafting", str(tmp_path / "bob"))
    assert (tmp_path / "bob" / "notes/00.txt").read_bytes() == b"second " + files["notes/00.txt"]
    assert [v["version"] for v in bob.json("history", "drafting", "notes/00.txt")] == [1, 2]


def _lying(monkeypatch: pytest.MonkeyPatch, lie: Any) -> None:
    """The batch handler answers what ``lie`` makes of its true outcomes (what it stored stays stored)."""
    answer = http.answer  # what server/routes/batch.py calls (patched there, where it is looked up)

    def lying_answer(value: Any, status: int = 200) -> Any:
        if isinstance(value, schemas.BatchStored):
            value = schemas.BatchStored(outcomes=lie(value.outcomes))
        return answer(value, status)

    monkeypatch.setattr(batch_routes, "answer", lying_answer)


@pytest.mark.parametrize("lie", ["swap", "drop", "claim"])
def test_a_server_that_lies_about_a_batch_is_caught(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    lie: str) -> None:
    """Acknowledging one item with another's version, answering fewer outcomes than items, or claiming a
    stored version without naming it: the pass stops as a detected server lie (exit 3), and what the
    client did not see acknowledged is not recorded as in step (the next honest pass pushes it)."""
    alice = org.alice
    unlock_here(alice)
    folder = tmp_path / "alice"
    files = {f"f{i}.txt": f"file {i}".encode() for i in range(6)}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    lies = {
        "swap": lambda o: [o[1], o[0], *o[2:]],
        "drop": lambda o: o[:-1],
        "claim": lambda o: [schemas.BatchOutcome(status=201), *o[1:]],
    }
    _lying(monkeypatch, lies[lie])
    r = alice.run("sync", "drafting", str(folder))
    assert r.code == 3, (r.code, r.err, r.out)
    monkeypatch.undo()
    rerun = alice.json("sync", "drafting", str(folder))
    assert all(row["action"] in ("push", "in-step", "indexed") for row in rerun), rerun
    listed = {row["name"] for row in alice.json("ls", "drafting")}
    assert set(files) <= listed
