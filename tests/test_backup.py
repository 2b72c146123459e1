"""mvault-server backup / restore: an online backup taken while members upload and post restores to a
server every member's client verifies; an archive altered by one byte, or a non-empty target, is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Member, Org, ServerThread
from tests.helpers.backup_world import World, build_world, refused, server_cli


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("backup-world"))
    yield w
    w.server.stop()


def _copy_home(m: Member, where: Path) -> Member:
    """The member's machine as it is now (a client that saw exactly the state of this moment)."""
    shutil.copytree(m.home, where)
    return replace(m, home=where)


def test_backup_while_serving_restores_for_every_member(org: Org, tmp_path: Path) -> None:
    alice, bob, server = org.alice, org.bob, org.server
    files = tmp_path / "files"
    files.mkdir()
    for i in range(2):
        (files / f"plan-{i}.md").write_bytes(f"plan {i}\n".encode() * (1000 * (i + 1)))
        alice.ok("put", "drafting", str(files / f"plan-{i}.md"))
    alice.ok("thread", "create", "drafting", "check-in")
    alice.ok("thread", "post", "drafting", "check-in", "before the backup")
    bob.ok("thread", "read", "drafting", "check-in")
    bob.ok("audit", "verify")
    # Clients as they are now: their state is older than the backup's, so the restored server must satisfy them.
    old = [_copy_home(alice, tmp_path / "old-alice"), _copy_home(bob, tmp_path / "old-bob")]

    errors: list[str] = []

    def uploads() -> None:
        for i in range(3):
            f = files / f"during-{i}.bin"
            f.write_bytes(bytes([i]) * 300_000)
            r = bob.run("put", "drafting", str(f))
            if r.code:
                errors.append(r.err)

    def posts() -> None:
        for i in range(3):
            r = alice.run("thread", "post", "drafting", "check-in", f"during {i}")
            if r.code:
                errors.append(r.err)

    load = [threading.Thread(target=uploads), threading.Thread(target=posts)]
    for t in load:
        t.start()
    archive = tmp_path / "backup.tar"
    p = server_cli("backup", "--data", str(server.data_dir), "--to", str(archive), "--json")
    for t in load:
        t.join()
    assert p.returncode == 0, p.stderr
    assert errors == []
    made = json.loads(p.stdout)
    assert made["counts"]["documents"] >= 2 and archive.stat().st_mode & 0o777 == 0o600
    assert server_cli("check", "--data", str(server.data_dir)).returncode == 0  # while serving

    server.stop()
    restored = tmp_path / "restored"
    p = server_cli("restore", "--from", str(archive), "--data", str(restored))
    assert p.returncode == 0, p.stderr
    assert "warning: members whose clients saw newer state" in p.stdout
    assert f"{made['audit']['size']} events, root {made['audit']['root']}" in p.stdout
    # The restored directory serves with the same certificate (the members' clients pin it) on the same address.
    again = ServerThread(restored, server.port, **server.config).start()
    try:
        assert again.fingerprint == server.fingerprint
        for m in old:
            listed = {d["name"]: d for d in m.json("ls", "drafting")}
            assert {f"plan-{i}.md" for i in range(2)} <= set(listed)
            for name in listed:
                out = tmp_path / f"got-{m.name}-{name}"
                m.ok("get", "drafting", name, "-o", str(out))
                assert out.read_bytes() == (files / name).read_bytes()
            texts = [msg["text"] for msg in m.json("thread", "read", "drafting", "check-in")]
            assert texts[0] == "before the backup" and texts[1:] == [f"during {i}" for i in range(len(texts) - 1)]
            assert m.json("audit", "verify")["problems"] == []
    finally:
        again.stop()


def _archive(server: ServerThread, tmp_path: Path, *extra: str) -> Path:
    archive = tmp_path / "backup.tar"
    p = server_cli("backup", "--data", str(server.data_dir), "--to", str(archive), *extra)
    assert p.returncode == 0, p.stderr
    return archive


def _flip(archive: Path, at: int, where: Path) -> Path:
    altered = where / f"altered-{at}"
    data = bytearray(archive.read_bytes())
    data[at] ^= 0x01
    altered.write_bytes(bytes(data))
    return altered


def _member_offsets(archive: Path) -> dict[str, int]:
    """Where each member's content starts in the archive."""
    import tarfile

    with tarfile.open(archive) as tar:
        return {m.name: m.offset_data for m in tar.getmembers()}


def test_an_archive_altered_by_one_byte_is_refused(world: World, tmp_path: Path) -> None:
    archive = world.archive
    offsets = _member_offsets(archive)
    blob = next(n for n in offsets if n.startswith("blobs/"))
    places = {"blob": offsets[blob] + 100, "vault.db": offsets["vault.db"] + 2000,
              "audit.db": offsets["audit.db"] + 50, "manifest": offsets["manifest.json"] + 30,
              "digest": offsets["manifest.sha256"] + 3, "tar header": offsets["server.crt"] - 512 + 140,
              "padding": offsets["log.key"] + 32 + 100, "end": archive.stat().st_size - 10}
    for what, at in places.items():
        target = tmp_path / f"restored-{what.replace(' ', '-')}"
        p = server_cli("restore", "--from", str(_flip(archive, at, tmp_path)), "--data", str(target))
        refused(p)
        assert not target.exists(), what
        assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".")] == [], what
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[: offsets[blob] + 10])
    refused(server_cli("restore", "--from", str(cut), "--data", str(tmp_path / "r-cut")), "cut short")
    # The archive itself restores.
    assert server_cli("restore", "--from", str(archive), "--data", str(tmp_path / "fine")).returncode == 0


def test_restore_refuses_a_directory_that_is_not_empty(world: World, tmp_path: Path) -> None:
    archive = world.archive
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    refused(server_cli("restore", "--from", str(archive), "--data", str(target)), "not empty")
    assert [x.name for x in target.iterdir()] == ["keep.txt"]
    refused(server_cli("backup", "--data", str(world.server.data_dir), "--to", str(archive)), "exists")
    inside = world.server.data_dir / "tmp" / "b.tar"
    refused(server_cli("backup", "--data", str(world.server.data_dir), "--to", str(inside)), "inside the data")
    assert not inside.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert server_cli("restore", "--from", str(archive), "--data", str(empty)).returncode == 0
    assert (empty / "vault.db").is_file() and not (empty / "vault.db-wal").exists()


def _age_key(tmp_path: Path) -> tuple[Path, str]:
    if shutil.which("age-keygen") is None:
        pytest.skip("Debian's age package is not installed (.ci/run installs it)")
    key = tmp_path / "age.key"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    public = next(line.split(": ")[1] for line in key.read_text().splitlines() if line.startswith("# public key"))
    return key, public


def test_age_encrypted_round_trip(world: World, tmp_path: Path) -> None:
    key, public = _age_key(tmp_path)
    archive = _archive(world.server, tmp_path, "--age-recipient", public)
    assert b"server.key" not in archive.read_bytes() and archive.read_bytes().startswith(b"age-encryption.org/v1")
    # Debian's age decrypts it: a plain archive.
    plain = subprocess.run(["age", "-d", "-i", str(key), str(archive)], capture_output=True, check=True).stdout
    assert b"manifest.json" in plain and b"server.key" in plain
    refused(server_cli("restore", "--from", str(archive), "--data", str(tmp_path / "no-key")), "--identity")
    (tmp_path / "other").mkdir()
    other, _ = _age_key(tmp_path / "other")
    refused(server_cli("restore", "--from", str(archive), "--data", str(tmp_path / "wrong"), "--identity", str(other)),
             "decrypt")
    for at in (200, archive.stat().st_size // 2, archive.stat().st_size - 5):
        target = tmp_path / f"r-{at}"
        refused(server_cli("restore", "--from", str(_flip(archive, at, tmp_path)), "--data", str(target), "--identity",
                            str(key)))
        assert not target.exists()
    target = tmp_path / "restored"
    p = server_cli("restore", "--from", str(archive), "--data", str(target), "--identity", str(key), "--json")
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout)
    assert out["check"]["documents"] == 1 and out["check"]["messages"] == 1
    assert (target / "server.key").read_bytes() == (world.server.data_dir / "server.key").read_bytes()


def test_backup_refuses_a_bad_recipient(world: World, tmp_path: Path) -> None:
    refused(server_cli("backup", "--data", str(world.server.data_dir), "--to", str(tmp_path / "b.tar"),
                       "--age-recipient", "age1nope"), "age recipient")
    assert list(tmp_path.iterdir()) == []
