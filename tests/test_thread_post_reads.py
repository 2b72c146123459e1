"""``mvault thread post`` reads the thread once: the command resolves it (an unknown thread or an unexpected
expiry fails before any upload) and the post builds on that reading instead of fetching the messages again.
Counted from outside the client with the wire recorder of tests/test_api_schemas.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tests.conftest import Member, Org

RECORDER = Path(__file__).parent / "helpers" / "wire_log"


def _recorded(m: Member, log: Path) -> Member:
    return dataclasses.replace(m, env_extra={**m.env_extra, "PYTHONPATH": str(RECORDER), "WIRE_LOG": str(log)})


def _gets_and_posts(log: Path) -> tuple[int, int]:
    rows = [json.loads(line) for f in sorted(log.glob("*.jsonl")) for line in f.read_text().splitlines()]
    msgs = [r for r in rows if r["kind"] == "http" and "/threads/" in r["path"] and "/messages" in r["path"]]
    return sum(r["method"] == "GET" for r in msgs), sum(r["method"] == "POST" for r in msgs)


def test_a_post_reads_the_thread_once(org: Org, tmp_path: Path) -> None:
    org.alice.ok("thread", "create", "drafting", "general")
    org.alice.ok("thread", "post", "drafting", "general", "first")  # alice's cache knows her last message
    org.bob.ok("thread", "post", "drafting", "general", "from bob")
    log = tmp_path / "wire"
    log.mkdir()
    alice = _recorded(org.alice, log)
    alice.ok("thread", "post", "drafting", "general", "second", "--expect-expire", "0")
    assert _gets_and_posts(log) == (1, 1)
    shown = [m["text"] for m in org.bob.json("thread", "read", "drafting", "general")]
    assert shown == ["first", "from bob", "second"]
