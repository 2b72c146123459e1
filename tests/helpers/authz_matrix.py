"""The organization of the authorization matrix (``tests/test_authz_matrix.py``): the cells, drawn from the
policy table, and the world built once for the module (actors per organization role, helper members).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client import admin, maintenance, records
from client.api import Api
from client.client import Client, join
from client.home import Home, Secrets
from client.threads.team import Threads
from client.uploadbatch import batch_body
from client.view import View
from security.authority import POLICY
from security.policy import (
    ORG_ROLES,
    TEAM_KINDS,
    TEAM_ROLES,
)
from tests.conftest import PASSPHRASE, Member, Result, ServerThread
from tests.helpers.authz_audit import AUDIT_TEAM, forged_audit_requests, protocols_text
from tests.helpers.db import counts as db_counts
from tests.helpers.http import Http, b64, login
from vault.chains import HISTORY_BLOB, TeamState, team_id_for
from vault.envelope import DocWriter
from vault.errors import VaultError
from vault.keys import DeviceKeys
from vault.links import Link, invite_public, make_link
from vault.messages import Body, make_message
from vault.teamkeys import TeamKey, box_hash, seal_history

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

NO_LINK_ACTIONS = frozenset({"audit.key", "audit.cosign"})  # signed statements, not chain links

# How each action is attempted (a static table: a policy action missing here fails the meta-test).
ORG_ACTIONS: dict[str, tuple[str, ...]] = {
    "org.invite": ("invite",),
    "org.invite.member": ("invite", "--role", "member"),
    "org.invite.compa": ("invite", "--role", "compa"),
    "org.invite.revoke.member": ("invite", "revoke", "{invite}"),  # an open invite by t_add (a member)
    "org.invite.revoke.compa": ("invite", "revoke", "{invite}"),
    "org.admit": ("admit", "{pending}"),
    "org.role": ("role", "grant", "t_role", "staff"),
    "org.remove": ("remove", "{target}", "--reason", "authz matrix"),
    "org.protocols": ("audit", "protocols", "propose", "{protocols}"),
    "org.audit_team": ("audit", "designate", AUDIT_TEAM),
    # a place of its own per cell ({team} is unique): alice and m_ncc are both NCC, so it is only proposed
    "org.server": ("server", "announce-move", "https://{team}.example.org", "--pin", "webpki"),
    "audit.key": ("audit", "key"),  # every actor holds the key of the security team AUDIT_TEAM
    "audit.cosign": ("audit", "witness"),
    "org.vouch": ("vouch", "t_add"),
    "org.verify": ("verify", "t_add", "--confirm"),
    "org.approve": ("audit", "approve", "1"),  # the founding link: alice's, about nobody
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
    "team.review": ("team", "review", "{team}"),
    "team.approve": ("team", "approve", "{team}", "1"),  # the team's creation: alice's link, about nobody
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


async def forged_team_requests(w: World, actor: Actor, team_name: str, action: str, holds_key: bool,
                               view: View | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """The request(s) a client without checks would send for ``action``: well formed, signed
    by ``actor``'s device, boxed with the real key when the actor holds it. ``view``: alice's verified view
    of the server's current state, when the caller has one (the cell's, unchanged since: its counts are)."""
    if view is None or action == "doc.read" or action.startswith("thread."):
        async with w.session("alice") as a:
            view = await a.chains.view(refresh=True)
            team = view.team_by_name(team_name)
            if action == "doc.read":
                doc, records = await a.docs.find_doc(team, SEED)
            if action.startswith("thread."):
                checker = (await (await Threads.open(a, team_name)).resolve(THREAD)).checker
                thread, rec = checker.thread, checker.rec
    team = view.team_by_name(team_name)
    key: TeamKey | None = None
    if holds_key:
        async with w.session(actor.name) as s:
            key = await s.keys.team_key((await s.chains.view()).team_by_name(team_name), team.generation)
    tid, org_seq = team.team_id, view.org.seq
    if action == "doc.read":
        return [("GET", f"/api/v1/teams/{tid}/docs", {}), ("GET", f"/api/v1/teams/{tid}/docs/{doc}", {}),
                ("GET", f"/api/v1/teams/{tid}/versions/{records[-1].version_id}/body", {}),
                ("POST", f"/api/v1/teams/{tid}/bodies", {"js": {"vids": [records[-1].version_id]}})]  # batch download
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
        return [("POST", f"/api/v1/teams/{tid}/docs/{k.doc_id(name)}", {"data": upload}),
                ("POST", f"/api/v1/teams/{tid}/versions", {"data": batch_body([upload])})]  # the batch upload
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
    elif action == "team.review":
        body = {"roster": team.roster(view.org)}
    elif action == "team.approve":
        body = {"link": next(h for h, signed in team.signed.items() if signed.seq == 1)}
    else:
        raise AssertionError(f"no forged request for {action}")
    link = team_link(w, actor, team, action, body, org_seq)
    return [("POST", f"/api/v1/teams/{tid}/links",
             {"js": {"link": b64(link.wire), "boxes": {m: b64(b) for m, b in boxes.items()}}})]


async def forged_org_requests(w: World, actor: Actor, action: str, pending: str, invite: bytes | None = None,
                              view: View | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """As ``forged_team_requests``: ``view`` is alice's current view, when the caller has one."""
    if view is None:
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
    if action.startswith("org.invite.revoke."):
        bodies = [{"invite": invite}]
    elif action.startswith("org.invite"):
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
    elif action == "org.server":
        bodies = [{"url": f"https://forged-{next(w.serial)}.example.org", "pin_kind": "webpki", "pin": b""}]
    elif action in ("org.vouch", "org.verify"):
        bodies = [{"member": w.id("t_add"), "fingerprint": os.urandom(32)}]
    elif action == "org.approve":
        bodies = [{"link": org.root}]
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
    type_ = ("org.invite.revoke" if action.startswith("org.invite.revoke.")
             else "org.invite" if action.startswith("org.invite") else action)
    links = [make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head, time=t, signer=actor.member_id,
                       device=actor.device, type_=type_, body=b) for b in bodies]
    return [("POST", "/api/v1/org/links", {"js": {"link": b64(link.wire)}}) for link in links]


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


async def prepare(w: World, org_role: str, team_role: str, action: str) -> tuple[str, View]:
    """The team of the cell, with: the actor in ``team_role``; alice admin (holder); t_y a
    writer; t_add not in it; for team.share, t_z waiting for the key (added by h_ncc, who
    holds none); no other pending work; a seed document. Returns the team's name and alice's
    verified view of the server once the team is in shape (refreshed after the last change)."""
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
        view = await a.chains.view()  # the last refresh (every change above is followed by one)
    if action == "team.share" and z not in t.members:
        async with w.session("h_ncc") as h:
            assert await admin.add_member(h, name, "t_z", "reader", None) is False  # waits for a key holder
        view = await w.view()
    t = view.team_by_name(name)
    assert t.role_of(actor.member_id, int(time.time())) == want
    assert (t.generation, actor.member_id) in t.boxes or want is None  # a team member holds the key
    assert (action == "team.share") == bool(t.pending_share), t.pending_share
    assert not t.rotation_reasons(int(time.time()), view.members, view.org)  # no other pending work
    return name, view


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
        if action == "team.review":
            return await records.review(s, team)
        if action == "team.approve":
            return await records.approve_team_link(s, team, "1")
    raise AssertionError(action)


async def check_effect(w: World, action: str, actor: Actor, team_name: str, before: dict[str, int],
                       team_before: TeamState, holds_key: bool, result: Any) -> None:
    """An allowed action really happened on the server, and alice's client accepts the chain (a chain
    changed by the action: one that did not change, as its count of links shows, was verified before)."""
    after = counts(w.server)
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
    team = (await w.view()).team_by_name(team_name)  # replayed and verified by alice's client
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
    elif action == "team.review":
        assert team.reviews[-1][1:] == (actor.member_id, team.time) and team.generation == team_before.generation
    elif action == "team.approve":
        [(first, _)] = [(h, s) for h, s in team.signed.items() if s.seq == 1]
        assert team.approvals[first][-1][1:] == (actor.member_id, team.time)
    else:
        raise AssertionError(action)


def assert_clean_error(r: Result) -> None:
    assert r.code != 0 and "Traceback" not in r.err, r
    assert len(r.err.strip().splitlines()) == 1, f"not one clear line: {r.err!r}"
    if r.err.startswith("{"):  # a command run with --json: one JSON object (docs/cli.md)
        error = json.loads(r.err)
        assert set(error) == {"error", "message", "exit_code"} and error["exit_code"] == r.code, r.err
    else:
        assert r.err.startswith("error: "), f"not one clear line: {r.err!r}"
