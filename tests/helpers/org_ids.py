"""Every id a server's database holds (members, devices, teams, documents, versions, blobs, threads, messages) in
each form it could be written in (hex, standard and URL-safe base64 with and without padding), for tests that
check a text (a log, the metrics) names none of them."""

from __future__ import annotations

import base64
import re
import sqlite3
from pathlib import Path

COLUMNS = {"links": ("chain",), "puk_boxes": ("member", "device"), "team_boxes": ("team", "member"),
           "versions": ("vid", "team", "doc", "blob"), "threads": ("team", "thread"),
           "messages": ("mid", "device"), "sessions": ("member", "device")}
_HEX = re.compile(r"^[0-9a-f]{16,}$")


def org_ids(data_dir: Path) -> set[str]:
    """The hex ids in ``data_dir/vault.db`` (each at least 16 hex characters)."""
    db = sqlite3.connect(data_dir / "vault.db")
    try:
        found = {str(value) for table, columns in COLUMNS.items() for column in columns
                 for (value,) in db.execute(f"SELECT DISTINCT {column} FROM {table}")}
    finally:
        db.close()
    return {value for value in found if _HEX.match(value)}


def forms(hex_id: str) -> set[str]:
    raw = bytes.fromhex(hex_id)
    encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return {hex_id, hex_id.upper(), *encoded, *(e.rstrip("=") for e in encoded)}


def named_ids(text: str, ids: set[str]) -> list[str]:
    """The ids of ``ids`` that ``text`` holds in any form."""
    return sorted(i for i in ids if any(f in text for f in forms(i)))
