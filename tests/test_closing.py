"""Closing the organization end to end (issue 20), on the real server with the real CLI: the quorum reached, the
hand-over export read by the successor's age identity with Debian's ``age -d``, the server's data reduced to the
organization's chains and the audit log's hashes (the data directory and the database looked at), members'
clients wiping after verifying; and the server as the attacker: a closing below quorum refused by the server, and
forged closings (made by the server, or by a single member), a below-quorum one and one replayed from another
organization served to clients, which refuse them and wipe nothing.

The organization: alice (founder, the only NCC member: a majority is her own proposal), bob (a member, writer in
team drafting), carol (Security Team, ``security_team``)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from server.context import DIRECTORY
from server.directory import Directory
from tests.conftest import Member, Org, security_team
from tests.helpers.agetools import AGE, AGE_KEYGEN, age_decrypt_untar, age_identity
from tests.helpers.closing import SUCCESSOR, closing_world, pretend_closed, propose_body
from tests.helpers.http import Http
from tests.helpers.members import session
from tests.helpers.postgres import SyncConnection
from tests.helpers.worlds import World, Worlds
from tests.test_export import files_match, ssh_verify, write
from vault.chains import PlanEntry
from vault.errors import ChainError, PolicyDenied
from vault.keys import DeviceKeys
from vault.links import Link, make_link
from vault.wire.schemas import LinkRequest, SeqAnswer

needs_age = pytest.mark.skipif(not (AGE and AGE_KEYGEN), reason="Debian's age (.ci/run installs it)")


@dataclass
class Closing:
    org: Org
    carol: Member
    successor_key: Path
    plan: Path

    @property
    def d(self) -> Directory:
        d = self.org.server.app[DIRECTORY]
        assert isinstance(d, Directory)
        return d


def _documents_of_the_closing(org: Org, make_member: Any) -> Member:
    """carol in the Security Team, and the documents the hand-over plan names (and one it does not)."""
    carol = security_team(org, make_member)
    write(org.alice, "plan.md", "the campaign plan\n")
    write(org.bob, "notes/minutes.txt", "minutes by bob\n")
    write(org.alice, "secret.txt", "not handed over\n")
    return carol


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    """Every test starts there: built once per backend (ten CLI runs a test before session 15)."""
    return worlds.org_then("org-closing", _documents_of_the_closing)


@pytest.fixture
def closing(org: Org, make_member: Any, tmp_path: Path) -> Closing:
    # Copied from "org-closing" when this module's org_world gave it; a module importing this fixture (review 11)
    # gets another world: then carol and the documents are made here.
    carol = make_member("carol")
    if not (carol.home / "keystore.bin").exists():
        carol = _documents_of_the_closing(org, make_member)
    key, recipient = age_identity(tmp_path, "successor") if AGE_KEYGEN else (tmp_path / "none", "age1x")
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[[hand-over]]\nteam = "drafting"\ndocuments = ["plan.md", "notes/"]\nto = ["{recipient}"]\n')
    return Closing(org, carol, key, plan)


def files_of(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def counts(db: sqlite3.Connection | SyncConnection) -> dict[str, int]:
    tables = ("team_boxes", "puk_boxes", "versions", "threads", "messages", "sessions", "link_slots", "authored")
    out = {t: int(db.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]) for t in tables}
    out["team links"] = int(db.execute("SELECT count(*) FROM links WHERE kind='team'").fetchall()[0][0])
    return out


@needs_age
def test_closing_end_to_end(backend: str, closing: Closing, tmp_path: Path) -> None:
    """On both backends (``backend``: SQLite, and PostgreSQL where its binaries are installed)."""
    org, carol, server = closing.org, closing.carol, closing.org.server
    alice, bob = org.alice, org.bob
    proposed = alice.json("org", "close", "--hand-over", str(closing.plan))
    assert proposed["met"] is False and proposed["quorum"] == {"ncc": "majority", "security": 1, "ncc_members": 1}
    assert [e["team_name"] for e in proposed["plan"]] == ["drafting"]
    assert sorted(proposed["plan"][0]["documents"]) == ["notes/minutes.txt", "plan.md"]  # as alice's client opens them
    assert not any(b"plan.md" in link.wire or b"minutes" in link.wire for link in closing.d.org_links), \
        "document names never reach the chain (the server reads it): ids do"
    alice.fails("org", "close", "--run", "--out", str(tmp_path / "early"), contains="quorum")
    shown = bob.json("org", "closing")  # a member reads the plan with the names its client opens
    assert sorted(shown["plan"][0]["documents"]) == ["notes/minutes.txt", "plan.md"]
    bob.fails("org", "approve-close", contains="may not approve closing")
    assert carol.json("org", "approve-close")["met"] is True
    db = server.db()
    assert counts(db)["versions"] > 0 and counts(db)["team_boxes"] > 0
    shredded = [bytes(r[0]) for r in db.execute("SELECT box FROM team_boxes").fetchall()
                + db.execute("SELECT record FROM versions").fetchall()]
    audit = SyncConnection(backend) if backend else sqlite3.connect(server.data_dir / "audit.db")
    bodies_before = [bytes(r[0]) for r in audit.execute("SELECT leaf FROM events WHERE leaf IS NOT NULL").fetchall()]
    assert len(bodies_before) > 20
    if backend:
        db.execute("CHECKPOINT")  # the rows written to the tables' files (not only the buffers and the WAL)
    out = tmp_path / "handover"
    run = alice.json("org", "close", "--run", "--out", str(out))
    [archive] = [Path(f) for f in run["files"]]
    # The successor reads its hand-over with Debian's age and tar alone; OpenSSH checks the manifest.
    plain = tmp_path / "plain"
    age_decrypt_untar(archive, closing.successor_key, plain)
    manifest = json.loads((plain / "manifest.json").read_bytes())
    assert sorted(f["name"] for f in manifest["files"]) == ["notes/minutes.txt", "plan.md"]
    files_match(plain, manifest)
    assert ssh_verify(plain).returncode == 0
    # The server holds the chains of the organization and its members, and the audit log's hashes: nothing else.
    assert all(n == 0 for n in counts(db).values()), counts(db)
    assert [p for p in (server.data_dir / "blobs").rglob("*") if p.is_file()] == []
    if backend:  # PostgreSQL's table files keep deleted rows until vacuumed: none is left (review round 11)
        db.execute("CHECKPOINT")
        datadir = Path(str(db.execute("SELECT current_setting('data_directory')").fetchall()[0][0]))
        files = [datadir / str(db.execute(f"SELECT pg_relation_filepath('{t}')").fetchall()[0][0])
                 for t in ("team_boxes", "versions")]
        disk = b"".join(f.read_bytes() for f in files)
        assert not [b for b in shredded if b in disk], "shredded boxes or records are still in the tables' files"
    stored = db.execute("SELECT count(*) FROM links WHERE kind='org'").fetchall()[0][0]
    assert stored == closing.d.require_org().seq and closing.d.org_links[-1].type == "org.closed"
    events, bodies = audit.execute("SELECT count(*), count(leaf) FROM events").fetchall()[0]
    assert events > 0 and bodies < 5, (events, bodies)  # the Merkle hashes stay; bodies only of the few events since
    # ... and the pruned bodies are not left in the audit database's files (free pages, write-ahead log, dead rows)
    disk = audit_files(backend, server, audit)
    assert not [b for b in bodies_before if b in disk], "pruned audit bodies are still in the audit database's files"
    # Every member's client, on its next contact, verifies the closing and wipes its home.
    for m in (bob, carol, alice):
        r = m.run("ls", "drafting")
        assert r.code != 0 and "was closed" in r.err and "verified against the chain" in r.err, r.err
        assert not m.home.exists(), f"{m.name}'s home was not wiped"


def audit_files(backend: str, server: Any, audit: sqlite3.Connection | SyncConnection) -> bytes:
    """The bytes of the audit database's files: SQLite's file and write-ahead log; PostgreSQL's ``events`` table and
    its TOAST table after a CHECKPOINT (the WAL segments are PostgreSQL's own, a documented residue)."""
    if not backend:
        return b"".join(p.read_bytes() for p in server.data_dir.glob("audit.db*"))
    audit.execute("CHECKPOINT")
    datadir = Path(str(audit.execute("SELECT current_setting('data_directory')").fetchall()[0][0]))
    rels = audit.execute("SELECT pg_relation_filepath(oid), pg_relation_filepath(reltoastrelid) FROM pg_class "
                         "WHERE relname = 'events'").fetchall()[0]
    return b"".join((datadir / str(r)).read_bytes() for r in rels if r)


# -- the server as the attacker ---------------------------------------------------------------------------


def signer(m: Member) -> DeviceKeys:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
        mp.delenv("MVAULT_SESSION", raising=False)
        return Home(m.home).unlock().device


def now(c: Closing) -> int:
    return max(int(c.org.server.clock()), c.d.require_org().time)


def link_after(c: Closing, prev: Link | None, who: Member, device: DeviceKeys, type_: str,
               body: dict[str, Any], t: int) -> Link:
    """An organization link signed with ``device`` in ``who``'s name at ``t``, after ``prev`` (None: the server's
    head)."""
    org = c.d.require_org()
    seq, head = (prev.seq, prev.hash) if prev else (org.seq, org.head)
    ids = {ms.name: mid for mid, ms in c.d.members.items()}
    return make_link(chain=org.org_id, seq=seq + 1, prev=head, time=t, signer=ids[who.name], device=device,
                     type_=type_, body=body)


def forged_links(c: Closing, approvers: list[tuple[Member, DeviceKeys]], proposer: DeviceKeys) -> list[Link]:
    """A closing on the server's org head: alice's proposal signed with ``proposer``, approvals, the export, the end."""
    alice, t = c.org.alice, now(c)
    links = [link_after(c, None, alice, proposer, "org.close.propose", propose_body(not_before=t), t)]
    proposal = links[0].hash
    for m, device in approvers:
        links.append(link_after(c, links[-1], m, device, "org.close.approve", {"proposal": proposal}, t))
    links.append(link_after(c, links[-1], alice, proposer, "org.close.exported",
                            {"proposal": proposal, "entry": 0, "manifest": bytes(32)}, t))
    links.append(link_after(c, links[-1], alice, proposer, "org.closed", {"proposal": proposal}, t))
    return links


def other_organization() -> tuple[list[Link], dict[str, list[Link]]]:
    """A closing made properly, by its quorum, in another organization (tests/helpers/closing.py)."""
    cw = closing_world()
    proposal = cw.propose()
    cw.approve(proposal, cw.carol)
    cw.approve(proposal, cw.bob)
    cw.exported(proposal)
    cw.w.time += 20
    cw.closed(proposal)
    assert cw.w.org().closing.closed is not None
    return cw.w.org_links, {p.id: p.chain for p in cw.w.people.values()}


@pytest.mark.parametrize(("forgery", "why"), [
    ("made by the server", "not an active device"), ("alice alone", "not reached its quorum"),
    ("approved by a member without the role", "may not approve closing"),
    ("carol's approval forged", "not an active device"),
    ("replayed from another organization", "another organization")])
def test_a_closing_that_does_not_verify_wipes_nothing(closing: Closing, forgery: str, why: str) -> None:
    org, bob = closing.org, closing.org.bob
    alice = signer(org.alice)
    members: dict[str, list[Link]] | None = None
    if forgery == "made by the server":
        links = closing.d.org_links + forged_links(closing, [(closing.carol, DeviceKeys.generate())],
                                                   DeviceKeys.generate())
    elif forgery == "alice alone":
        links = closing.d.org_links + forged_links(closing, [], alice)
    elif forgery == "approved by a member without the role":
        links = closing.d.org_links + forged_links(closing, [(bob, signer(bob))], alice)
    elif forgery == "carol's approval forged":
        links = closing.d.org_links + forged_links(closing, [(closing.carol, DeviceKeys.generate())], alice)
    else:
        links, members = other_organization()
    before = files_of(bob.home)
    with pretend_closed(closing.d, links, members):
        r = bob.run("ls", "drafting")
    assert r.code == 3, (r.code, r.err)
    assert "closing" in r.err and why in r.err, r.err
    assert files_of(bob.home) == before, "a closing that does not verify wiped something"
    assert "plan.md" in bob.ok("ls", "drafting").out  # the honest server again: everything is still there


def post(org: Org, link: Link) -> None:
    async def go() -> None:
        async with session(org.server, org.alice) as c:
            await c.session.api.post("/api/v1/org/links", LinkRequest(link.wire), SeqAnswer)

    asyncio.run(go())


def real_plan(c: Closing, documents: tuple[str, ...] = ()) -> list[PlanEntry]:
    drafting = c.d.team_by_name("drafting")
    assert drafting is not None
    return [PlanEntry(drafting.team_id, documents, (SUCCESSOR,))]


def test_the_server_refuses_a_closing_below_its_quorum(closing: Closing) -> None:
    org = closing.org
    db = org.server.db()
    alice = signer(org.alice)
    t = now(closing)
    proposal = link_after(closing, None, org.alice, alice, "org.close.propose",
                          propose_body(real_plan(closing), not_before=t), t)
    post(org, proposal)  # alice's proposal: one NCC approval of one, no Security Team member's
    before, head = counts(db), closing.d.require_org().head
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("org.close.exported", {"proposal": proposal.hash, "entry": 0, "manifest": bytes(32)}),
        ("org.closed", {"proposal": proposal.hash})]
    for type_, body in bodies:
        with pytest.raises(PolicyDenied, match="not reached its quorum"):
            post(org, link_after(closing, None, org.alice, alice, type_, body, now(closing)))
    after = counts(db)
    assert after.pop("sessions") >= before.pop("sessions") and after == before  # (the session's own login)
    assert closing.d.require_org().head == head
    assert closing.d.require_org().closing.closed is None
    assert "plan.md" in org.bob.ok("ls", "drafting").out


def test_an_open_organization_has_no_closing_to_serve(closing: Closing) -> None:
    async def get() -> int:
        async with Http(closing.org.server) as h:
            return (await h.call("GET", "/api/v1/closing"))[0]

    assert asyncio.run(get()) == 404
    assert "plan.md" in closing.org.bob.ok("ls", "drafting").out


# -- the plan names real teams and documents (checked by the server, the proposer's and every approver's client) --


@pytest.mark.parametrize(("what", "why"), [("team", "names no team"), ("document", "does not hold")])
def test_the_server_refuses_a_plan_naming_what_is_not_there(closing: Closing, what: str, why: str) -> None:
    org, t = closing.org, now(closing)
    plan = ([PlanEntry("0" * 32, (), (SUCCESSOR,))] if what == "team" else real_plan(closing, ("0" * 32,)))
    head = closing.d.require_org().head
    with pytest.raises(ChainError, match=why):
        post(org, link_after(closing, None, org.alice, signer(org.alice), "org.close.propose",
                             propose_body(plan, not_before=t), t))
    assert closing.d.require_org().head == head and closing.d.require_org().closing.proposals == {}


@needs_age
def test_the_proposers_client_refuses_an_unknown_team(closing: Closing, tmp_path: Path) -> None:
    plan = tmp_path / "unknown.toml"
    plan.write_text(closing.plan.read_text().replace('team = "drafting"', 'team = "nosuch"'))
    closing.org.alice.fails("org", "close", "--hand-over", str(plan), contains="no team named 'nosuch'")
    assert closing.d.require_org().closing.proposals == {}


def test_approvers_refuse_a_plan_the_server_let_through(closing: Closing, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that stores a proposal naming a team that does not exist and a document its team does not hold: the
    approver's client refuses to sign, every client shows what is not there beside the plan resolved to names."""
    async def let_through(*_: object) -> None:
        return None

    monkeypatch.setattr("server.routes.chains.check_plan", let_through)
    org, t = closing.org, now(closing)
    plan = [PlanEntry("f" * 32, (), (SUCCESSOR,)), *real_plan(closing, ("0" * 32,))]
    post(org, link_after(closing, None, org.alice, signer(org.alice), "org.close.propose",
                         propose_body(plan, not_before=t), t))
    head = closing.d.require_org().head
    closing.carol.fails("org", "approve-close", contains="no team of this organization you see")
    assert closing.d.require_org().head == head
    shown = org.bob.json("org", "closing")  # bob reads drafting: his client checks its documents
    assert [e["team_name"] for e in shown["plan"]] == ["f" * 32, "drafting"]
    assert any("does not hold: " + "0" * 32 in p for p in shown["problems"]), shown["problems"]
    text = closing.carol.ok("org", "closing").out
    assert "team drafting" in text and "not there: plan entry 1 names " + "f" * 32 in text, text
