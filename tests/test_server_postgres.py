"""``mvault-server`` on PostgreSQL (``--database``, ``database_url``, ``MVAULT_DATABASE_URL``) through the real
executable and a real PostgreSQL: ``init`` writes the founder's invite into the database, an unreachable
database or one written by a newer release stops the start with one ``error:`` line (exit 1), and a password
in the URL is never printed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from server.store.postgres.schema import VERSION, SchemaTooNew
from server.store.postgres.vault import PostgresStorage
from tests.helpers.postgres import Cluster

SERVER = str(Path(sys.executable).parent / "mvault-server")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MVAULT_")}
    return subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=60, env={**clean, **env})


def _one_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def test_init_writes_the_founder_invite_into_the_database(tmp_path: Path, pg_cluster: Cluster) -> None:
    url = pg_cluster.new_database()
    r = _run("init", "--data", str(tmp_path / "d"), "--database", url, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["invite"]
    assert pg_cluster.psql("SELECT count(*) FROM meta WHERE key LIKE 'founder_%'", url) == "2"
    assert pg_cluster.psql("SELECT max(version) FROM schema_version", url) == str(VERSION)
    assert not (tmp_path / "d" / "vault.db").exists()  # nothing in SQLite


def test_an_unreachable_database_stops_the_start_with_one_line(tmp_path: Path) -> None:
    port = _closed_port()
    url = f"postgresql://alice:s3cret@127.0.0.1:{port}/vault"
    line = _one_error(_run("run", "--data", str(tmp_path / "d"), "--database", url, "--port", str(_closed_port())))
    assert "cannot connect to the database at postgresql://alice:***@127.0.0.1" in line, line
    assert "s3cret" not in line
    from_env = _one_error(_run("run", "--data", str(tmp_path / "e"), "--port", str(_closed_port()),
                               MVAULT_DATABASE_URL=url))
    assert "cannot connect to the database" in from_env


def test_a_database_url_that_is_not_postgresql_is_refused_by_name(tmp_path: Path) -> None:
    line = _one_error(_run("run", "--data", str(tmp_path / "d"), "--database", "mysql://x/y"))
    assert "database_url" in line and "--database" in line


async def test_a_schema_newer_than_the_code_is_refused(tmp_path: Path, pg_cluster: Cluster) -> None:
    url = pg_cluster.new_database()
    await (await PostgresStorage.open(url, tmp_path)).close()
    pg_cluster.psql("INSERT INTO schema_version VALUES (99)", url)
    with pytest.raises(SchemaTooNew, match=rf"version 99, newer than this server knows \({VERSION}\)"):
        await PostgresStorage.open(url, tmp_path)
    line = _one_error(_run("run", "--data", str(tmp_path), "--database", url, "--port", str(_closed_port())))
    assert "newer than this server knows" in line


def test_the_database_url_is_masked_as_a_secret() -> None:
    r = _run("config", "--json", MVAULT_DATABASE_URL="postgresql://alice:s3cret@db.example/vault")
    assert r.returncode == 0, r.stderr
    option = json.loads(r.stdout)["options"]["database_url"]
    assert option["value"] == "********" and option["source"] == "MVAULT_DATABASE_URL" and "s3cret" not in r.stdout
