"""Issue 15, the account part: the short recovery key, passphrase strength, ``passphrase change`` and
``--passphrase-command``, through the real CLI against the real server (and the code's check as a property)."""

from __future__ import annotations

import os
import random
import shlex
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from client import admin, agent
from client.home import Home
from tests.conftest import PASSPHRASE, Member, Org, ServerThread
from tests.helpers.members import session
from vault.errors import InviteError
from vault.invite import RECOVERY_PREFIX, MemberCode
from vault.keys import DeviceKeys
from vault.links import sign_device_proof
from vault.recovery import ALPHABET, GROUPS, RecoveryCode

STRONG = "quartz lantern ferry oboe 71"
PROMPTED = {"MVAULT_PASSPHRASE_FILE": ""}  # no file: the prompts read standard input


def sheet_args(sheet: dict[str, Any]) -> list[str]:
    return ["--server", sheet["server"], "--cert", sheet["cert"]]


def fresh(tmp_path: Path, name: str, passphrase_file: Path, **env: str) -> Member:
    return Member(tmp_path / f"home-{name}-{os.urandom(3).hex()}", name, passphrase_file, dict(env))


def text_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"pass-{os.urandom(4).hex()}"
    path.write_text(text + "\n")
    return path


# -- the recovery key ---------------------------------------------------------------------------------------


def test_recovery_with_the_short_code_and_the_server_line(org: Org, tmp_path: Path) -> None:
    doc = tmp_path / "shared.md"
    doc.write_text("kept through recovery")
    org.alice.ok("put", "drafting", str(doc))
    human = org.alice.ok("recovery-key", "--name", "desk-drawer").out
    sheet = org.alice.json("recovery-key")
    code = sheet["recovery_key"]
    groups = code.split("-")
    assert len(groups) == GROUPS and all(len(g) == 5 and set(g) <= set(ALPHABET) for g in groups)
    assert sheet["server"] == org.server.url and sheet["cert"] == org.server.fingerprint
    assert org.server.url not in code and "desk-drawer" in human
    # For people: the groups in rows of four numbered by their first group, and the server line beside them.
    rows = [line.split() for line in human.splitlines() if line.strip()[:2].strip().isdigit()]
    assert [r[0] for r in rows] == ["1", "5", "9", "13"] and all(len(r[1].split("-")) == 4 for r in rows)
    assert RecoveryCode.parse("-".join(r[1] for r in rows)).member_id == org.alice.json("whoami")["member"]
    assert f"mvault recover --server {org.server.url} --cert {org.server.fingerprint}" in human

    # Copied from paper: lower case, spaces instead of dashes, o for 0 and l for 1, one argument per group.
    typed = " ".join(groups).lower().replace("0", "o").replace("1", "l").split()
    laptop = fresh(tmp_path, "alice", org.alice.passphrase_file)
    laptop.fails("recover", *typed, contains="--server")  # the key names no server
    assert not Home(laptop.home).exists
    assert laptop.json("recover", *typed, *sheet_args(sheet))["name"] == "alice"
    laptop.ok("get", "drafting", "shared.md", "-o", str(tmp_path / "back.md"))
    assert (tmp_path / "back.md").read_text() == "kept through recovery"
    assert laptop.json("whoami")["member"] == org.alice.json("whoami")["member"]

    # The certificate is pinned by the server line: another fingerprint is refused. (Here the key is asked for,
    # not given as an argument: it stays out of the shell's history.)
    wrong = fresh(tmp_path, "alice", org.alice.passphrase_file)
    r = wrong.run("recover", "--server", org.server.url, "--cert", "AB:" * 31 + "AB", input=code + "\n")
    assert r.code == 3 and r.err.startswith("recovery key: ") and "certificate does not match" in r.err, r.err
    assert not Home(wrong.home).exists


def test_recovery_refuses_a_server_of_another_organization(org: Org, tmp_path: Path) -> None:
    """An impostor server with a line of its own (its URL, its real certificate): its organization root does not
    start with the 11 bytes in the key, so recovery stops before the paper device signs a login there."""
    sheet = org.alice.json("recovery-key")
    impostor = ServerThread(tmp_path / "impostor").start()
    try:
        assert impostor.invite is not None
        fresh(tmp_path, "mallory", org.alice.passphrase_file).ok("join", impostor.invite, "--name", "alice")
        victim = fresh(tmp_path, "alice", org.alice.passphrase_file)
        victim.fails("recover", sheet["recovery_key"], "--server", impostor.url, "--cert", impostor.fingerprint,
                     contains="organization does not match")
        assert not Home(victim.home).exists
    finally:
        impostor.stop()


def test_every_single_group_typo_is_caught_and_named_by_the_cli(org: Org, tmp_path: Path) -> None:
    sheet = org.alice.json("recovery-key")
    groups = sheet["recovery_key"].split("-")
    rng = random.Random(15)
    m = fresh(tmp_path, "alice", org.alice.passphrase_file)
    for i in range(GROUPS):
        typo = list(groups)
        while typo[i] == groups[i]:
            typo[i] = "".join(rng.choice(ALPHABET) for _ in range(5))
        m.fails("recover", "-".join(typo), *sheet_args(sheet), contains=f"group {i + 1} looks mistyped")
        assert not Home(m.home).exists
    # A group with a character too few is named too; a missing group is counted.
    short = [*groups[:6], groups[6][:4], *groups[7:]]
    m.fails("recover", "-".join(short), *sheet_args(sheet), contains="group 7 has 4 characters")
    m.fails("recover", "".join(groups[:-1]), *sheet_args(sheet), contains="75 characters")
    m.fails("recover", "-".join([*groups[:3], "U" * 5, *groups[4:]]), *sheet_args(sheet), contains="group 4")


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), st.binary(min_size=11, max_size=11),
       st.integers(0, GROUPS - 1), st.text(ALPHABET, min_size=5, max_size=5))
def test_any_replacement_of_one_group_is_detected_and_located(secret: bytes, member: bytes, org_prefix: bytes,
                                                              index: int, replacement: str) -> None:
    code = RecoveryCode(secret, member.hex(), org_prefix)
    groups = code.encode().split("-")
    assert RecoveryCode.parse(" ".join(groups).lower()) == code
    if replacement == groups[index]:
        return
    groups[index] = replacement
    try:
        RecoveryCode.parse("-".join(groups))
    except InviteError as e:
        assert f"group {index + 1} looks mistyped" in e.message
    else:
        raise AssertionError(f"a typo in group {index + 1} went unnoticed")


async def test_an_old_mvr1_key_still_recovers(org: Org, tmp_path: Path) -> None:
    """A paper key printed by an older version: ``mvr1-`` + base64 of the server line, the whole organization root,
    the member and a 32-byte seed. ``recover`` takes it alone, as it did."""
    secret = os.urandom(32)
    async with session(org.server, org.alice) as s:
        paper = DeviceKeys.from_paper(secret)
        await admin._add_device(s, paper.sign_public, paper.box_public, "paper-old", "paper",
                                sign_device_proof(paper, s.session.me))
        old = MemberCode(RECOVERY_PREFIX, s.session.cfg.url, bytes.fromhex(s.session.cfg.cert_fp),
                         bytes.fromhex(s.session.cfg.org_root), s.session.me, secret).encode()
    assert len(old) > 300
    laptop = fresh(tmp_path, "alice", org.alice.passphrase_file)
    laptop.ok("recover", old, "--name", "laptop")
    assert laptop.json("whoami")["name"] == "alice"
    assert "laptop" in [d["name"] for d in org.alice.json("device", "ls")]


# -- passphrase strength -----------------------------------------------------------------------------------


def test_a_weak_passphrase_is_refused_before_the_second_prompt(server: ServerThread, tmp_path: Path) -> None:
    assert server.invite is not None
    nobody = tmp_path / "unused"
    founder = fresh(tmp_path, "ana", nobody, **PROMPTED)
    r = founder.run("join", server.invite, "--name", "ana", input=f"password1234\nshort\n{STRONG}\n{STRONG}\n")
    assert r.code == 0, r.err
    first_repeat = r.err.index("repeat the new passphrase")
    assert r.err.index("too common") < first_repeat
    assert r.err.index("too short: at least 10 characters") < first_repeat
    assert r.err[:first_repeat].count("new passphrase:") == 3
    Member(founder.home, "ana", text_file(tmp_path, STRONG)).ok("whoami")

    # Three weak answers: refused, nothing written.
    m = fresh(tmp_path, "bea", nobody, **PROMPTED)
    r = m.run("join", server.invite, "--name", "bea", input="password\nbea12345678\nqwertyuiop\n")
    assert r.code == 1 and r.err.splitlines()[-1].startswith("error: no acceptable new passphrase")
    assert "repeat" not in r.err and not Home(m.home).exists
    # Two different entries: asked again.
    r = m.run("join", server.invite, "--name", "bea", input=f"{STRONG}\n{STRONG}x\n")
    assert "the two entries differ" in r.err and r.code == 1 and not Home(m.home).exists


def test_a_weak_passphrase_from_a_file_is_refused_with_its_reason(org: Org, tmp_path: Path) -> None:
    code = org.alice.json("invite")["invite"]
    weak = fresh(tmp_path, "carl", text_file(tmp_path, "password123"))
    weak.fails("join", code, "--name", "carl", contains="too common")
    assert not Home(weak.home).exists
    # The same check guards a recovery's new keystore.
    sheet = org.alice.json("recovery-key")
    weak.fails("recover", sheet["recovery_key"], *sheet_args(sheet), contains="too common")
    assert not Home(weak.home).exists
    # The fixture's passphrase is a strong one, so every other test's keystore passes the check.
    fresh(tmp_path, "carl", org.alice.passphrase_file).ok("join", code, "--name", "carl")
    assert org.alice.passphrase_file.read_text().strip() == PASSPHRASE


# -- passphrase change --------------------------------------------------------------------------------------


def test_passphrase_change_refuses_the_old_one_afterwards(org: Org, tmp_path: Path) -> None:
    bob = org.bob
    token = bob.json("unlock", "--minutes", "10")["session"]
    assert agent.status(bob.home) is not None
    # A wrong current passphrase changes nothing (and is told before the new one is asked).
    wrong = Member(bob.home, "bob", text_file(tmp_path, "not bob's passphrase at all"))
    r = wrong.run("passphrase", "change", input=f"{STRONG}\n{STRONG}\n")
    assert r.code == 1 and "wrong passphrase" in r.err and "new passphrase" not in r.err
    # Weak, then the current one again: refused with a reason; then a good one, twice.
    r = bob.run("passphrase", "change", "--json", input=f"password1234\n{STRONG}\n{STRONG}\n")
    assert r.code == 0, r.err
    assert r.json() == {"changed": True, "ended_session": True} and "too common" in r.err
    assert agent.status(bob.home) is None  # the unlock session held the old key: ended
    bob.fails("whoami", contains="wrong passphrase")
    Member(bob.home, "bob", bob.passphrase_file, {"MVAULT_SESSION": token}).fails("whoami",
                                                                                  contains="wrong passphrase")
    new = Member(bob.home, "bob", text_file(tmp_path, STRONG))
    assert new.json("whoami")["name"] == "bob"
    new.ok("ls", "drafting")
    # From a file (scripts); the same passphrase again is refused.
    again = text_file(tmp_path, STRONG)
    new.fails("passphrase", "change", "--new-passphrase-file", str(again), contains="is the current one")
    back = text_file(tmp_path, PASSPHRASE)
    new.ok("passphrase", "change", "--new-passphrase-file", str(back))
    new.fails("whoami", contains="wrong passphrase")
    assert bob.json("whoami")["name"] == "bob"
    bob.fails("passphrase", "change", "--new-passphrase-file", str(text_file(tmp_path, "abc")), contains="too short")


# -- --passphrase-command / MVAULT_PASSPHRASE_COMMAND -------------------------------------------------------


def command_printing(tmp_path: Path, text: str, status: int = 0) -> str:
    script = tmp_path / f"pw-{os.urandom(3).hex()}.py"
    script.write_text(f"import sys\nprint({text!r})\nprint('second line, ignored')\nsys.exit({status})\n")
    return shlex.join([sys.executable, str(script)])


def test_passphrase_command_and_its_failures(org: Org, tmp_path: Path) -> None:
    wrong_file = text_file(tmp_path, "not the passphrase at all")
    alice = Member(org.alice.home, "alice", wrong_file)
    good = command_printing(tmp_path, PASSPHRASE)
    # The option comes before MVAULT_PASSPHRASE_FILE (set here to a wrong one).
    assert alice.json("--passphrase-command", good, "whoami")["name"] == "alice"
    # The environment variable, without a file.
    by_env = Member(org.alice.home, "alice", wrong_file, {"MVAULT_PASSPHRASE_COMMAND": good,
                                                          "MVAULT_PASSPHRASE_FILE": ""})
    assert by_env.json("whoami")["name"] == "alice"
    # Both variables: ambiguous, refused.
    Member(org.alice.home, "alice", wrong_file, {"MVAULT_PASSPHRASE_COMMAND": good}).fails(
        "whoami", contains="set one")
    # Failures, one line each.
    alice.fails("--passphrase-command", command_printing(tmp_path, PASSPHRASE, 3), "whoami",
                contains="failed (exit status 3)")
    alice.fails("--passphrase-command", str(tmp_path / "no-such-program"), "whoami", contains="cannot run")
    alice.fails("--passphrase-command", command_printing(tmp_path, ""), "whoami", contains="printed no passphrase")
    alice.fails("--passphrase-command", "'unclosed", "whoami", contains="cannot split")
    alice.fails("--passphrase-command", command_printing(tmp_path, "wrong one"), "whoami", contains="wrong passphrase")
    # A new keystore's passphrase from a command passes the strength check too.
    code = org.alice.json("invite")["invite"]
    m = fresh(tmp_path, "dora", wrong_file)
    m.fails("--passphrase-command", command_printing(tmp_path, "password123"), "join", code, "--name", "dora",
            contains="too common")
    m.ok("--passphrase-command", command_printing(tmp_path, STRONG), "join", code, "--name", "dora")
    assert Member(m.home, "dora", text_file(tmp_path, STRONG)).json("whoami")["name"] == "dora"
