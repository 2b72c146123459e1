"""mvault-server check: finds a corrupted blob, a missing blob, an orphan, a temporary file, a cut audit log
and a checkpoint whose root is not the log's; --repair-orphans removes orphans and temporary files only."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.backup_world import World, build_world, restored, server_cli

OLD = time.time() - 3600  # older than check's grace for uploads in flight


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("check-world"))
    yield w
    w.server.stop()


@pytest.fixture
def data(world: World, tmp_path: Path) -> Path:
    """A stopped copy of the deployment (restored from its backup)."""
    return restored(world.archive, tmp_path / "data")


def _check(data: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    p = server_cli("check", "--data", str(data), "--json", *extra)
    assert "Traceback" not in p.stderr
    return p.returncode, json.loads(p.stdout)


def _kinds(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((p["kind"], p["path"]) for p in report["problems"])


def _blob(data: Path) -> Path:
    [blob] = [p for p in (data / "blobs").rglob("*") if p.is_file()]
    return blob


def test_a_whole_deployment_checks_clean_while_serving(world: World) -> None:
    p = server_cli("check", "--data", str(world.server.data_dir))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("ok: ") and "1 documents, 1 versions, 1 blobs" in p.stdout
    code, report = _check(world.server.data_dir)
    assert code == 0 and report["problems"] == [] and report["summary"]["members"] == 1


def test_corrupted_and_missing_blobs(data: Path) -> None:
    blob = _blob(data)
    raw = bytearray(blob.read_bytes())
    raw[10] ^= 1
    blob.write_bytes(bytes(raw))
    code, report = _check(data)
    rel = blob.relative_to(data).as_posix()
    assert code == 1 and _kinds(report) == [("blob-corrupt", rel)]
    p = server_cli("check", "--data", str(data))
    assert p.stdout.startswith(f"blob-corrupt: {rel}: ") and p.stderr == f"error: 1 problems found in {data}\n"
    blob.unlink()
    code, report = _check(data)
    assert code == 1 and _kinds(report) == [("blob-missing", rel)]
    # --repair-orphans never touches a referenced blob (nor invents one).
    code, report = _check(data, "--repair-orphans")
    assert code == 1 and report["repaired"] == [] and _kinds(report) == [("blob-missing", rel)]


def test_orphans_and_temporary_files_and_their_repair(data: Path) -> None:
    blob = _blob(data)
    orphan = data / "blobs" / "ab" / ("ab" + "0" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"nobody's")
    temp = data / "tmp" / "upload-1234"
    temp.write_bytes(b"half an upload")
    dot_tmp = data / ".config.toml.x1y2.tmp"
    dot_tmp.write_bytes(b"half a config")
    young = data / "tmp" / "upload-now"
    young.write_bytes(b"an upload in flight")
    for f in (orphan, temp, dot_tmp):
        os.utime(f, (OLD, OLD))
    code, report = _check(data)
    assert code == 1
    assert _kinds(report) == [("orphan", "blobs/ab/" + orphan.name), ("temporary", ".config.toml.x1y2.tmp"),
                              ("temporary", "tmp/upload-1234")]
    assert report["summary"]["in_flight"] == 1
    code, report = _check(data, "--repair-orphans")
    assert code == 0 and report["problems"] == []
    assert sorted(report["repaired"]) == [".config.toml.x1y2.tmp", "blobs/ab/" + orphan.name, "tmp/upload-1234"]
    assert not orphan.exists() and not temp.exists() and not dot_tmp.exists()
    assert young.exists() and blob.exists()
    p = server_cli("check", "--data", str(data))
    assert p.returncode == 0 and "1 in flight" in p.stdout


def _audit(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / "audit.db", isolation_level=None)


def test_a_cut_audit_log(data: Path) -> None:
    db = _audit(data)
    (last,) = db.execute("SELECT MAX(size) FROM checkpoints").fetchone()
    db.execute("DELETE FROM events WHERE idx >= ?", (last - 1,))
    db.close()
    code, report = _check(data)
    assert code == 1 and [p["kind"] for p in report["problems"]] == ["audit"]
    assert "beyond the log" in report["problems"][0]["detail"]


def test_a_checkpoint_whose_root_is_not_the_logs(data: Path) -> None:
    db = _audit(data)
    (idx, leaf) = db.execute("SELECT idx, leaf FROM events WHERE leaf IS NOT NULL ORDER BY idx LIMIT 1").fetchone()
    # A leaf replaced with its hash updated too: only the checkpoint's signed root can tell.
    from security.merkle import leaf_hash

    forged = bytes(leaf[:-1]) + bytes([leaf[-1] ^ 1])
    db.execute("UPDATE events SET leaf=?, hash=? WHERE idx=?", (forged, leaf_hash(forged), idx))
    db.close()
    code, report = _check(data)
    assert code == 1 and report["problems"] and all(p["kind"] == "audit" for p in report["problems"])
    assert any("not the log's root" in p["detail"] for p in report["problems"])


def test_a_forged_version_and_a_broken_chain(data: Path) -> None:
    db = sqlite3.connect(data / "vault.db", isolation_level=None)
    db.execute("UPDATE versions SET seq = 2")
    db.close()
    code, report = _check(data)
    assert code == 1 and [p["kind"] for p in report["problems"]] == ["version"]
    db = sqlite3.connect(data / "vault.db", isolation_level=None)
    db.execute("DELETE FROM links WHERE rowid = (SELECT MIN(rowid) FROM links WHERE kind = 'org')")
    db.close()
    code, report = _check(data)
    assert code == 1 and "chain" in [p["kind"] for p in report["problems"]]


def test_not_a_data_directory(tmp_path: Path) -> None:
    code, report = _check(tmp_path)
    assert code == 1 and _kinds(report) == [("missing", "audit.db"), ("missing", "vault.db")]
    p = server_cli("check", "--data", str(tmp_path / "nowhere"))
    assert p.returncode == 1 and p.stderr.startswith("error: ")
