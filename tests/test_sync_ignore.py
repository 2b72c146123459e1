"""The ignore rules matched with one joined expression (client/sync/ignore.py) answer exactly as ``pathspec`` does.

Generated rule sets (anchored, folder-only, ``**``, classes, escapes, comments, ``!`` lines) against generated names
(files and folders, nested): ``Ignores.match`` must equal ``GitIgnoreSpec.match_file`` for every pair, and
``Ignores.ignored`` the old per-part rule of client/sync/scan.py. What the folder sync does with the answers is tested
against the real server in tests/test_sync_engine.py and tests/test_sync_hint.py (ignore rules both ways)."""

from __future__ import annotations

import random
from pathlib import Path

import pathspec

from client.sync.ignore import DEFAULT_IGNORES, IGNORE_FILE, Ignores, rules

POOL = ("*.log", "build/", "/top.txt", "docs/**/draft*", "**/cache", "a/b/", "*.[oa]", r"\#notes", "x?y", "",
        "# a comment", "secret*", "/only-top/", "deep/**", "*.bak/", r"sp\ ace", "[!z]*.md", "~*", "**/*.tmp",
        "name with space", "ünïcode*", "*/mid/*", "[", "a**b")
NEGATIONS = ("!keep.log", "!/top.txt", "!build/", "!docs/**/draft1*")
PARTS = ("a", "b", "build", "docs", "x", "deep", "mid", "cache", "only-top", "ünïcode", "sp ace", ".h", "q")
BASES = ("f.log", "top.txt", "draft1.md", "draft2.md", "keep.log", "xzy", "x.o", "x.a", "#notes", "secret.txt",
         "readme.md", "zed.md", "~lock", "t.tmp", "f.swp", "f~", ".#f", "Thumbs.db", "~$doc", ".~lock.x#",
         "name with space", "ünïcode.txt", "e.mvault-part", "p.bak", "plain.bin", "a", "b", "cache")


def _names(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        folders = [rng.choice(PARTS) for _ in range(rng.randrange(4))]
        name = "/".join([*folders, rng.choice(BASES)])
        out.append(name)
        if folders:
            out.append("/".join(folders) + "/")  # a folder, as the scan asks about one
    return out


def _old_ignored(spec: pathspec.GitIgnoreSpec, name: str) -> bool:
    parts = name.split("/")
    return spec.match_file(name) or any(spec.match_file("/".join(parts[:i]) + "/") for i in range(1, len(parts)))


def test_joined_rules_answer_as_pathspec() -> None:
    rng = random.Random(17)
    joined = fallback = 0
    for _ in range(300):
        lines = (*DEFAULT_IGNORES, *rng.sample(POOL, rng.randrange(len(POOL) // 2)))
        if rng.random() < 0.3:
            lines += tuple(rng.sample(NEGATIONS, rng.randrange(1, len(NEGATIONS))))
        rules_, spec = Ignores(lines), pathspec.GitIgnoreSpec.from_lines(lines)
        joined += rules_.joined is not None
        fallback += rules_.joined is None
        for name in _names(rng, 40):
            assert rules_.match(name) == spec.match_file(name), (lines, name)
            assert bool(rules_.test(name)) == spec.match_file(name), (lines, name)
            if not name.endswith("/"):
                assert rules_.ignored(name) == _old_ignored(spec, name), (lines, name)
    assert joined > 150 and fallback > 50  # both ways were exercised


def test_defaults_are_joined_and_a_negation_is_not() -> None:
    assert Ignores(DEFAULT_IGNORES).joined is not None
    assert Ignores((*DEFAULT_IGNORES, "*.log")).joined is not None
    negated = Ignores((*DEFAULT_IGNORES, "*.log", "!keep.log"))
    assert negated.joined is None  # the last matching line decides: left to pathspec
    assert negated.match("a/x.log") and not negated.match("a/keep.log")
    empty = Ignores(("", "# only a comment"))
    assert not empty.match("x") and not empty.ignored("a/b")


def test_rules_follow_the_file(tmp_path: Path) -> None:
    assert not rules(tmp_path).match("notes.log")
    (tmp_path / IGNORE_FILE).write_text("*.log\n")
    assert rules(tmp_path).match("notes.log") and rules(tmp_path).ignored("a/notes.log")
    (tmp_path / IGNORE_FILE).write_text("*.log\n!notes.log\n")
    assert not rules(tmp_path).match("notes.log") and rules(tmp_path).match("other.log")
    (tmp_path / IGNORE_FILE).write_text("private/\n")
    assert rules(tmp_path).ignored("private/x.txt") and not rules(tmp_path).match("notes.log")
