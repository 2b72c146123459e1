"""The authorization matrix (issue 3): every org role x team role x action, against the real server.

One organization is built once for the module through the real ``mvault`` CLI: founder
alice (NCC) and one member per organization role, ``m_member``, ``m_compa`` (invited with
``--role compa``), ``m_ncc``, ``m_staff`` and ``m_security`` (granted with ``mvault role
grant``). A few helpers (targets of team actions, an NCC member who holds no keys, pending
members) are made in-process through the client library.

Expected outcomes come from the policy table itself (``security.policy``), never from a
copy of it here:

* organization cells: ``POLICY.org_allows(roles, action)`` for every action of
  ``ORG_RULES``, attempted with the CLI (``invite``, ``admit``, ``role grant``,
  ``team create --kind``);
* team cells: ``POLICY.team_allows(roles, team_role, action)`` for every action of
  ``TEAM_RULES`` / ``TEAM_OVERRIDES`` and every team role (none, admin, writer, reader),
  plus the key rule of DESIGN.md: only a holder of the current key may rotate or share it
  (a member with a team role was added by a holder and holds the key; a non-member does
  not). Compas may only be readers (``MAX_TEAM_ROLE``), so compa x admin and compa x writer
  cannot exist and are skipped; ``test_compa_may_only_be_a_reader`` checks that the cap
  itself is enforced.

Every cell is attempted through the real client (the CLI for at least one allowed and one
denied cell per action, the in-process client for the rest). Allowed: it succeeds and the
change is on the server. Denied: it fails with a clear error and the server's rows
(links, team_boxes, versions, puk_boxes) are unchanged. Every denied cell is attempted a
second time without the client's own checks: the link (or upload, or read) is built by
hand with the denied member's device key and sent straight to the API, and the server must
refuse it (403, or 404 where the team is invisible to the caller, or 400 for a leave by a
non-member) without changing anything.

Beside the matrix: ``test_compa_may_only_be_a_reader`` (the ``MAX_TEAM_ROLE`` cap, also for
a writer later made compa), ``test_key_actions_need_the_key`` (a member whose key share is
pending has a role but no key: the only place the key rule decides) and
``test_ended_ncc_term_is_no_ncc`` (org roles are judged with their end dates).

``test_every_policy_action_has_cells`` fails when an action is added to the policy without
a way to attempt it here, and ``test_every_cell_was_exercised`` (after a full run) checks
that each action really had allowed and denied CLI cells and a denial at the server.

Teams between cells: each (org role, team role) pair has its own team, put back in shape
before every cell (``prepare``) and left without pending work after it (``settle``), so a
CLI run of any key holder (which first rotates and shares what is pending) changes nothing
but the command itself. The module takes about two minutes (each CLI run is ~0.8 s).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from client import admin, maintenance
from client.api import Api
from client.client import Client, join
from client.home import Home, Secrets
from client.threads.team import Threads
from client.view import View
from security.auditkey import AuditKeyClaim
from security.authority import POLICY
from security.events import audit_key_statement, audit_keypair, cosign_statement
from security.policy import (
    MAX_TEAM_ROLE,
    ORG_ROLES,
    ORG_RULES,
    TEAM_KINDS,
    TEAM_OVERRIDES,
    TEAM_ROLES,
    TEAM_RULES,
)
from security.protocols import default_text
from tests.conftest import PASSPHRASE, Member, Result, ServerThread
from tests.helpers.db import counts as db_counts
from tests.helpers.http import Http, b64, login
from vault.chains import HISTORY_BLOB, TeamState, team_id_for
from vault.crypto import labels
from vault.envelope import DocWriter
from vault.errors import VaultError
from vault.keys import DeviceKeys
from vault.links import Link, invite_public, make_link
from vault.messages import Body, make_message
from vault.teamkeys import TeamKey, box_hash, seal_history

# -- the matrix ----------------------------------------------------------------------------------

# The org roles each matrix actor holds: a base role, plus one extra role for ncc/staff/security.
ACTOR_ROLES: dict[str, frozenset[str]] = {
    "member": frozenset({"member"}),
    "compa": frozenset({"compa"}),
    "ncc": frozenset({"member", "ncc"}),
    "staff": frozenset({"member", "staff"}),
    "security": frozenset({"member", "security"}),
}
NONE = "none"  # not a member of the team
TEAM_ROLE_CHOICES = (NONE, *TEAM_ROLES)
KEY_ACTIONS = frozenset({"team.rotate", "team.share"})  # need the current team key (DESIGN.md)

AUDIT_TEAM = "mx-audit"  # a security team every matrix actor holds the key of (audit.key, org.audit_team)
NO_LINK_ACTIONS = frozenset({"audit.key", "audit.cosign"})  # signed statements, not chain links

# How each action is attempted (a static table: a policy action missing here fails the meta-test).
ORG_ACTIONS: dict[str, tuple[str, ...]] = {
    "org.invite": ("invite",),
    "org.invite.member": ("invite", "--role", "member"),
    "org.invite.compa": ("invite", "--role", "compa"),
    "org.admit": ("admit", "{pending}"),
    "org.role": ("role", "grant", "t_role", "staff"),
    "org.remove": ("remove", "{target}", "--reason", "authz matrix"),
    "org.protocols": ("audit", "protocols", "propose", "{protocols}"),
    "org.audit_team": ("audit", "designate", AUDIT_TEAM),
    "audit.key": ("audit", "key"),  # every actor holds the key of the security team AUDIT_TEAM
    "audit.cosign": ("audit", "witness"),
    **{f"team.create.{k}": ("team", "create", "{team}", "--kind", k) for k in TEAM_KINDS},
}
TEAM_ACTIONS: dict[str, tuple[str, ...]] = {
    "doc.read": ("get", "{team}", "seed.txt", "-o", "{out}"),
    "doc.write": ("put", "{team}", "{file}", "--as", "{doc}"),
    "team.add": ("team", "add", "{team}", "t_add", "--role", "reader"),
    "team.role": ("team", "role", "{team}", "t_y", "reader"),
    # There is no share command: any run of a key holder's client shares pending keys.
    "team.share": ("team", "show", "{team}", "--json"),
    "team.rotate": ("team", "rotate", "{team}"),
    "team.remove": ("team", "remove", "{team}", "t_y"),
    "team.leave": ("leave", "{team}"),
    "thread.post": ("thread", "post", "{team}", "seed-thread", "posted by {tag}"),
    "thread.read": ("thread", "read", "{team}", "seed-thread", "--json"),
}
SEED = "seed.txt"
THREAD = "seed-thread"
TABLES = ("links", "team_boxes", "versions", "puk_boxes", "threads", "messages")


def team_role_of(choice: str) -> str | None:
    return None if choice == NONE else choice


def sees_every_team(roles: frozenset[str]) -> bool:
    """The server shows every team to NCC (it may sign membership changes anywhere)."""
    return "ncc" in roles


def team_expected(org_role: str, team_role: str, action: str) -> bool:
    roles = ACTOR_ROLES[org_role]
    allowed = POLICY.team_allows(roles, team_role_of(team_role), action)
    if action in KEY_ACTIONS:
        allowed = allowed and team_role != NONE  # a non-member holds no key
    return allowed


def refusal_status(org_role: str, team_role: str, action: str) -> int:
    """What the server answers a denied team request sent without the client's checks."""
    if team_role == NONE and not sees_every_team(ACTOR_ROLES[org_role]):
        return 404  # the team is invisible to the caller
    if team_role == NONE and action == "team.leave":
        return 400  # bad_chain: not in this team
    return 403


COMBOS = [(r, tr) for r in ORG_ROLES for tr in TEAM_ROLE_CHOICES
          if tr == NONE or POLICY.may_hold_team_role(ACTOR_ROLES[r], tr)]
# Compas may only be readers: compa x admin and compa x writer cannot exist (MAX_TEAM_ROLE).
IMPOSSIBLE = [(r, tr) for r in ORG_ROLES for tr in TEAM_ROLES
              if not POLICY.may_hold_team_role(ACTOR_ROLES[r], tr)]
TEAM_CELLS = [(r, tr, a) for (r, tr) in COMBOS for a in TEAM_ACTIONS]
ORG_CELLS = [(r, a) for a in ORG_ACTIONS for r in ORG_ROLES]


def _pick_cli_cells() -> frozenset[tuple[str, str, str]]:
    """Per team action one allowed and one denied cell that go through the real CLI.

    The starting point moves per action so the CLI cells spread over the roles; a denied
    cell whose team the actor can see is preferred (a hidden team fails for that reason).
    """
    picked: set[tuple[str, str, str]] = set()
    for i, action in enumerate(TEAM_ACTIONS):
        k = (3 * i) % len(COMBOS)
        order = COMBOS[k:] + COMBOS[:k]
        allowed = [c for c in order if team_expected(*c, action)]
        denied = [c for c in order if not team_expected(*c, action)]
        denied.sort(key=lambda c: c[1] == NONE and not sees_every_team(ACTOR_ROLES[c[0]]))
        for cands in (allowed, denied):
            if cands:
                picked.add((*cands[0], action))
    return frozenset(picked)


CLI_CELLS = _pick_cli_cells()

# action -> {(channel, allowed)}: channel "cli" / "api" (the real client) or "server" (no client).
EXERCISED: dict[str, set[tuple[str, bool]]] = defaultdict(set)
CELLS_DONE: set[str] = set()


# -- the organization ------------------------------------------------------------------------------


@dataclass
class Actor:
    name: str
    member: Member
    home: Home
    secrets: Secrets
    member_id: str

    @property
    def device(self) -> DeviceKeys:
        return self.secrets.device


@dataclass
class World:
    server: ServerThread
    root: Path
    passphrase_file: Path
    actors: dict[str, Actor] = field(default_factory=dict)
    teams: set[str] = field(default_factory=set)
    serial: itertools.count[int] = field(default_factory=itertools.count)

    def member(self, name: str) -> Member:
        return Member(self.root / f"home-{name}", name, self.passphrase_file)

    def load(self, name: str) -> Actor:
        """The actor's keys from its keystore (MVAULT_PASSPHRASE_FILE is set by the fixture)."""
        m = self.member(name)
        home = Home(m.home)
        actor = Actor(name, m, home, home.unlock(), home.config().member_id)
        self.actors[name] = actor
        return actor

    def actor(self, org_role: str) -> Actor:
        return self.actors[f"m_{org_role}"]

    def id(self, name: str) -> str:
        return self.actors[name].member_id

    @asynccontextmanager
    async def session(self, name: str) -> AsyncIterator[Client]:
        """An in-process client session of ``name`` (the real client library, logged in)."""
        actor = self.actors[name]
        async with Api(self.server.url, bytes.fromhex(self.server.fingerprint)) as api:
            yield await Client.open(actor.home, actor.secrets, api)

    async def join(self, name: str, code: str) -> Actor:
        await join(Home(self.member(name).home), code, name, PASSPHRASE)
        return self.load(name)

    async def view(self) -> View:
        """alice's verified view (NCC: every team)."""
        async with self.session("alice") as a:
            return await a.chains.view(refresh=True)

    async def pending_member(self) -> Actor:
        """A fresh pending member: invited by someone whose invites are not admissions."""
        inviter = next(r for r in ORG_ROLES if POLICY.org_allows(ACTOR_ROLES[r], "org.invite.member")
                       and not POLICY.org_allows(ACTOR_ROLES[r], "org.admit"))
        async with self.session(f"m_{inviter}") as s:
            code = await admin.invite(s, "member", "authz: pending")
        actor = await self.join(f"p_{next(self.serial)}", code)
        assert (await self.view()).org.members[actor.member_id].status == "pending"
        return actor


async def _helpers(w: World) -> None:
    async with w.session("alice") as a:
        for name in ("h_ncc", "t_add", "t_y", "t_z", "t_role", "t_cap", "t_rm"):
            await w.join(name, await admin.invite(a, "member", "authz helper"))
        await a.chains.view(refresh=True)
        await admin.set_org_role(a, "h_ncc", "ncc", True, None)  # an NCC member who holds no team keys
        await admin.set_org_role(a, "t_role", "security", True, None)  # for denied revocations
    async with w.session("m_ncc") as n:  # the second NCC signature these grants take
        await admin.set_org_role(n, "h_ncc", "ncc", True, None)
        await admin.set_org_role(n, "t_role", "security", True, None)
    async with w.session("alice") as a:
        await admin.create_team(a, AUDIT_TEAM, "security")  # not designated: alice is not the only NCC member
        for role in ORG_ROLES:
            await admin.add_member(a, AUDIT_TEAM, f"m_{role}", "reader" if role == "compa" else "writer", None)
    async with w.session("m_security") as s:  # publishes the audit key: later CLI runs have nothing to do first
        assert any("published the audit key" in done for done in await maintenance.maintain(s))
    w.actors["p_shared"] = await w.pending_member()  # never admitted: target of denied admits


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("authz")
    pf = root / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    server = ServerThread(root / "server-data").start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MVAULT_PASSPHRASE_FILE", str(pf))
            mp.delenv("MVAULT_SESSION", raising=False)
            w = World(server, root, pf)
            alice = w.member("alice")
            assert server.invite is not None
            alice.ok("join", server.invite, "--name", "alice")
            for role in ORG_ROLES:
                m = w.member(f"m_{role}")
                args = ("invite", "--role", "compa") if role == "compa" else ("invite",)
                m.ok("join", alice.json(*args)["invite"], "--name", m.name)
                if role not in ("member", "compa") and alice.json("role", "grant", m.name, role)["proposed"]:
                    w.member("m_ncc").ok("role", "grant", m.name, role)  # two NCC members: the second agrees
            for name in ("alice", *(f"m_{r}" for r in ORG_ROLES)):
                w.load(name)
            asyncio.run(_helpers(w))
            view = asyncio.run(w.view())
            for role in ORG_ROLES:  # the matrix's premise: each actor holds exactly these org roles
                assert view.org.roles_of(w.actor(role).member_id) == ACTOR_ROLES[role], role
            yield w
    finally:
        server.stop()


# -- raw API calls (no client checks) ---------------------------------------------------------------


def counts(server: ServerThread) -> dict[str, int]:
    return db_counts(server, TABLES)


async def refused_raw(w: World, actor: Actor, requests: list[tuple[str, str, dict[str, Any]]], status: int,
                      what: str, contains: str = "") -> None:
    """Each request, sent as ``actor`` without any client check, is refused with ``status``
    (a JSON error, never a 5xx) and changes nothing on the server."""
    async with Http(w.server) as raw:
        token = await login(raw, actor)
        for method, path, kw in requests:
            before = counts(w.server)
            got, body = await raw.call(method, path, token=token, **kw)
            assert got == status, f"{what}: {method} {path}: expected {status}, got {got}: {body!r}"[:600]
            assert isinstance(body, dict) and body.get("error") and body.get("message"), body
            assert contains in body["message"], f"{what}: {body}"
            assert counts(w.server) == before, f"{what}: a refused request changed the server's rows"


# -- building links by hand -------------------------------------------------------------------------


def new_generation(team: TeamState, view: View, old: TeamKey | None,
                   leaving: str | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A key generation boxed to the team's members; a non-holder fakes the history blob."""
    key = TeamKey.generate(team.team_id, team.generation + 1)
    boxes: dict[str, bytes] = {}
    commits = []
    for mid in sorted(team.active_members(int(time.time())) - {leaving}):
        ms = view.members[mid]
        boxes[mid] = key.seal_for(mid, ms.puk_gen, ms.puk_box_public)
        commits.append({"member": mid, "puk_gen": ms.puk_gen, "hash": box_hash(boxes[mid])})
    body: dict[str, Any] = {"gen": key.gen, "canary": key.canary, "boxes": commits}
    if team.history:
        body["prev"] = seal_history(key, old) if old is not None else os.urandom(HISTORY_BLOB)
    return body, boxes


def one_box(key: TeamKey, view: View, member_id: str) -> tuple[dict[str, Any], bytes]:
    ms = view.members[member_id]
    box = key.seal_for(member_id, ms.puk_gen, ms.puk_box_public)
    return {"gen": key.gen, "boxes": [{"member": member_id, "puk_gen": ms.puk_gen, "hash": box_hash(box)}]}, box


def team_link(w: World, actor: Actor, team: TeamState, type_: str, body: dict[str, Any], org_seq: int) -> Link:
    return make_link(chain=team.team_id, seq=team.seq + 1, prev=team.head,
                     time=max(int(w.server.clock()), team.time), signer=actor.member_id, device=actor.device,
                     type_=type_, body={**body, "org_seq": org_seq})


async def forged_team_requests(w: World, actor: Actor, team_name: str, action: str,
                               holds_key: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """The request(s) a client without checks would send for ``action``: well formed, signed
    by ``actor``'s device, boxed with the real key when the actor holds it."""
    async with w.session("alice") as a:
        view = await a.chains.view(refresh=True)
        team = view.team_by_name(team_name)
        if action == "doc.read":
            doc, records = await a.docs.find_doc(team, SEED)
        if action.startswith("thread."):
            checker = (await (await Threads.open(a, team_name)).resolve(THREAD)).checker
            thread, rec = checker.thread, checker.rec
    key: TeamKey | None = None
    if holds_key:
        async with w.session(actor.name) as s:
            key = await s.keys.team_key((await s.chains.view()).team_by_name(team_name), team.generation)
    tid, org_seq = team.team_id, view.org.seq
    if action == "doc.read":
        return [("GET", f"/api/v1/teams/{tid}/docs", {}), ("GET", f"/api/v1/teams/{tid}/docs/{doc}", {}),
                ("GET", f"/api/v1/teams/{tid}/versions/{records[-1].version_id}/body", {})]
    if action == "thread.read":
        return [("GET", f"/api/v1/teams/{tid}/threads", {}),
                ("GET", f"/api/v1/teams/{tid}/threads/{thread}/messages", {})]
    if action == "thread.post":
        k = key or TeamKey.generate(tid, team.generation)
        m = make_message(k, Body("posted without the client's checks"), thread=thread, rec=rec, team_seq=team.seq,
                         sender=actor.member_id, device=actor.device, seq=1, prev=None, prev_time=0, seen=[],
                         time=int(w.server.clock()))
        return [("POST", f"/api/v1/teams/{tid}/threads/{thread}/messages", {"js": {"message": b64(m.raw)}})]
    if action == "doc.write":
        k = key or TeamKey.generate(tid, team.generation)  # a non-holder can only guess a key
        data, name = b"written without the client's checks", f"forged-{next(w.serial)}.txt"
        writer = DocWriter(key=k, team_seq=team.seq, device=actor.device, author=actor.member_id,
                           doc=k.doc_id(name), seq=1, parent=None, time=int(w.server.clock()), name=name,
                           size=len(data))
        upload = writer.upload_prefix() + writer.encrypt(data) + writer.finish()
        return [("POST", f"/api/v1/teams/{tid}/docs/{k.doc_id(name)}", {"data": upload})]
    boxes: dict[str, bytes] = {}
    if action == "team.add":
        body: dict[str, Any] = {"member": w.id("t_add"), "role": "reader", "until": None, "key": None}
        if key is not None:
            body["key"], box = one_box(key, view, w.id("t_add"))
            boxes[w.id("t_add")] = box
    elif action == "team.remove":
        body = {"member": w.id("t_y"), "key": None}
        if key is not None:
            body["key"], boxes = new_generation(team, view, key, leaving=w.id("t_y"))
    elif action == "team.role":
        body = {"member": w.id("t_y"), "role": "reader", "until": None}
    elif action == "team.rotate":
        gen, boxes = new_generation(team, view, key)
        body = {"key": gen}
    elif action == "team.share":
        k = key or TeamKey.generate(tid, team.generation)
        share, box = one_box(k, view, w.id("t_z"))
        body, boxes = {"member": w.id("t_z"), "key": share}, {w.id("t_z"): box}
    elif action == "team.leave":
        body = {}
    else:
        raise AssertionError(f"no forged request for {action}")
    link = team_link(w, actor, team, action, body, org_seq)
    return [("POST", f"/api/v1/teams/{tid}/links",
             {"js": {"link": b64(link.wire), "boxes": {m: b64(b) for m, b in boxes.items()}}})]


async def forged_org_requests(w: World, actor: Actor, action: str,
                              pending: str) -> list[tuple[str, str, dict[str, Any]]]:
    view = await w.view()
    org = view.org
    t = max(int(w.server.clock()), org.time)
    if action.startswith("team.create."):
        kind = action.removeprefix("team.create.")
        nonce = os.urandom(16)
        key = TeamKey.generate(team_id_for(org.org_id, nonce), 1)
        share, box = one_box(key, view, actor.member_id)
        body = {"org": org.org_id, "org_seq": org.seq, "nonce": nonce, "name": f"forged-{next(w.serial)}",
                "kind": kind, "history": True, "members": [{"member": actor.member_id, "role": "admin", "until": None}],
                "key": {"gen": 1, "canary": key.canary, "boxes": share["boxes"]}}
        link = make_link(chain=None, seq=1, prev=None, time=t, signer=actor.member_id, device=actor.device,
                         type_="team.create", body=body)
        return [("POST", "/api/v1/teams", {"js": {"link": b64(link.wire), "boxes": {actor.member_id: b64(box)}}})]
    if action.startswith("org.invite"):
        role = action.removeprefix("org.invite").lstrip(".") or "member"
        bodies = [{"invite": invite_public(os.urandom(32)), "role": role, "note": "forged", "expires": t + 86400}]
    elif action == "org.admit":
        bodies = [{"member": pending}]
    elif action == "org.role":  # grant, and revoke a role the target holds
        bodies = [{"member": w.id("t_role"), "role": "staff", "grant": True, "until": None},
                  {"member": w.id("t_role"), "role": "security", "grant": False, "until": None}]
    elif action == "org.remove":
        bodies = [{"member": w.id("t_rm"), "reason": "forged"}]
    elif action == "org.audit_team":
        bodies = [{"team": view.team_by_name(AUDIT_TEAM).team_id}]
    elif action in NO_LINK_ACTIONS:
        return await forged_audit_requests(w, actor, action)
    elif action == "org.protocols":  # a proposal, and an approval (of a proposal that may not even exist)
        forged = [("org.protocols.propose", {"text": protocols_text(org, next(w.serial))}),
                  ("org.protocols.approve", {"digest": os.urandom(32)})]
        return [("POST", "/api/v1/org/links", {"js": {"link": b64(make_link(
            chain=org.org_id, seq=org.seq + 1, prev=org.head, time=t, signer=actor.member_id,
            device=actor.device, type_=type_, body=b).wire)}}) for type_, b in forged]
    else:
        raise AssertionError(f"no forged request for {action}")
    type_ = "org.invite" if action.startswith("org.invite") else action
    links = [make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head, time=t, signer=actor.member_id,
                       device=actor.device, type_=type_, body=b) for b in bodies]
    return [("POST", "/api/v1/org/links", {"js": {"link": b64(link.wire)}}) for link in links]


async def forged_audit_requests(w: World, actor: Actor, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    """An audit-key statement for the actor's generation of AUDIT_TEAM, or a cosignature of the current
    checkpoint, signed by the actor's device."""
    t = int(w.server.clock())
    async with w.session(actor.name) as s:
        view = await s.chains.view()
        if action == "audit.key":
            team = view.team_by_name(AUDIT_TEAM)
            pub = audit_keypair((await s.keys.team_key(team, team.generation)).seed)[0]
            raw = audit_key_statement(view.org.org_id, team.team_id, team.generation, pub, t, actor.member_id,
                                      actor.device.device_id)
            return [("POST", "/api/v1/audit/key",
                     {"js": {"statement": b64(raw), "sig": b64(actor.device.sign(labels.SIG_AUDIT_KEY, raw))}})]
        cp = base64.b64decode((await s.session.api.get("/api/v1/audit/checkpoint"))["checkpoint"])
    sig = actor.device.sign(labels.SIG_COSIGN, cosign_statement(cp, actor.member_id, actor.device.device_id, t))
    return [("POST", "/api/v1/audit/cosign", {"js": {"checkpoint": b64(cp), "sig": b64(sig), "time": t}})]


def protocols_text(org: Any, serial: int) -> str:
    """The shipped protocols with the version raised past the one in force (a valid proposal)."""
    current = org.protocols.version if org.protocols else 1
    text = default_text()
    assert "\nversion = 1\n" in text
    return text.replace("\nversion = 1\n", f"\nversion = {current + 1}\n# authz {serial}\n", 1)


# -- team fixtures: one team per (org role, team role), put back in shape before each cell ---------


def team_name_for(org_role: str, team_role: str) -> str:
    return f"mx-{org_role}-{team_role}"


async def settle(w: World, team_name: str) -> None:
    """No pending work left in the team (alice, a key holder, rotates and shares): a later CLI run
    of any key holder then has nothing to do before its command."""
    async with w.session("alice") as a:
        team = (await a.chains.view(refresh=True)).team_by_name(team_name)
        view = await a.chains.view()
        if team.pending_share or team.rotation_reasons(int(time.time()), view.members, view.org):
            await maintenance.maintain(a)  # a rotation does not end a wait for a share: the share does


async def prepare(w: World, org_role: str, team_role: str, action: str) -> str:
    """The team of the cell, with: the actor in ``team_role``; alice admin (holder); t_y a
    writer; t_add not in it; for team.share, t_z waiting for the key (added by h_ncc, who
    holds none); no other pending work; a seed document."""
    name = team_name_for(org_role, team_role)
    actor = w.actor(org_role)
    want = team_role_of(team_role)
    async with w.session("alice") as a:
        if name not in w.teams:
            await admin.create_team(a, name, "program")
            seed = w.root / f"{name}-{SEED}"
            seed.write_bytes(f"seed of {name}".encode())
            await a.docs.put(name, seed, SEED)
            threads = await Threads.open(a, name)
            await threads.create(THREAD, 0)
            await threads.post(THREAD, f"seed of {name}")
            w.teams.add(name)

        async def team() -> TeamState:
            return (await a.chains.view(refresh=True)).team_by_name(name)

        t = await team()
        view = await a.chains.view()
        if t.pending_share or t.rotation_reasons(int(time.time()), view.members, view.org):
            await maintenance.maintain(a)  # rotates, then shares with whoever waits (a rotation does not box them)
            t = await team()
        for who, role in ((actor.name, want), ("t_y", "writer")):
            cur = t.role_of(w.id(who), int(time.time()))
            if cur == role:
                continue
            if role is None:
                await admin.remove_from_team(a, name, who)
            elif cur is None:
                await admin.add_member(a, name, who, role, None)
            else:
                await admin.set_team_role(a, name, who, role, None)
            t = await team()
        if action == "team.add" and w.id("t_add") in t.members:
            await admin.remove_from_team(a, name, "t_add")
            t = await team()
        z = w.id("t_z")
        if action == "team.share" and z in t.members and z not in t.pending_share:
            await admin.remove_from_team(a, name, "t_z")
            t = await team()
    if action == "team.share" and z not in t.members:
        async with w.session("h_ncc") as h:
            assert await admin.add_member(h, name, "t_z", "reader", None) is False  # waits for a key holder
    t = (await w.view()).team_by_name(name)
    assert t.role_of(actor.member_id, int(time.time())) == want
    assert (t.generation, actor.member_id) in t.boxes or want is None  # a team member holds the key
    assert (action == "team.share") == bool(t.pending_share), t.pending_share
    return name


def cli_args(action: str, team: str, tmp: Path, tag: str) -> tuple[str, ...]:
    src = tmp / f"{tag}.txt"
    src.write_bytes(f"written by {tag}".encode())
    fill = {"team": team, "out": str(tmp / f"{tag}.out"), "file": str(src), "doc": f"{tag}.txt", "tag": tag}
    return tuple(a.format(**fill) for a in TEAM_ACTIONS[action])


async def attempt_with_client(w: World, actor: Actor, action: str, team: str, tmp: Path, tag: str) -> Any:
    """The action through the real client library (its own checks included)."""
    async with w.session(actor.name) as s:
        if action == "thread.read":
            msgs = await (await Threads.open(s, team)).read(THREAD)
            return [m.text for m in msgs]
        if action == "thread.post":
            return await (await Threads.open(s, team)).post(THREAD, f"posted by {tag}")
        if action == "doc.read":
            out = tmp / f"{tag}.out"
            await s.docs.get(team, SEED, out)
            assert SEED in [d.opened.name for d in await s.docs.ls(team) if d.opened is not None]
            return out.read_bytes()
        if action == "doc.write":
            src = tmp / f"{tag}.txt"
            src.write_bytes(f"written by {tag}".encode())
            return await s.docs.put(team, src, f"{tag}.txt")
        if action == "team.add":
            return await admin.add_member(s, team, "t_add", "reader", None)
        if action == "team.role":
            return await admin.set_team_role(s, team, "t_y", "reader", None)
        if action == "team.share":
            done = await maintenance.maintain(s)  # what the client does on every run
            if not any("shared the key" in d for d in done):
                raise VaultError(f"the client did not share the key: {done} {s.session.warnings}")
            return done
        if action == "team.rotate":
            return await maintenance.rotate(s, (await s.chains.view()).team_by_name(team))
        if action == "team.remove":
            return await admin.remove_from_team(s, team, "t_y")
        if action == "team.leave":
            return await admin.leave(s, team)
    raise AssertionError(action)


async def check_effect(w: World, action: str, actor: Actor, team_name: str, before: dict[str, int],
                       team_before: TeamState, holds_key: bool, result: Any) -> None:
    """An allowed action really happened on the server, and alice's client accepts the chain."""
    after = counts(w.server)
    team = (await w.view()).team_by_name(team_name)  # replayed and verified by alice's client
    t = int(time.time())
    links = after["links"] - before["links"]
    if action == "thread.read":
        assert after == before and f"seed of {team_name}" in result
        return
    if action == "thread.post":
        assert after["messages"] == before["messages"] + 1 and links == 0
        return
    if action == "doc.read":
        assert after == before
        if result is not None:
            assert result == f"seed of {team_name}".encode()
        return
    if action == "doc.write":
        assert after["versions"] == before["versions"] + 1 and links == 0
        return
    assert links == 1, f"{action}: expected one new link, got {links}"
    assert team.seq == team_before.seq + 1 and team.head != team_before.head
    if action == "team.add":
        assert team.role_of(w.id("t_add"), t) == "reader"
        assert (w.id("t_add") in team.pending_share) != holds_key  # a non-holder's add waits for a share
        assert after["team_boxes"] == before["team_boxes"] + (1 if holds_key else 0)
    elif action == "team.role":
        assert team.role_of(w.id("t_y"), t) == "reader"
    elif action == "team.share":
        assert not team.pending_share and (team.generation, w.id("t_z")) in team.boxes
        assert after["team_boxes"] == before["team_boxes"] + 1
    elif action == "team.rotate":
        assert team.generation == team_before.generation + 1
    elif action == "team.remove":
        assert w.id("t_y") not in team.members
        # a holder rotates in the same link; a non-holder leaves the rotation to a holder
        assert team.generation == team_before.generation + (1 if holds_key else 0)
        assert team.pending_rotation != holds_key
    elif action == "team.leave":
        assert actor.member_id not in team.members and team.pending_rotation
    else:
        raise AssertionError(action)


def assert_clean_error(r: Result) -> None:
    assert r.code != 0 and "Traceback" not in r.err, r
    assert r.err.startswith("error: ") and len(r.err.strip().splitlines()) == 1, f"not one clear line: {r.err!r}"


# -- team cells -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("org_role", "team_role", "action"), TEAM_CELLS,
                         ids=[f"{r}-{tr}-{a}" for r, tr, a in TEAM_CELLS])
async def test_team_cell(world: World, org_role: str, team_role: str, action: str, tmp_path: Path) -> None:
    w = world
    expected = team_expected(org_role, team_role, action)
    actor = w.actor(org_role)
    holds_key = team_role != NONE
    via_cli = (org_role, team_role, action) in CLI_CELLS
    tag = f"{org_role}-{team_role}-{action.replace('.', '_')}-{next(w.serial)}"
    name = await prepare(w, org_role, team_role, action)
    try:
        team_before = (await w.view()).team_by_name(name)
        before = counts(w.server)
        result: Any = None
        if via_cli:
            args = cli_args(action, name, tmp_path, tag)
            if expected:
                done = actor.member.ok(*args)
                if action == "doc.read":
                    result = (tmp_path / f"{tag}.out").read_bytes()
                if action == "thread.read":
                    result = [m["text"] for m in json.loads(done.out)]
            else:
                r = actor.member.run(*args)
                if action != "team.share" or r.code != 0:  # `team show` itself may succeed
                    assert_clean_error(r)
        else:
            try:
                result = await attempt_with_client(w, actor, action, name, tmp_path, tag)
            except VaultError as e:
                assert not expected, f"{org_role} x {team_role} may {action} by the policy, but: {e}"
                assert e.message and "\n" not in e.message
            else:
                assert expected, f"{org_role} x {team_role} may not {action} by the policy, but the client did it"
        if expected:
            await check_effect(w, action, actor, name, before, team_before, holds_key, result)
        else:
            assert counts(w.server) == before, "a denied action changed the server's rows"
            requests = await forged_team_requests(w, actor, name, action, holds_key)
            await refused_raw(w, actor, requests, refusal_status(org_role, team_role, action),
                              f"{org_role} x {team_role} x {action}")
            EXERCISED[action].add(("server", False))
        EXERCISED[action].add(("cli" if via_cli else "api", expected))
        CELLS_DONE.add(f"team:{org_role}:{team_role}:{action}")
    finally:
        await settle(w, name)


# -- organization cells ------------------------------------------------------------------------------


@pytest.mark.parametrize(("org_role", "action"), ORG_CELLS, ids=[f"{r}-{a}" for r, a in ORG_CELLS])
async def test_org_cell(world: World, org_role: str, action: str) -> None:
    w = world
    actor = w.actor(org_role)
    roles = (await w.view()).org.roles_of(actor.member_id)
    assert roles == ACTOR_ROLES[org_role]
    expected = POLICY.org_allows(roles, action)
    pending = w.actors["p_shared"]
    if action == "org.admit" and expected:
        pending = await w.pending_member()  # an admission uses up its pending member
    team = f"oc-{org_role}-{action.rsplit('.', 1)[-1]}-{next(w.serial)}"
    target = w.actors["t_rm"]
    if action == "org.remove" and expected:  # a removal uses up its member
        async with w.session("alice") as a:
            target = await w.join(f"r_{next(w.serial)}", await admin.invite(a, "member", "authz: to remove"))
    proposal = w.root / f"protocols-{next(w.serial)}.toml"
    proposal.write_text(protocols_text((await w.view()).org, next(w.serial)), "utf-8")
    args = tuple(a.format(pending=pending.name, team=team, target=target.name, protocols=proposal)
                 for a in ORG_ACTIONS[action])
    before = counts(w.server)
    if expected:
        r = actor.member.ok(*args)
        after = counts(w.server)
        assert after["links"] == before["links"] + (action not in NO_LINK_ACTIONS)
        view = await w.view()
        if action in NO_LINK_ACTIONS:
            async with Http(w.server) as raw:
                _, res = await raw.call("GET", "/api/v1/audit/" + ("key" if action == "audit.key" else "checkpoint"),
                                        token=await login(raw, w.actors["alice"]))
            if action == "audit.key":
                claim = AuditKeyClaim.parse(base64.b64decode(res["key"]["statement"]))
                assert (claim.member, claim.team) == (actor.member_id, view.team_by_name(AUDIT_TEAM).team_id)
            else:
                assert actor.member_id in {c["member"] for c in res["witness"]["cosigs"]}
        elif action == "org.audit_team":  # proposed; a second NCC member (alice) confirms: the same action
            team_id = view.team_by_name(AUDIT_TEAM).team_id
            assert view.org.audit_team_proposals[team_id][0] == actor.member_id
            w.actors["alice"].member.ok("audit", "designate", AUDIT_TEAM)
            assert (await w.view()).org.audit_team == team_id
        elif action.startswith("org.invite"):
            code = r.out.strip()
            if action != "org.invite":  # the invitee joins: admitted at once only if the inviter may admit
                role = action.removeprefix("org.invite.")
                newcomer = await w.join(f"j_{next(w.serial)}", code)
                m = (await w.view()).org.members[newcomer.member_id]
                assert m.status == ("admitted" if POLICY.org_allows(roles, "org.admit") else "pending")
                assert m.roles == {role}
        elif action == "org.admit":
            assert view.org.members[pending.member_id].status == "admitted"
        elif action == "org.role":
            assert "staff" in view.org.roles_of(w.id("t_role"))
            actor.member.ok("role", "revoke", "t_role", "staff")  # revoking is the same action
            assert counts(w.server)["links"] == after["links"] + 1
            assert "staff" not in (await w.view()).org.roles_of(w.id("t_role"))
        elif action == "org.remove":
            assert view.org.members[target.member_id].status == "removed"
        elif action == "org.protocols":  # proposed; a second NCC member (alice) approves: the same action
            version = (view.org.protocols.version if view.org.protocols else 1) + 1
            [digest] = [d for d, c in view.org.proposals.items() if c.version == version]
            alice = w.actors["alice"]
            assert alice.member_id != actor.member_id
            alice.member.ok("audit", "protocols", "approve", digest.hex()[:16])
            assert (await w.view()).org.protocols.version == version
        else:
            t = view.team_by_name(team)
            assert t.kind == action.removeprefix("team.create.")
            assert t.role_of(actor.member_id, int(time.time())) == "admin"
            assert after["team_boxes"] == before["team_boxes"] + 1
    else:
        actor.member.fails(*args)
        if action == "org.role":
            assert "security" in (await w.view()).org.roles_of(w.id("t_role"))
            actor.member.fails("role", "revoke", "t_role", "security")
        if action == "org.remove":
            assert (await w.view()).org.members[target.member_id].status == "admitted"
        assert counts(w.server) == before, "a denied action changed the server's rows"
        reqs = await forged_org_requests(w, actor, action, pending.member_id)
        await refused_raw(w, actor, reqs, 403, f"{org_role} x {action}")
        EXERCISED[action].add(("server", False))
    EXERCISED[action].add(("cli", expected))
    CELLS_DONE.add(f"org:{org_role}:{action}")


# -- the compa cap (MAX_TEAM_ROLE) ------------------------------------------------------------------------


async def test_compa_may_only_be_a_reader(world: World) -> None:
    """Compas are readers only: they cannot be added or promoted above reader, and a team
    member later made compa acts as a reader (the matrix skips compa x admin/writer)."""
    w = world
    assert set(MAX_TEAM_ROLE) == {"compa"} and not POLICY.may_hold_team_role(ACTOR_ROLES["compa"], "writer")
    compa, alice = w.actor("compa"), w.actors["alice"]
    name = f"cap-{next(w.serial)}"
    async with w.session("alice") as a:
        await admin.create_team(a, name, "program")
        await admin.add_member(a, name, "t_cap", "writer", None)
    before = counts(w.server)
    for role in ("admin", "writer"):
        alice.member.fails("team", "add", name, compa.name, "--role", role, contains="may not hold team role")
    assert counts(w.server) == before
    # The server refuses it too (alice holds the key and boxes it properly).
    async with w.session("alice") as a:
        view = await a.chains.view(refresh=True)
        team = view.team_by_name(name)
        key = await a.keys.team_key(team, team.generation)
    share, box = one_box(key, view, compa.member_id)
    link = team_link(w, alice, team, "team.add",
                     {"member": compa.member_id, "role": "writer", "until": None, "key": share}, view.org.seq)
    await refused_raw(w, alice, [("POST", f"/api/v1/teams/{team.team_id}/links",
                                  {"js": {"link": b64(link.wire), "boxes": {compa.member_id: b64(box)}}})],
                      403, "compa added as writer")
    # As a reader: fine; promoted: refused by the client and the server.
    alice.member.ok("team", "add", name, compa.name, "--role", "reader")
    before = counts(w.server)
    alice.member.fails("team", "role", name, compa.name, "writer", contains="may not hold team role")
    assert counts(w.server) == before
    view = await w.view()
    team = view.team_by_name(name)
    link = team_link(w, alice, team, "team.role", {"member": compa.member_id, "role": "writer", "until": None},
                     view.org.seq)
    await refused_raw(w, alice, [("POST", f"/api/v1/teams/{team.team_id}/links", {"js": {"link": b64(link.wire)}})],
                      403, "compa promoted to writer")
    # A writer later made compa writes no more: the client refuses, and so does the server.
    alice.member.ok("role", "grant", "t_cap", "compa")
    cap = w.actors["t_cap"]
    assert POLICY.team_allows(ACTOR_ROLES["compa"], "writer", "doc.write") is False
    src = w.root / "cap.txt"
    src.write_bytes(b"cap")
    before = counts(w.server)
    async with w.session("t_cap") as s:
        with pytest.raises(VaultError, match="may not write"):
            await s.docs.put(name, src, "cap.txt")
    assert counts(w.server) == before
    await refused_raw(w, cap, await forged_team_requests(w, cap, name, "doc.write", True), 403,
                      "writer made compa writes")
    EXERCISED["max_team_role.compa"].add(("server", False))


# -- the key rule: rotating and sharing need the current key ---------------------------------------------


async def test_key_actions_need_the_key(world: World) -> None:
    """A member whose key share is still pending has a team role but no key: the policy lets
    the role rotate and share, but without the key the client cannot and the server refuses
    (in the matrix every member holds the key, so there the rule never decides)."""
    w = world
    name = f"keyless-{next(w.serial)}"
    async with w.session("alice") as a:
        await admin.create_team(a, name, "program")
    async with w.session("h_ncc") as h:  # h_ncc holds no key: both wait for a key holder
        assert await admin.add_member(h, name, "t_z", "reader", None) is False
        assert await admin.add_member(h, name, "t_add", "reader", None) is False
    z = w.actors["t_z"]
    team = (await w.view()).team_by_name(name)
    assert team.role_of(z.member_id, int(time.time())) == "reader" and not team.holds_key(z.member_id, int(time.time()))
    before = counts(w.server)
    async with w.session("t_z") as s:
        with pytest.raises(VaultError, match="no key"):
            await maintenance.rotate(s, (await s.chains.view()).team_by_name(name))
        assert await maintenance.maintain(s) == []  # shares nothing: it holds no key
    assert counts(w.server) == before
    reqs = await forged_team_requests(w, z, name, "team.rotate", holds_key=False)
    view = await w.view()
    team = view.team_by_name(name)
    # t_z "shares" a guessed key with the other waiting member, t_add.
    share, box = one_box(TeamKey.generate(team.team_id, team.generation), view, w.id("t_add"))
    link = team_link(w, z, team, "team.share", {"member": w.id("t_add"), "key": share}, view.org.seq)
    reqs.append(("POST", f"/api/v1/teams/{team.team_id}/links",
                 {"js": {"link": b64(link.wire), "boxes": {w.id("t_add"): b64(box)}}}))
    await refused_raw(w, z, reqs, 403, "key-less member rotates / shares", contains="holder")
    for action in KEY_ACTIONS:
        EXERCISED[action].add(("server", False))
    await settle(w, name)


# -- org roles with an end date ---------------------------------------------------------------------------


async def test_ended_ncc_term_is_no_ncc(world: World) -> None:
    """An NCC term that ended gives no NCC rights: no override in teams the member is not
    in, other teams invisible (404), and the member's client keeps working, also for a
    team they left (the server once judged the term without the clock there and answered
    404 for that team's chain, breaking every command)."""
    w = world
    n = next(w.serial)
    left, other = f"left-{n}", f"other-{n}"
    async with w.session("alice") as a:
        ex = await w.join(f"e_{n}", await admin.invite(a, "member", "authz: ncc term"))
        await admin.create_team(a, left, "program")
        await admin.create_team(a, other, "program")
        await admin.add_member(a, left, ex.name, "reader", None)
    async with w.session(ex.name) as s:
        await admin.leave(s, left)
    await settle(w, left)
    async with w.session("alice") as a:
        await a.chains.view(refresh=True)
        until = int(time.time()) + 3
        _, done = await admin.set_org_role(a, ex.name, "ncc", True, until)
    if not done:
        async with w.session("m_ncc") as n:
            await admin.set_org_role(n, ex.name, "ncc", True, until)
    assert "ncc" in (await w.view()).org.roles_of(ex.member_id, int(time.time()))
    time.sleep(max(0.0, until + 1 - time.time()))
    roles = (await w.view()).org.roles_of(ex.member_id, int(time.time()))
    assert roles == {"member"}
    for action in TEAM_OVERRIDES:
        assert not POLICY.team_allows(roles, None, action)
    teams = [t["name"] for t in ex.member.json("team", "ls")]  # the client still works
    assert left not in teams and other not in teams
    before = counts(w.server)
    assert_clean_error(ex.member.run("team", "add", other, "t_add", "--role", "reader"))
    assert counts(w.server) == before
    view = await w.view()
    team = view.team_by_name(other)
    link = team_link(w, ex, team, "team.add",
                     {"member": w.id("t_add"), "role": "reader", "until": None, "key": None}, view.org.seq)
    await refused_raw(w, ex, [("POST", f"/api/v1/teams/{team.team_id}/links", {"js": {"link": b64(link.wire)}}),
                              ("GET", f"/api/v1/chains/team/{team.team_id}", {})], 404, "NCC after its term")
    async with Http(w.server) as raw:  # the chain of the team it left: up to its leave link
        status, res = await raw.call("GET", f"/api/v1/chains/team/{view.team_by_name(left).team_id}",
                                     token=await login(raw, ex))
        assert status == 200 and len(res["links"]) == view.team_by_name(left).removed_at[ex.member_id], res


# -- meta: the matrix covers the whole policy --------------------------------------------------------


def test_every_policy_action_has_cells() -> None:
    """Adding an action (or org role, or kind) to the policy without a way to test it fails here."""
    team_actions = set(TEAM_RULES) | set(TEAM_OVERRIDES)
    untested = team_actions - set(TEAM_ACTIONS)
    assert not untested, f"team actions without a matrix test: {untested}"
    untested = set(ORG_RULES) - set(ORG_ACTIONS)
    assert not untested, f"org actions without a matrix test: {untested}"
    assert set(ACTOR_ROLES) == set(ORG_ROLES), "every org role needs a matrix actor"
    granted = set().union(*ORG_RULES.values(), *TEAM_OVERRIDES.values(), MAX_TEAM_ROLE)
    assert granted <= set(ORG_ROLES), f"policy names org roles the matrix does not know: {granted - set(ORG_ROLES)}"
    assert set().union(*TEAM_RULES.values(), *MAX_TEAM_ROLE.values()) <= set(TEAM_ROLES)
    assert set(MAX_TEAM_ROLE) <= {"compa"}, "a new team-role cap needs a test like test_compa_may_only_be_a_reader"
    assert {a for _, a in ORG_CELLS} == set(ORG_ACTIONS) and {r for r, _ in ORG_CELLS} == set(ORG_ROLES)
    assert {a for *_, a in TEAM_CELLS} == set(TEAM_ACTIONS)
    assert {(r, tr) for r, tr, _ in TEAM_CELLS} | set(IMPOSSIBLE) == set(itertools.product(ORG_ROLES,
                                                                                           TEAM_ROLE_CHOICES))
    for action in TEAM_ACTIONS:  # one allowed and one denied cell through the real CLI (when both exist)
        outcomes = {team_expected(r, tr, action) for r, tr in COMBOS}
        assert {team_expected(r, tr, a) for r, tr, a in CLI_CELLS if a == action} == outcomes, action


def test_every_cell_was_exercised(request: pytest.FixtureRequest) -> None:
    """After a full run of this file: every cell ran, and every action had an allowed and a
    denied cell through the CLI and a denial checked at the server without the client."""
    names = [getattr(i, "originalname", i.name) for i in request.session.items]
    if (names.count("test_team_cell") != len(TEAM_CELLS) or names.count("test_org_cell") != len(ORG_CELLS)
            or "test_compa_may_only_be_a_reader" not in names):
        pytest.skip("only part of the matrix was selected")
    assert len(CELLS_DONE) == len(TEAM_CELLS) + len(ORG_CELLS), "some matrix cells did not finish"
    for action in TEAM_ACTIONS:
        outcomes = {team_expected(r, tr, action) for r, tr in COMBOS}
        want = {("cli", o) for o in outcomes} | ({("server", False)} if False in outcomes else set())
        assert want <= EXERCISED[action], f"{action}: exercised {EXERCISED[action]}"
    for action in ORG_ACTIONS:
        outcomes = {POLICY.org_allows(ACTOR_ROLES[r], action) for r in ORG_ROLES}
        want = {("cli", o) for o in outcomes} | ({("server", False)} if False in outcomes else set())
        assert want <= EXERCISED[action], f"{action}: exercised {EXERCISED[action]}"
    for org_role in MAX_TEAM_ROLE:
        assert EXERCISED[f"max_team_role.{org_role}"], org_role
    policy_actions = set(ORG_RULES) | set(TEAM_RULES) | set(TEAM_OVERRIDES)
    assert policy_actions <= set(EXERCISED), f"never exercised: {policy_actions - set(EXERCISED)}"
