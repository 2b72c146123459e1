"""Tampering with what the server stores (SQLite rows, blob files, chain links in memory), and checks
that the member's next command fails cleanly, for ``tests/test_server_attacker_*.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.context import DIRECTORY
from server.directory import Directory
from tests.conftest import Member, Org
from tests.helpers.db import sql
from vault.encoding import decode, encode

MiB = 1024 * 1024
# New versions are of body format 2 (docs/format.md): no stream header, 16 bytes of tag a frame.
HEADER = 0
FRAME_CT = MiB + 16  # one full ciphertext frame
TAG = 16
BIG = 3 * MiB + 1000  # three full frames and a final frame of 1000 bytes

SIGNATURE = "signature does not verify"
DECRYPTION = "decryption failed"
ROLLBACK = "rolled back"


def version_row(org: Org, vid: str) -> dict[str, Any]:
    rows = sql(org, "SELECT vid, team, doc, seq, record, blob FROM versions WHERE vid=?", vid)
    assert rows, f"no version {vid}"
    return dict(zip(("vid", "team", "doc", "seq", "record", "blob"), rows[0], strict=True))


def blob_file(org: Org, blob: str) -> Path:
    path = org.server.data_dir / "blobs" / blob[:2] / blob
    assert path.is_file(), path
    return path


@contextmanager
def blob_replaced(org: Org, vid: str, data: bytes) -> Iterator[None]:
    path = blob_file(org, version_row(org, vid)["blob"])
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(original)


@contextmanager
def column_replaced(org: Org, vid: str, column: str, value: Any) -> Iterator[None]:
    assert column in ("record", "blob", "team", "doc")
    original = version_row(org, vid)[column]
    sql(org, f"UPDATE versions SET {column}=? WHERE vid=?", value, vid)
    try:
        yield
    finally:
        sql(org, f"UPDATE versions SET {column}=? WHERE vid=?", original, vid)


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def flip_middle(data: bytes) -> bytes:
    return flip(data, len(data) // 2)


def dec(data: bytes) -> Any:
    """Decode canonical bytes into plain (mutable) Python values."""
    return decode(data)


def edit_record(raw: bytes, field: str, change: Callable[[Any], Any]) -> bytes:
    """Re-encode a stored record with one field changed (``core.x`` edits the signed header)."""
    rec = dict(dec(raw))
    if field.startswith("core."):
        core = dict(dec(rec["core"]))
        core[field[5:]] = change(core[field[5:]])
        rec["core"] = encode(core)
    else:
        rec[field] = change(rec[field])
    return encode(rec)


def frames(body: bytes) -> tuple[bytes, list[bytes]]:
    """Split a ciphertext body into its stream header (none in format 2) and its frames."""
    header, rest = body[:HEADER], body[HEADER:]
    out = [rest[i : i + FRAME_CT] for i in range(0, len(rest), FRAME_CT)]
    return header, out


def get_fails(member: Member, team: str, name: str, where: Path, contains: str, *,
              version: int | None = None, existing: bytes | None = None) -> str:
    """``mvault get`` fails with one clear line and leaves nothing in the output directory.

    With ``existing`` the output path already holds a file, which must stay as it was.
    """
    where.mkdir(parents=True, exist_ok=False)
    target = where / "result.bin"
    if existing is not None:
        target.write_bytes(existing)
    args = ["get", team, name, "-o", str(target)]
    if version is not None:
        args += ["--version", str(version)]
    if existing is not None:
        args.append("--force")  # asked to replace it: the failed download still must not touch it
    r = member.fails(*args, contains=contains)
    if existing is None:
        assert not target.exists(), "a failed get wrote its output file"
        assert list(where.iterdir()) == [], f"a failed get left files behind: {list(where.iterdir())}"
    else:
        assert target.read_bytes() == existing, "a failed get changed the existing output file"
        assert [p.name for p in where.iterdir()] == ["result.bin"], f"left behind: {list(where.iterdir())}"
    assert not list(member.home.parent.glob("**/*.part")), "a .part temporary file was left behind"
    return r.err


def team_id(member: Member, name: str) -> str:
    for t in member.json("team", "ls"):
        if t["name"] == name:
            return str(t["team"])
    raise AssertionError(f"no team {name}")


def member_id(member: Member) -> str:
    return str(member.json("whoami")["member"])


def directory(org: Org) -> Directory:
    d = org.server.app[DIRECTORY]
    assert isinstance(d, Directory)
    return d
