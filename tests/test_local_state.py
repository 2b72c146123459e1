"""A seized laptop: what the member's home (``MVAULT_HOME``) gives away without the passphrase.

The unlock session lives in an agent process (``client.agent``), never on disk; config and pins
are sealed under the keystore (``config.bin``, ``pins.bin``). These tests take the whole home and
everything ``mvault unlock`` printed, and try to open the keystore with them; they grep the home for
the ids and names a plaintext home used to show; they tamper with the sealed state and migrate a home
an older version left in plaintext.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from client import agent
from client.home import Home, Pins
from tests.conftest import Member, Org
from vault import keystore
from vault.errors import KeystoreError
from vault.localstate import file_name, local_key


def wait_until(cond: Callable[[], bool], seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.05)


@pytest.fixture
def passphrase_env(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process may open alice's home (the tests' own look inside, as the member would)."""
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(org.alice.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)


def busy_home(org: Org, tmp_path: Path) -> None:
    """Alice's home with something in every kind of local state: chain, document and key pins, a
    member verified in person, an audit checkpoint, a thread cache."""
    doc = tmp_path / "minutes-of-the-ncc.txt"
    doc.write_text("confidential\n")
    org.alice.ok("put", "drafting", str(doc))
    org.alice.ok("verify", "bob", "--confirm")
    org.alice.ok("thread", "create", "drafting", "planning")
    org.alice.ok("thread", "post", "drafting", "planning", "hello")
    org.alice.ok("thread", "read", "drafting", "planning")


def snapshot(home: Path, to: Path) -> Path:
    """A copy of every file in the home, as a disk image would have it (a socket is only a name)."""
    def sockets(d: str, names: list[str]) -> list[str]:
        return [n for n in names if stat.S_ISSOCK(os.lstat(os.path.join(d, n)).st_mode)]

    shutil.copytree(home, to, ignore=sockets)
    return to


def keys_found(home: Path, printed: str) -> list[str]:
    """Everything an attacker holding a copy of ``home`` and the text ``mvault unlock`` printed can try
    without the passphrase: every 32 bytes of every file as the keystore key, every file as an unlock
    session under the printed secret (expiry ignored: an attacker's code checks no expiry), the secret
    itself as the key and as the passphrase. Returns what opened the keystore."""
    ks = (home / "keystore.bin").read_bytes()
    token = printed.strip().rsplit("=", 1)[-1]
    secret = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    found = []

    def opens(key: bytes) -> bool:
        try:
            keystore.open_with_key(ks, key)
            return True
        except KeystoreError:
            return False

    if opens(secret):
        found.append("the printed secret as the key")
    for f in sorted(p for p in home.rglob("*") if p.is_file()):
        data = f.read_bytes()
        for i in range(max(0, len(data) - 31)):
            if opens(data[i:i + 32]):
                found.append(f"{f.name}[{i}:{i + 32}]")
                break
        try:
            if opens(keystore.open_session(data, secret, 0)):
                found.append(f"{f.name} as a session under the printed secret")
        except KeystoreError:
            pass
    try:
        keystore.open_keystore(ks, token)
        found.append("the printed secret as the passphrase")
    except KeystoreError:
        pass
    return found


def without_passphrase(member: Member, home: Path, printed: str) -> Member:
    token = printed.strip().rsplit("=", 1)[-1]
    return Member(home, member.name, home.parent / "no-passphrase-file", {"MVAULT_SESSION": token})


def test_the_attack_finds_a_key_left_on_disk(org: Org, tmp_path: Path, passphrase_env: None) -> None:
    # The probe itself works: a home with the key in some file is caught.
    home = Home(org.alice.home)
    home.unlock()
    assert home._key is not None
    copy = snapshot(org.alice.home, tmp_path / "control")
    (copy / "leftover.bin").write_bytes(os.urandom(7) + home._key + os.urandom(5))
    assert keys_found(copy, "export MVAULT_SESSION=AAAA") == ["leftover.bin[7:39]"]


def test_disk_taken_while_unlocked_opens_nothing_once_locked(org: Org, tmp_path: Path) -> None:
    """A laptop seized while off (or imaged while unlocked, then locked): the disk and the shell's
    history hold nothing that opens the keystore."""
    busy_home(org, tmp_path)
    printed = org.alice.ok("unlock", "--minutes", "5").out
    assert printed.startswith("export MVAULT_SESSION=")
    unlocked = without_passphrase(org.alice, org.alice.home, printed)
    assert unlocked.json("whoami")["name"] == "alice"  # while unlocked: no passphrase needed
    assert unlocked.json("thread", "read", "drafting", "planning")
    image = snapshot(org.alice.home, tmp_path / "image")  # taken while unlocked
    org.alice.ok("lock")
    assert keys_found(image, printed) == []
    assert keys_found(org.alice.home, printed) == []
    without_passphrase(org.alice, image, printed).fails("whoami", contains="passphrase")
    unlocked.fails("whoami", contains="passphrase")


def test_unlock_expires_by_itself(org: Org, tmp_path: Path) -> None:
    printed = org.alice.ok("unlock", "--for", "1s").out
    st = agent.status(org.alice.home)
    # The agent outlived `mvault unlock`... and ends at its timeout, removing its socket.
    wait_until(lambda: agent.status(org.alice.home) is None and not (org.alice.home / "agent.sock").exists())
    if st is not None:
        wait_until(lambda: not _alive(st.pid))
    assert keys_found(org.alice.home, printed) == []
    image = snapshot(org.alice.home, tmp_path / "image")
    without_passphrase(org.alice, image, printed).fails("whoami", contains="passphrase")
    without_passphrase(org.alice, org.alice.home, printed).fails("whoami", contains="passphrase")
    assert org.alice.json("lock") == {"locked": True, "ended_session": False}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"  # a zombie holds no memory and no socket
    except FileNotFoundError:
        return False


def test_unlock_duration_is_checked(org: Org) -> None:
    for bad in ("0s", "61m", "2h", "soon", "-5"):
        org.alice.fails("unlock", "--for", bad, contains="duration")
    assert agent.status(org.alice.home) is None


def test_agent_ends_when_its_home_is_removed(org: Org, tmp_path: Path, make_member: Any) -> None:
    carol = make_member("carol")
    carol.ok("join", org.alice.json("invite")["invite"], "--name", "carol")
    carol.ok("unlock")
    st = agent.status(carol.home)
    assert st is not None
    shutil.rmtree(carol.home)  # a test's tmp dir removal: nothing hangs, the agent goes
    wait_until(lambda: not _alive(st.pid))


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another uid")
def test_agent_refuses_another_uid(org: Org, make_member: Any) -> None:
    """Even with the directory and socket opened to everyone, the agent answers only its own uid
    (SO_PEERCRED)."""
    base = Path(tempfile.mkdtemp(prefix="mvault-uid-"))
    try:
        os.chmod(base, 0o711)
        carol = Member(base / "home-carol", "carol", org.alice.passphrase_file)
        carol.ok("join", org.alice.json("invite")["invite"], "--name", "carol")
        carol.ok("unlock")
        assert agent.fetch(carol.home) is not None  # our uid: answered
        os.chmod(carol.home, 0o711)
        os.chmod(carol.home / "agent.sock", 0o666)
        probe = ("import socket,sys\n"
                 "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"  # the socket is reachable...
                 "try: s.sendall(b'G'); s.shutdown(1); print(len(s.recv(4096)))\n"
                 "except OSError: print(0)\n")  # ... and the agent hangs up on us
        python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)),
                      sys.executable)  # one another uid can run (ours may be under /root)
        r = subprocess.run([python, "-I", "-c", probe, str(carol.home / "agent.sock")], user=65534,
                           capture_output=True, text=True, timeout=30, cwd="/")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "0"  # connected, and closed without a word
        assert agent.fetch(carol.home) is not None  # still serving its own uid
        agent.stop(carol.home)
    finally:
        agent.stop(base / "home-carol")
        shutil.rmtree(base, ignore_errors=True)


# -- sealed config and pins -------------------------------------------------------------------------


def test_local_state_has_no_plaintext(org: Org, tmp_path: Path, passphrase_env: None) -> None:
    busy_home(org, tmp_path)
    home = Home(org.alice.home)
    cfg, pins = home.config(), home.pins()
    assert pins.verified and pins.docs and pins.chains and pins.log  # there is something to leak
    team_id = next(k for k in pins.chains if k not in (cfg.member_id,) and len(k) >= 16)
    bob = json.loads(org.bob.ok("whoami", "--json").out)["member"]
    secrets_ = [cfg.member_id, bob, cfg.device_id, cfg.org_root, cfg.cert_fp, cfg.url, team_id, *pins.chains,
                *pins.verified.values(), "alice", "drafting", "planning", "minutes-of-the-ncc"]
    files = sorted(p for p in org.alice.home.rglob("*") if p.is_file())
    for f in files:
        data = f.read_bytes()
        rel = str(f.relative_to(org.alice.home))
        for s in secrets_:
            for form in {s.encode(), s.lower().encode()} | ({bytes.fromhex(s)} if _is_hex(s) else set()):
                assert form not in data, f"{s!r} in plaintext in {rel}"
            assert s not in rel, f"{s!r} in the file name {rel}"
    assert {p.name for p in files} >= {"keystore.bin", "config.bin", "pins.bin"}
    assert not {"config.json", "pins.json", "session.bin"} & {p.name for p in files}
    # Sizes are padded: one more pin does not move the pins file's size.
    before = (org.alice.home / "pins.bin").stat().st_size
    pins.keys["someone-else"] = "ab" * 32
    home.save_pins(pins)
    assert (org.alice.home / "pins.bin").stat().st_size == before


def _is_hex(s: str) -> bool:
    try:
        return len(s) >= 16 and len(bytes.fromhex(s)) >= 8
    except ValueError:
        return False


@pytest.fixture
def intact(org: Org) -> Iterator[dict[str, bytes]]:
    files = {n: (org.alice.home / n).read_bytes() for n in ("config.bin", "pins.bin")}
    yield files


def test_tampered_state_is_detected(org: Org, intact: dict[str, bytes]) -> None:
    home = org.alice.home
    for name, data in intact.items():
        for at in (0, len(data) // 2, len(data) - 1):
            (home / name).write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])
            org.alice.fails("whoami", contains=f"{name} failed its integrity check")
        (home / name).write_bytes(data[:-40])
        org.alice.fails("whoami", contains=f"{name} failed its integrity check")
        (home / name).write_bytes(data)
    # Swapped: each is bound to its own name.
    (home / "config.bin").write_bytes(intact["pins.bin"])
    org.alice.fails("whoami", contains="config.bin failed its integrity check")
    (home / "config.bin").write_bytes(intact["config.bin"])
    (home / "pins.bin").write_bytes(intact["config.bin"])
    org.alice.fails("whoami", contains="pins.bin failed its integrity check")
    # Removed: a missing pins file would make the next server answer trusted on first use.
    (home / "pins.bin").unlink()
    org.alice.fails("whoami", contains="pins.bin is missing")
    (home / "pins.bin").write_bytes(intact["pins.bin"])
    assert org.alice.json("whoami")["name"] == "alice"


def keystore_value(member: Member) -> dict[str, Any]:
    value, _, _ = keystore.open_keystore((member.home / "keystore.bin").read_bytes(),
                                         member.passphrase_file.read_text().rstrip("\n"))
    assert isinstance(value, dict)
    return value


def as_older_version(member: Member) -> None:
    """Rewrite the member's keystore as a version before the "sealed" mark wrote it: the same secrets, salt
    and KDF parameters, without the mark (what ``Secrets.to_value`` used to return)."""
    blob = (member.home / "keystore.bin").read_bytes()
    value, key, header = keystore.open_keystore(blob, member.passphrase_file.read_text().rstrip("\n"))
    assert isinstance(value, dict) and value.pop("sealed") is True
    assert set(value) == {"device", "puks"}
    (member.home / "keystore.bin").write_bytes(keystore.seal_keystore(value, key, header.salt, header.params))


def test_a_new_keystore_is_marked_sealed(org: Org) -> None:
    assert keystore_value(org.alice)["sealed"] is True


def test_plaintext_home_is_migrated_at_the_first_unlock(org: Org, tmp_path: Path, passphrase_env: None) -> None:
    busy_home(org, tmp_path)
    home = Home(org.alice.home)
    cfg, pins = home.config(), home.pins()
    as_older_version(org.alice)
    # What an older version left: plaintext config.json and pins.json, its session.bin, a thread cache named
    # by the team id.
    (org.alice.home / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    (org.alice.home / "pins.json").write_text(json.dumps(asdict(pins), indent=1))
    (org.alice.home / "session.bin").write_bytes(b"MVSS1\n" + os.urandom(80))
    (org.alice.home / "config.bin").unlink()
    (org.alice.home / "pins.bin").unlink()
    device = home.unlock().device
    team_id = next(k for k in pins.chains if (org.alice.home / "threads" /
                                             f"{file_name(local_key(device), 'threads/' + k)}.bin").exists())
    sealed_cache = org.alice.home / "threads" / f"{file_name(local_key(device), 'threads/' + team_id)}.bin"
    sealed_cache.replace(org.alice.home / "threads" / f"{team_id}.bin")

    assert org.alice.json("whoami")["member"] == cfg.member_id
    names = {p.name for p in org.alice.home.iterdir()}
    assert {"config.bin", "pins.bin"} <= names and not {"config.json", "pins.json", "session.bin"} & names
    fresh = Home(org.alice.home)
    assert fresh.config() == cfg
    migrated = fresh.pins()
    assert migrated.verified == pins.verified and migrated.docs == pins.docs and migrated.keys == pins.keys
    assert set(migrated.chains) == set(pins.chains)
    # The thread cache got its keyed name back, and still opens.
    assert org.alice.json("thread", "read", "drafting", "planning")
    assert sealed_cache.exists() and not (org.alice.home / "threads" / f"{team_id}.bin").exists()
    # Migrated once: the keystore is marked now, and plaintext put there again is refused.
    assert keystore_value(org.alice)["sealed"] is True
    (org.alice.home / "pins.json").write_text(json.dumps(asdict(Pins())))
    org.alice.fails("whoami", contains="pins.json is a plaintext file in a home whose state is sealed")
    assert (org.alice.home / "pins.json").exists()  # left for the member to look at
    (org.alice.home / "pins.json").unlink()
    assert Home(org.alice.home).pins().verified == pins.verified  # untouched


def test_plaintext_home_without_pins_gets_empty_pins(org: Org, passphrase_env: None) -> None:
    home = Home(org.alice.home)
    cfg = home.config()
    as_older_version(org.alice)
    (org.alice.home / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    (org.alice.home / "config.bin").unlink()
    (org.alice.home / "pins.bin").unlink()
    assert org.alice.json("whoami")["member"] == cfg.member_id  # trusts on first use, as before
    assert not (org.alice.home / "config.json").exists()
    assert Home(org.alice.home).pins().chains  # and pinned what it saw


def test_damaged_plaintext_config_is_one_line(org: Org) -> None:
    as_older_version(org.alice)
    (org.alice.home / "config.json").write_text("{not json")
    (org.alice.home / "config.bin").unlink()
    org.alice.fails("whoami", contains="config.json is damaged")
    assert "sealed" not in keystore_value(org.alice)  # not marked: a failed migration can be retried


def test_a_home_the_previous_version_sealed_is_marked_at_the_first_unlock(org: Org, passphrase_env: None) -> None:
    """config.bin and pins.bin already sealed, the keystore not marked (the version before the mark): the
    first unlock marks it and changes nothing else; from then on planted plaintext state is refused."""
    before = {n: (org.alice.home / n).read_bytes() for n in ("config.bin", "pins.bin")}
    as_older_version(org.alice)
    assert org.alice.json("whoami")["name"] == "alice"
    assert keystore_value(org.alice)["sealed"] is True
    assert Home(org.alice.home).config().name == "alice"
    assert (org.alice.home / "config.bin").read_bytes() == before["config.bin"]
    forged = asdict(Home(org.alice.home).config())
    forged["name"] = "mallory"
    (org.alice.home / "config.json").write_text(json.dumps(forged))
    org.alice.fails("whoami", contains="config.json is a plaintext file in a home whose state is sealed")


@pytest.mark.parametrize("name", ["config", "pins"])
def test_a_sealed_home_refuses_planted_or_missing_state(org: Org, name: str) -> None:
    """Once sealed, no plaintext file is taken, even beside its sealed copy, and neither sealed file may be
    missing (a missing config.bin is not "no identity": join must not overwrite the keys)."""
    home = org.alice.home
    sealed = (home / f"{name}.bin").read_bytes()
    planted = {"url": "https://127.0.0.1:1", "cert_fp": "00" * 32} if name == "config" else asdict(Pins())
    (home / f"{name}.json").write_text(json.dumps(planted))
    org.alice.fails("whoami", contains=f"{name}.json is a plaintext file in a home whose state is sealed")
    org.alice.fails("unlock", contains=f"{name}.json is a plaintext file")
    (home / f"{name}.bin").unlink()
    org.alice.fails("whoami", contains=f"{name}.json is a plaintext file")
    assert (home / f"{name}.json").exists() and not (home / f"{name}.bin").exists()  # nothing sealed from it
    (home / f"{name}.json").unlink()
    org.alice.fails("whoami", contains=f"{name}.bin is missing")
    org.alice.fails("unlock", contains=f"{name}.bin is missing")
    keys = (home / "keystore.bin").read_bytes()
    org.alice.fails("join", "mv1-AAAA", "--name", "alice2", contains="already holds an identity")
    assert (home / "keystore.bin").read_bytes() == keys
    (home / f"{name}.bin").write_bytes(sealed)
    assert org.alice.json("whoami")["name"] == "alice"


def test_home_without_identity_says_so(make_member: Any) -> None:
    nobody = make_member("nobody")
    nobody.fails("whoami", contains="no Member Vault identity")
    nobody.fails("unlock", contains="no Member Vault identity")

