"""A sync pass run in this process (the real client library against the real server), for the tests that watch
what a pass does from inside (its system calls, saves and threads, patched with ``monkeypatch``): a folder of small
files in a few subfolders, optionally synced first by alice, and whether a call runs on the event loop's thread."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from client.client import Client
from client.sync.engine import Outcome, sync_pass
from tests.conftest import Member, Org
from tests.helpers.members import in_session
from tests.helpers.sync_world import write

TEAM = "drafting"


def on_loop() -> bool:
    """Whether the caller runs on an event loop's thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def fill(folder: Path, files: int, folders: int = 3) -> None:
    """``files`` files ``d{i % folders}/f{i}.md`` (``i`` zero-padded to the width of ``files - 1``, at least 2)."""
    width = max(2, len(str(files - 1)))
    for i in range(files):
        write(folder / f"d{i % folders}" / f"f{i:0{width}d}.md", f"file {i}\n")


def synced_by_alice(org: Org, folder: Path, files: int, folders: int = 3) -> None:
    """``fill(folder, files, folders)``, then alice's ``mvault sync`` of it (the other members' passes pull them)."""
    fill(folder, files, folders)
    org.alice.json("sync", TEAM, str(folder))


def run_pass(org: Org, member: Member, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """``member``'s pass of ``folder`` in this process; every patch of ``monkeypatch`` is undone after it (also when
    it raises), so that the test's checks run on the real code."""
    async def one_pass(c: Client) -> Outcome:
        return await sync_pass(c, TEAM, folder)

    try:
        return in_session(org.server, member, one_pass, monkeypatch)
    finally:
        monkeypatch.undo()
