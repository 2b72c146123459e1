"""The document-name rules (vault/names.py) and the local copies index format (vault/localindex.py), as
plain functions: each rule refuses its case and passes its neighbours; the sealed index opens only
as written, under its own key and name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.errors import BadName, DecryptionFailed
from vault.keys import DeviceKeys
from vault.localindex import LocalCopy, LocalIndex, content_hasher, open_index, seal_index
from vault.localstate import local_key, seal_local
from vault.names import (
    MAX_NAME_BYTES,
    MAX_SEGMENT_BYTES,
    check_name,
    check_prefix,
    name_for_path,
    name_in_folder,
    name_problem,
)

GOOD = ["a.md", "notes/2027/plan.md", "café.md", "..hidden", "a..b", ".env", "x" * MAX_SEGMENT_BYTES,
        "/".join(["d" * 100] * 10), "نام\u200c.md", "emoji 👩\u200d💻.txt", "tab-free name with spaces.md"]
BAD = {
    "": "empty",
    "/abs.md": "start with /",
    "a//b": "empty folder",
    "a/": "empty folder",
    ".": "'.' segment",
    "a/./b": "'.' segment",
    "..": "'..' segment",
    "a/../../b": "'..' segment",
    "a\\b": "backslash",
    "nul\x00": "control character",
    "del\x7f": "control character",
    "c1\x85": "control character",
    "rlo\u202e": "format character",
    "lri\u2066": "format character",
    "bom\ufeff": "format character",
    "zwsp\u200b": "format character",
    "ls\u2028": "line separator",
    "ps\u2029": "paragraph separator",
    "surrogate\ud800": "lone surrogate",
    "cafe\u0301.md": "NFC",
    "x" * (MAX_SEGMENT_BYTES + 1): f"at most {MAX_SEGMENT_BYTES}",
    "é" * 128: f"at most {MAX_SEGMENT_BYTES}",  # 256 bytes of UTF-8 in 128 characters
    "/".join(["d" * 200] * 6): f"at most {MAX_NAME_BYTES}",
}


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass(name: str) -> None:
    assert name_problem(name) is None
    assert check_name(name) == name


@pytest.mark.parametrize(("name", "rule"), list(BAD.items()))
def test_each_rule_refuses_its_case(name: str, rule: str) -> None:
    problem = name_problem(name)
    assert problem is not None and rule in problem
    with pytest.raises(BadName, match="is not a valid document name"):
        check_name(name)


@given(st.text())
def test_a_valid_name_is_a_safe_relative_path(name: str) -> None:
    if name_problem(name) is None:
        parts = name.split("/")
        assert all(p not in ("", ".", "..") for p in parts) and "\\" not in name
        assert len(name.encode("utf-8")) <= MAX_NAME_BYTES


def test_prefixes_and_names_from_paths() -> None:
    assert check_prefix("notes/") == "notes/" and check_prefix("/") == ""
    for bad in ("notes", "../", "a//", "//"):
        with pytest.raises(BadName):
            check_prefix(bad)
    assert name_for_path("notes/n1.md") == "notes/n1.md"
    assert name_for_path("./notes/../notes/n1.md") == "notes/n1.md"
    assert name_for_path("../elsewhere/n1.md") == "n1.md"
    assert name_for_path("/abs/path/n1.md") == "n1.md"
    assert name_for_path("cafe\u0301.md") == "café.md"  # NFD (macOS) made NFC
    assert name_in_folder("/t/tree/sub/b.md", "/t/tree") == "sub/b.md"


def _copy(vid: str = "ab" * 16, seq: int = 2) -> LocalCopy:
    h = content_hasher()
    h.update(b"content")
    return LocalCopy(vid, seq, h.digest(), 7, 1_700_000_000_123_456_789, 42)


def test_the_index_seals_opens_and_refuses_what_it_did_not_write() -> None:
    key = local_key(DeviceKeys(bytes(range(32)), bytes(32)))
    index = LocalIndex()
    index.record("t" * 32, "d" * 32, "/home/m/strategy.md", _copy())
    index.record("t" * 32, "e" * 32, "/home/m/other.md", _copy("cd" * 16, 1))
    blob = seal_index(key, index)
    assert len(blob) - len(seal_local(key, "index", b"")) == 4096  # padded to 4 KiB
    assert open_index(key, blob) == index
    assert open_index(key, blob).copy("t" * 32, "d" * 32, "/home/m/strategy.md") == _copy()
    # one path holds one document: recording it for another drops the old entry
    index.record("t" * 32, "e" * 32, "/home/m/strategy.md", _copy("ef" * 16, 3))
    assert index.copy("t" * 32, "d" * 32, "/home/m/strategy.md") is None
    assert set(index.docs) == {"t" * 32 + "/" + "e" * 32}
    with pytest.raises(DecryptionFailed):
        open_index(key, blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(DecryptionFailed):
        open_index(local_key(DeviceKeys(bytes(32), bytes(32))), blob)
    with pytest.raises(DecryptionFailed):  # another sealed file (the pins) is not an index
        open_index(key, seal_local(key, "pins", b"\x00" * 8))
