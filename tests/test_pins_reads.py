"""The pins file read once per command, not at every look (issue 16's no-op pass, session 11).

A command looks at its pins half a dozen times (login, the audit checkpoint, the view, the listing, each batch
flush). ``Home`` keeps the value of the sealed bytes it last read or wrote: the same bytes are not opened and parsed
again, and pins saved unchanged are not written again. What must still hold: every look sees what is in the file
now (another command's save, a tampered byte), and what one caller changes without saving is not what the next
look returns. alice's real home (made with the real CLI against the real server), opened in this process as the
member would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client.home import Home
from tests.conftest import Org
from tests.helpers.members import alice_pinned
from tests.helpers.opened import count_opens
from vault import localstate
from vault.errors import VaultError


@pytest.fixture
def home(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    return alice_pinned(org, tmp_path / "minutes.txt", "confidential\n", monkeypatch)


def test_the_same_bytes_are_opened_once_and_unchanged_pins_not_written(home: Home,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    first = home.pins()
    assert first.docs and first.chains and first.log
    opened = count_opens(monkeypatch, localstate, "open_local")
    for _ in range(5):
        assert home.pins() == first
    assert opened == []  # the code before opened and parsed the file at every look
    path = home.path / "pins.bin"
    before = path.stat()
    home.save_pins(home.pins())
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # nothing written
    changed = home.pins()
    changed.keys["someone"] = "ab" * 32
    home.save_pins(changed)
    assert path.stat().st_ino != before.st_ino  # written (a new file renamed into place)
    assert home.pins().keys["someone"] == "ab" * 32
    assert opened == []  # what it wrote is what it knows


def test_what_a_caller_changes_without_saving_is_not_seen_by_the_next_look(home: Home) -> None:
    pins = home.pins()
    doc_key = next(iter(pins.docs))
    pins.docs[doc_key] = [99, "ff" * 32]
    pins.docs["x/y"] = [1, "aa" * 32]
    pins.chains.clear()
    pins.log["size"] = 1
    pins.signers["someone"] = ["device"]
    again = home.pins()
    assert again.docs[doc_key] != [99, "ff" * 32] and "x/y" not in again.docs
    assert again.chains and again.log["size"] != 1 and "someone" not in again.signers
    home.save_pins(again)  # saved as read: the file still holds the real pins
    assert Home(home.path).pins() == again


def test_another_commands_save_and_a_tampered_file_are_seen(home: Home) -> None:
    mine = home.pins()
    other = Home(home.path)  # another command on the same home
    theirs = other.pins()
    theirs.verified["bob"] = "cd" * 32
    other.save_pins(theirs)
    assert home.pins().verified["bob"] == "cd" * 32
    # Saving what this process read before is a change now (the file moved on): merged into it (fix21), not skipped
    # and not written over it: the other command's verification stays (tests/test_pins_merge.py).
    home.save_pins(mine)
    assert other.pins().verified["bob"] == "cd" * 32 and mine.verified["bob"] == "cd" * 32
    path = home.path / "pins.bin"
    data = path.read_bytes()
    path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    with pytest.raises(VaultError, match="pins.bin failed its integrity check"):
        home.pins()
    with pytest.raises(VaultError, match="pins.bin failed its integrity check"):
        home.pins()  # not served from what was read before
    path.write_bytes(data)
    assert home.pins() == mine
