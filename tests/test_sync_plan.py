"""Issue 16: the three-way reconcile (client/sync/plan.py) as a table of cases, no server, no files.

Each case: the folder now (a file's content as a letter; ``=`` unchanged since the index entry), the
index (content letter and version) and the team's heads (content letter and version, ``X``: a signed
deletion) -> the actions. Plus the listing checks (a withheld document, an empty listing, a version
that went back), the mass-deletion rule, renames and a reader's plan.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client.sync.plan import MAX_DELETE_SHARE, Action, Remote, reconcile
from client.sync.scan import LocalFile
from vault.errors import IntegrityError, RollbackDetected
from vault.syncindex import SyncEntry, SyncIndex


def h(c: str) -> bytes:
    return c.encode() * 32


def doc(name: str) -> str:
    return f"{abs(hash(name)) % 16**32:032x}"


def vid(name: str, seq: int) -> str:
    return f"{abs(hash((name, seq))) % 16**32:032x}"


def local(name: str, c: str, ino: int = 1) -> LocalFile:
    """``c`` ``=``: the unchanged file (not read), else a file read with content ``c``."""
    return LocalFile(str(Path("/f") / name), 1, 1, ino, None if c == "=" else h(c))


def entry(name: str, c: str, seq: int, ino: int = 1) -> SyncEntry:
    return SyncEntry(vid(name, seq), seq, h(c), 1, 1, ino, doc(name))


def head(name: str, seq: int, deleted: bool = False) -> Remote:
    return Remote(doc(name), seq, vid(name, seq), name, deleted)


def plan(files: dict[str, LocalFile], idx: dict[str, SyncEntry], remote: list[Remote],
         **kw: bool) -> list[tuple[str, str]]:
    index = SyncIndex("t" * 32, "/f")
    for n, e in idx.items():
        index.record(n, e)
    kw.setdefault("may_write", True)
    return [(a.kind, a.name) for a in reconcile(files, set(), index, remote, **kw)]


CASES: list[tuple[str, dict[str, str], dict[str, tuple[str, int]], dict[str, int], list[tuple[str, str]]]] = [
    # id, local {name: content}, index {name: (content, seq)}, remote {name: seq, -seq: deleted}, actions
    ("in step", {"a": "="}, {"a": ("a", 1)}, {"a": 1}, []),
    ("touched, same content", {"a": "a"}, {"a": ("a", 1)}, {"a": 1}, [("refresh", "a")]),
    ("edited here", {"a": "b"}, {"a": ("a", 1)}, {"a": 1}, [("push", "a")]),
    ("edited there", {"a": "="}, {"a": ("a", 1)}, {"a": 2}, [("pull", "a")]),
    ("edited both", {"a": "b"}, {"a": ("a", 1)}, {"a": 2}, [("conflict", "a")]),
    ("new here", {"a": "a"}, {}, {}, [("push", "a")]),
    ("new there", {}, {}, {"a": 1}, [("pull", "a")]),
    ("new on both sides", {"a": "a"}, {}, {"a": 1}, [("pull", "a")]),
    ("deleted there, unchanged here", {"a": "="}, {"a": ("a", 1)}, {"a": -2}, [("delete-local", "a")]),
    ("deleted there, edited here", {"a": "b"}, {"a": ("a", 1)}, {"a": -2}, [("push", "a")]),
    ("deleted here", {"b": "=", "c": "="}, {"a": ("a", 1), "b": ("b", 1), "c": ("c", 1)}, {"a": 1, "b": 1, "c": 1},
     [("delete-remote", "a")]),
    ("deleted here, edited there", {}, {"a": ("a", 1)}, {"a": 2}, [("pull", "a")]),
    ("deleted both", {}, {"a": ("a", 1)}, {"a": -2}, [("forget", "a")]),
    ("deleted there before we knew it", {}, {}, {"a": -2}, []),
    ("new here over an old deletion", {"a": "a"}, {}, {"a": -2}, [("push", "a")]),
]


@pytest.mark.parametrize(("files", "idx", "remote", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_reconcile(files: dict[str, str], idx: dict[str, tuple[str, int]], remote: dict[str, int],
                   expected: list[tuple[str, str]]) -> None:
    got = plan({n: local(n, c, ino=ord(n[0])) for n, c in files.items()},
               {n: entry(n, c, s, ino=ord(n[0])) for n, (c, s) in idx.items()},
               [head(n, abs(s), s < 0) for n, s in remote.items()])
    assert got == expected


def test_a_withheld_document_an_empty_listing_and_a_rollback_are_lies() -> None:
    idx = {"a": entry("a", "a", 2), "b": entry("b", "b", 1)}
    with pytest.raises(IntegrityError, match="leaves out 1"):
        plan({"a": local("a", "="), "b": local("b", "=")}, idx, [head("a", 2)])
    with pytest.raises(IntegrityError, match="listed no document"):
        plan({"a": local("a", "="), "b": local("b", "=")}, idx, [])
    with pytest.raises(RollbackDetected):
        plan({"a": local("a", "="), "b": local("b", "=")}, idx, [head("a", 1), head("b", 1)])
    # a deleted document is still listed (its head is the signed deletion): no lie
    assert plan({"a": local("a", "=")}, idx, [head("a", 2), head("b", 2, deleted=True)]) == [("forget", "b")]


def test_mass_deletions_are_refused_unless_confirmed() -> None:
    names = ["a", "b", "c", "d"]
    idx = {n: entry(n, n, 1, ino=i) for i, n in enumerate(names)}
    remote = [head(n, 1) for n in names]
    files = {"d": local("d", "=", ino=3)}
    assert plan(files, idx, remote) == [("refused", "a"), ("refused", "b"), ("refused", "c")]
    assert plan(files, idx, remote, confirm_deletes=True) == [("delete-remote", n) for n in "abc"]
    half = {n: local(n, "=", ino=i) for i, n in enumerate(names) if n in "cd"}
    assert len(names) * MAX_DELETE_SHARE == 2
    assert plan(half, idx, remote) == [("delete-remote", "a"), ("delete-remote", "b")]  # not more than the share
    assert plan({}, {"a": idx["a"]}, [head("a", 1)], vanished=True) == [("refused", "a")]


def test_a_rename_is_a_move_only_for_the_same_inode_size_and_content() -> None:
    idx = {n: entry(n, n, 1, ino=i) for i, n in enumerate("abc")}
    remote = [head(n, 1) for n in "abc"]
    files = {"b": local("b", "=", ino=1), "c": local("c", "=", ino=2), "x/a2": local("x/a2", "a", ino=0)}
    index = SyncIndex("t" * 32, "/f")
    for n, e in idx.items():
        index.record(n, e)
    [move] = reconcile(files, set(), index, remote, may_write=True)
    assert move == Action("move", "x/a2", doc("a"), base=1, source="a")
    files["x/a2"] = local("x/a2", "z", ino=0)  # other content: a new document and a deletion
    assert plan(files, idx, remote) == [("push", "x/a2"), ("delete-remote", "a")]


def test_a_readers_changes_are_reported_not_pushed_and_pulls_still_happen() -> None:
    idx = {"a": entry("a", "a", 1), "b": entry("b", "b", 1), "c": entry("c", "c", 1)}
    files = {"a": local("a", "z"), "b": local("b", "="), "c": local("c", "="), "new": local("new", "n")}
    remote = [head("a", 1), head("b", 2), head("c", 1)]
    assert plan(files, idx, remote, may_write=False) == [("not-pushed", "a"), ("pull", "b"), ("not-pushed", "new")]


def test_an_indexed_file_that_is_there_but_not_scanned_is_never_a_deletion() -> None:
    index = SyncIndex("t" * 32, "/f")
    index.record("a", entry("a", "a", 1))
    index.record("b", entry("b", "b", 1))
    acts = reconcile({"b": local("b", "=")}, {"a"}, index, [head("a", 1), head("b", 1)], may_write=True)
    assert acts == []
