"""Issue 13: the model-based adversarial test of authority.

A Hypothesis state machine grows an organization through the REAL chain code (signed member,
organization and team links, replayed with ``replay_*`` and ``POLICY``) while a small reference
model (``tests.helpers.authority_model``, written from the rule in SECURITY.md "Authority", not
from the judge) records who is entitled to what. After every step it checks that

(a) the newest key generation of every team is boxed to exactly the members the model entitles
    (or, when the model says a rotation is pending, ``rotation_reasons`` says so too);
(b) an adversarial server cannot make a client accept an act the model refuses, nor refuse one it
    allows: documents and thread posts judged as ``Act``s, and real team links (add, role -> admin,
    remove, rotate) signed by anyone, naming any past organization state, appended and replayed; a
    Security Team act (cosigning the log, accepting a restored server: a real signed acceptance judged
    as clients judge it) by anyone, with any device, at any time; closing acts by anyone, duplicates too;
(c) nobody opens a key generation made after they lost their place: every box ever sealed, every
    PUK the member ever held, every history blob followed down.

``MVAULT_LONG=<examples>`` (``make test-long``) runs it with many more examples.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from security.authority import POLICY
from tests.helpers.authority_closing import ClosingSteps
from tests.helpers.authority_exports import ExportSteps
from tests.helpers.authority_incidents import IncidentSteps
from tests.helpers.authority_machine import LONG, MAX_PEOPLE, MAX_TEAMS, STEPS, TERMS, idx, statement_judged
from tests.helpers.authority_machine import stored_as_modelled as server_judges
from tests.helpers.authority_model import MInvite, MTeam, OrgEntry
from tests.helpers.chain_world import Person, Team
from tests.helpers.keyholder import openable
from vault.acts import ALLOWANCE, Act, doc_act
from vault.chains import CLOSING_TYPES, MAX_OPEN_INVITES, clone, org_id_for, roster_digest, team_id_for
from vault.crypto import primitives as p
from vault.envelope import CONFLICT, DELETE, MOVE, PUT, RESTORE
from vault.errors import ChainError, InviteNotOpen, PolicyDenied
from vault.keys import DeviceKeys, PukKeys
from vault.links import invite_public, make_link
from vault.teamkeys import TeamKey


class AuthorityMachine(ExportSteps, IncidentSteps, ClosingSteps):  # more steps: tests/helpers/authority_*.py
    # -- organization steps --

    @initialize(seed=st.integers(0, 2**32 - 1), compa=st.booleans(), term=st.sampled_from(TERMS),
                outsider=st.sampled_from([None, "ncc", "staff", "security"]), founder_term=st.sampled_from(TERMS))
    def start(self, seed: int, compa: bool, term: int | None, outsider: str | None,
              founder_term: int | None) -> None:
        """Every run starts from a small organization with one team: founder (NCC, admin; its NCC term, when
        it has one, set by ``org.create``'s ``ncc_until``), three members in it, and a fourth outside it
        (NCC: it signs team changes without holding the key; Security Team: a closing can reach its quorum)."""
        self.rnd = random.Random(seed)
        if founder_term is not None:
            self.found_with_term(founder_term)
        for i in range(4):
            self.invite_and_join(0, compa and i == 2)
        if outsider is not None:
            self.org_role(0, 4, outsider, None, True)
        self.create_team(0, [(1, "writer", term), (2, "reader", None), (3, "writer", None)])

    def found_with_term(self, term: int) -> None:
        """The organization founded anew, its founder's NCC term ending ``term`` seconds after founding."""
        create, f = self.w.org_links[0], self.w.founder
        until = create.time + term
        link = make_link(chain=None, seq=1, prev=None, time=create.time, signer=f.id, device=f.device,
                         type_="org.create", body={**create.body.raw, "ncc_until": until},
                         invite_secret=self.w.founder_secret)
        self.w.org_links[0], self.w.org_id = link, org_id_for(link.hash)
        self.m.org[0][f.id].roles["ncc"] = until
        self.sync("found_with_term")

    @precondition(lambda self: len(self.w.people) < MAX_PEOPLE)
    @rule(inviter=idx, compa=st.booleans())
    def invite_and_join(self, inviter: int, compa: bool) -> None:
        role = "compa" if compa else "member"
        by = self.pick([q for q in self.people() if f"org.invite.{role}" in {
            a for a in ("org.invite.member", "org.invite.compa") if self.m.entitled(
                q.id, self.dev(q).device_id, self.now + 10, a)}], inviter)
        if by is None or len(self.w.people) >= MAX_PEOPLE:
            return
        secret = p.random_bytes(32)
        self.w.org_link(by, "org.invite", {"role": role, "invite": invite_public(secret),
                                           "expires": self.now + 3600, "note": "x"}, by=self.dev(by))
        self.m.org_link(self.now)
        self.m.invites[invite_public(secret)] = MInvite(by.id, role, self.now + 3600, used=True)
        person = self.w.person(f"p{len(self.w.people)}")
        self._person_recorded(person)
        self.w.join(person, secret)
        status = "admitted" if "ncc" in self.m.org_roles(by.id, self.m.org_seq, self.now) else "pending"
        self.m.org_link(self.now, {person.id: OrgEntry(status, {role: None})})
        self.sync("invite_and_join")

    @rule(signer=idx, whom=idx)
    def admit(self, signer: int, whom: int) -> None:
        by = self.ncc(signer)
        who = self.pick([q for q in self.people() if (e := self.m.entry(q.id)) and e.status == "pending"], whom)
        if by is None or who is None:
            return
        self.w.org_link(by, "org.admit", {"member": who.id}, by=self.dev(by))
        e = self.m.entry(who.id)
        assert e is not None
        self.m.org_link(self.now, {who.id: OrgEntry("admitted", dict(e.roles))})
        self.sync("admit")

    @rule(signer=idx, whom=idx, role=st.sampled_from(["ncc", "staff", "security", "compa"]),
          term=st.sampled_from(TERMS), grant=st.booleans())
    def org_role(self, signer: int, whom: int, role: str, term: int | None, grant: bool) -> None:
        who = self.pick([q for q in self.people() if self.m.admitted(q.id)], whom)
        if who is None:
            return
        by = self.ncc(signer, exclude=who.id if grant and role in ("ncc", "security") else None)
        if by is None:
            return
        t = self.now + 10
        held = role in self.roles(who, t)
        others_ncc = [q for q in self.people() if q.id != who.id and "ncc" in self.roles(q, t)]
        until = None if role == "compa" or not grant or term is None else t + term
        if held == grant or (not grant and role == "ncc" and not others_ncc):
            return
        stepping_down = not grant and by.id == who.id  # one signature: it only gives power up
        second = self.second(by, who, t) if role in ("ncc", "security") and not stepping_down else None
        if second is False:
            return
        if second is not None:  # two people: by proposes, another NCC member (not the subject) puts it in force
            self.w.role(by, who, role, grant, until, by=self.dev(by))
            self.m.org_link(self.now)
            by = second
        self.w.role(by, who, role, grant, until, by=self.dev(by))
        e = self.m.entry(who.id)
        assert e is not None
        roles = dict(e.roles)
        if grant:
            roles[role] = until
            if role == "compa":
                roles.pop("member", None)
        else:
            del roles[role]
            if role == "compa":
                roles["member"] = None
        self.m.org_link(self.now, {who.id: OrgEntry("admitted", roles)})
        self.sync("org_role")

    @rule(signer=idx, whom=idx)
    def org_remove(self, signer: int, whom: int) -> None:
        t = self.now + 10
        who = self.pick([q for q in self.people() if (e := self.m.entry(q.id)) and e.status != "removed"], whom)
        if who is None:
            return
        by = self.ncc(signer, exclude=who.id)
        if by is None or ("ncc" in self.roles(who, t) and not any(
                "ncc" in self.roles(q, t) for q in self.people() if q.id != who.id)):
            return
        second = self.second(by, who, t) if self.roles(who, t) & {"ncc", "security"} else None
        if second is False:
            return
        if second is not None:
            self.w.org_link(by, "org.remove", {"member": who.id, "reason": "expelled"}, by=self.dev(by))
            self.m.org_link(self.now)
            by = second
        self.w.org_link(by, "org.remove", {"member": who.id, "reason": "expelled"}, by=self.dev(by))
        self.m.org_link(self.now, {who.id: OrgEntry("removed", {})})
        self.m.removed_from_org(who.id, self.now)
        self.sync("org_remove")

    @rule(inviter=idx, revoker=idx, pick=idx, compa=st.booleans(), fresh=st.booleans(), author=st.booleans(),
          lifetime=st.sampled_from([60, 3600]))
    def invite_revoke(self, inviter: int, revoker: int, pick: int, compa: bool, fresh: bool, author: bool,
                      lifetime: int) -> None:
        """Anyone, with any of their devices (revoked ones too), tries to withdraw some invite (open, used, expired
        or revoked): the real chain accepts exactly what the model allows, and a withdrawn invite admits nobody."""
        role = "compa" if compa else "member"
        by = self.pick([q for q in self.people() if self.m.entitled(q.id, self.dev(q).device_id, self.now + 10,
                                                                     f"org.invite.{role}")], inviter)
        if (fresh or not self.m.invites) and by is not None and sum(
                1 for i in self.m.invites.values() if i.by == by.id and i.open(self.now + 10)) < MAX_OPEN_INVITES:
            secret = p.random_bytes(32)
            self.w.org_link(by, "org.invite", {"role": role, "invite": invite_public(secret),
                                               "expires": self.now + 10 + lifetime, "note": "x"}, by=self.dev(by))
            self.m.org_link(self.now)
            self.m.invites[invite_public(secret)] = MInvite(by.id, role, self.now + lifetime)
            self.sync("invite")
        if not self.m.invites:
            return
        pk = list(self.m.invites)[pick % len(self.m.invites)]
        q = self.w.people[self.m.invites[pk].by] if author else self.pick(self.people(), revoker)
        d = self.rnd.choice(self.devices_of(q))
        link = self.w.org_link(q, "org.invite.revoke", {"invite": pk}, by=d, append=False)
        if not self.org_link_judged(link, self.m.may_revoke(q.id, d.device_id, link.time, pk), "invite revoke"):
            return
        self.m.org_link(self.now)
        self.m.invites[pk].revoked = True
        self.sync("invite_revoke")
        joiner = self.w.org_link(q, "org.join", {"invite": pk, "member_head": q.root}, by=self.dev(q),
                                 append=False)  # the invite is checked before anything about the joiner
        with pytest.raises(InviteNotOpen, match="revoked"):
            clone(self.org).apply(joiner, self.members, POLICY)

    @rule(step=st.sampled_from(STEPS))
    def advance(self, step: int) -> None:
        self.w.time += step

    @rule(who=idx, revoke_main=st.booleans())
    def device_add_then_revoke(self, who: int, revoke_main: bool) -> None:
        q = self.pick(self.people(), who)
        new = self.w.add_device(q, f"d{len(self.m.devices[q.id])}", by=self.dev(q))
        self.m.devices[q.id][new.device_id] = (self.now, None)
        self.m.adds[q.id][new.device_id] = (self.dev(q).device_id, q.chain[-1].seq)
        target = self.dev(q) if revoke_main else new
        signer = new if revoke_main else self.dev(q)
        self.w.revoke_device(q, target, by=signer)
        self.m.revokers[q.id][target.device_id] = signer.device_id
        self.m.devices[q.id][target.device_id] = (self.m.devices[q.id][target.device_id][0], self.now)
        self.m.puks[q.id].append(self.now)
        self.puks[q.id].append(q.puk)
        self.revoked[q.id].append(target)
        self.main[q.id] = signer
        self.sync("device_add_then_revoke")

    # -- team steps --

    @precondition(lambda self: len(self.teams) < MAX_TEAMS)
    @rule(signer=idx, picks=st.lists(st.tuples(idx, st.sampled_from(["writer", "reader", "admin"]),
                                               st.sampled_from(TERMS)), max_size=3))
    def create_team(self, signer: int, picks: list[tuple[int, str, int | None]]) -> None:
        by = self.ncc(signer)  # with a device not cut off
        if by is None or "compa" in self.roles(by) or len(self.teams) >= MAX_TEAMS:
            return
        t = self.now + 10
        members: dict[str, tuple[str, int | None]] = {by.id: ("admin", None)}
        admitted = [q for q in self.people() if self.m.admitted(q.id)]
        for i, role, term in picks:
            q = admitted[i % len(admitted)]
            if q.id not in members and self.m.may_hold(self.roles(q, t), role):
                members[q.id] = (role, None if term is None else t + term)
        nonce = p.random_bytes(16)
        ti = len(self.teams)
        team = Team(team_id_for(self.w.org_id, nonce), TeamKey.generate(team_id_for(self.w.org_id, nonce), 1), [], {})
        self.teams.append(team)
        self.keys.append({1: team.key})
        self.gen_times.append({})
        self.sealed.append([])
        mt = MTeam(ti, members=members)
        self.m.teams.append(mt)
        boxes = [self.seal(ti, 1, q, self.puk_at(q, t)) for q in sorted(members) if not self.m.compromised(q, t)]
        body = {"org": self.w.org_id, "org_seq": self.m.org_seq, "kind": "circle", "name": f"team{ti}",
                "history": True, "nonce": nonce,
                "members": [{"member": q, "role": r, "until": u} for q, (r, u) in members.items()],
                "key": {"gen": 1, "canary": team.key.canary, "boxes": boxes}}
        team.links.append(make_link(chain=None, seq=1, prev=None, time=self.w.tick(), signer=by.id,
                                    device=self.dev(by), type_="team.create", body=body))
        self.new_gen_recorded(mt, 1, {q for q in members if not self.m.compromised(q, t)}, self.now)
        self.m.team_link(mt, self.now, self.m.org_seq)
        self.sync("create_team")

    def team_ctx(self, team: int) -> tuple[int, MTeam]:
        return team % len(self.teams), self.m.teams[team % len(self.teams)]

    def dropped(self, mt: MTeam) -> None:
        """An honest link names the org head: whoever left the organization leaves the team with it."""
        mt.members = mt.view(self.m, self.m.org_seq)
        mt.awaiting &= set(mt.members)

    def may(self, ti: int, q: Person, action: str) -> bool:
        return self.m.entitled(q.id, self.dev(q).device_id, self.now + 10, action, org_seq=self.m.org_seq,
                               team=self.m.teams[ti], position=(self.teams[ti].team_id, self.m.teams[ti].seq + 1))

    @precondition(lambda self: bool(self.teams))
    @rule(team=idx, signer=idx, whom=idx, role=st.sampled_from(["writer", "reader", "admin"]),
          term=st.sampled_from(TERMS))
    def team_add(self, team: int, signer: int, whom: int, role: str, term: int | None) -> None:
        ti, mt = self.team_ctx(team)
        t = self.now + 10
        by = self.pick([q for q in self.people() if self.may(ti, q, "team.add")], signer)
        who = self.pick([q for q in self.people() if self.m.admitted(q.id) and self.m.may_hold(self.roles(q), role)
                         and not (q.id in mt.members and self.m.team_members(mt, self.m.org_seq, t) >= {q.id})],
                        whom)
        if by is None or who is None:
            return
        until = None if term is None else t + term
        after = {**mt.view(self.m, self.m.org_seq), who.id: (role, until)}
        holder = self.m.holds_key(mt, by.id, t, after)  # judged after the add (a member may re-add itself)
        if holder and not self.may_box(mt, who.id, t, self.m.org_seq, after):
            return  # an honest holder rotates first (and boxes no key a cut device holds)
        key = {"gen": mt.gen, "boxes": [self.seal(ti, mt.gen, who.id, who.puk)]} if holder else None
        link = self.team_link(ti, by, "team.add", {"member": who.id, "role": role, "until": until, "key": key})
        self.dropped(mt)
        self.honest_team(ti, link, "team.add")
        mt.members[who.id] = (role, until)
        if holder:
            mt.boxed[mt.gen][who.id] = who.puk.generation
            mt.awaiting.discard(who.id)
        elif who.id not in mt.boxed[mt.gen]:  # a re-added member may hold the current key already
            mt.awaiting.add(who.id)
        self.m.team_link(mt, self.now, self.m.org_seq)
        self.sync("team_add")

    @precondition(lambda self: bool(self.teams))
    @rule(team=idx, signer=idx, whom=idx)
    def team_share(self, team: int, signer: int, whom: int) -> None:
        ti, mt = self.team_ctx(team)
        t = self.now + 10
        by = self.pick([q for q in self.people() if self.m.holds_key(mt, q.id, t) and self.may(ti, q, "team.share")],
                       signer)
        who = self.pick(self.order(mt.awaiting & self.m.team_members(mt, self.m.org_seq, t)), whom)
        if by is None or who is None or self.m.rotation_pending(mt, t) or self.m.compromised(who, t):
            return
        puk = self.puks[who][-1]
        link = self.team_link(ti, by, "team.share",
                              {"member": who, "key": {"gen": mt.gen, "boxes": [self.seal(ti, mt.gen, who, puk)]}})
        self.dropped(mt)
        self.honest_team(ti, link, "team.share")
        mt.boxed[mt.gen][who] = puk.generation
        mt.awaiting.discard(who)
        self.m.team_link(mt, self.now, self.m.org_seq)
        self.sync("team_share")

    @precondition(lambda self: bool(self.teams))
    @rule(team=idx, signer=idx, whom=idx)
    def team_remove(self, team: int, signer: int, whom: int) -> None:
        ti, mt = self.team_ctx(team)
        t = self.now + 10
        by = self.pick([q for q in self.people() if self.may(ti, q, "team.remove")], signer)
        who = self.pick(self.order(mt.view(self.m, self.m.org_seq)), whom)
        cur = mt.view(self.m, self.m.org_seq)
        if by is None or who is None or self.m.admins(cur, t) == {who}:
            return
        rest = {q: r for q, r in cur.items() if q != who}
        recipients = self.m.key_recipients(mt, self.m.org_seq, t, rest)
        rotate = self.m.holds_key(mt, by.id, t) and by.id != who
        key, gen = self.generation(ti, recipients, t) if rotate else (None, 0)
        link = self.team_link(ti, by, "team.remove", {"member": who, "key": key})
        self.dropped(mt)
        self.honest_team(ti, link, "team.remove")
        mt.members = rest
        mt.awaiting.discard(who)
        if rotate:
            self.new_gen_recorded(mt, gen, recipients, self.now)
        else:
            mt.unrotated = True
        self.m.team_link(mt, self.now, self.m.org_seq)
        self.sync("team_remove")

    @precondition(lambda self: bool(self.teams))
    @rule(team=idx, signer=idx, whom=idx, role=st.sampled_from(["writer", "reader", "admin"]),
          term=st.sampled_from(TERMS))
    def team_role(self, team: int, signer: int, whom: int, role: str, term: int | None) -> None:
        ti, mt = self.team_ctx(team)
        t = self.now + 10
        until = None if term is None else t + term
        by = self.pick([q for q in self.people() if self.may(ti, q, "team.role")], signer)
        who = self.pick([q for q in self.order(self.m.team_members(mt, self.m.org_seq, t))
                         if mt.members[q] != (role, until) and self.m.may_hold(self.m.org_roles(q, self.m.org_seq, t),
                                                                               role)], whom)
        last = self.m.admins(mt.view(self.m, self.m.org_seq), t) == {who}
        if by is None or who is None or (role != "admin" and last):
            return
        link = self.team_link(ti, by, "team.role", {"member": who, "role": role, "until": until})
        self.dropped(mt)
        self.honest_team(ti, link, "team.role")
        mt.members[who] = (role, until)
        self.m.team_link(mt, self.now, self.m.org_seq)
        self.sync("team_role")

    @precondition(lambda self: bool(self.teams))
    @rule(team=idx, who=idx)
    def team_leave(self, team: int, who: int) -> None:
        ti, mt = self.team_ctx(team)
        t = self.now + 10
        cur = mt.view(self.m, self.m.org_seq)
        q = self.pick([q for q in self.people() if q.id in cur and self.may(ti, q, "team.leave")], who)
        if q is None or self.m.admins(cur, t) == {q.id}:
            return
        link = self.team_link(ti, q, "team.leave", {})
        self.dropped(mt)
        self.honest_team(ti, link, "team.leave")
        del mt.members[q.id]
        mt.awaiting.discard(q.id)
        mt.unrotated = True
        self.m.team_link(mt, self.now, self.m.org_seq)
        self.sync("team_leave")

    @precondition(lambda self: bool(self.teams))
    @rule(team=idx, holder=idx)
    def rotate(self, team: int, holder: int) -> None:
        ti, mt = self.team_ctx(team)
        t = self.now + 10
        by = self.pick([q for q in self.people() if self.m.holds_key(mt, q.id, t) and self.may(ti, q, "team.rotate")],
                       holder)
        if by is None:
            return
        recipients = self.m.key_recipients(mt, self.m.org_seq, t)
        key, gen = self.generation(ti, recipients, t)
        link = self.team_link(ti, by, "team.rotate", {"key": key})
        self.dropped(mt)
        self.honest_team(ti, link, "team.rotate")
        self.new_gen_recorded(mt, gen, recipients, self.now)
        self.m.team_link(mt, self.now, self.m.org_seq)
        self.sync("rotate")

    # -- invariants --

    def devices_of(self, q: Person) -> list[DeviceKeys]:
        return [*self.w.devices[q.id].values(), *self.revoked[q.id]]

    @invariant()
    def a_newest_generation_boxed_to_exactly_the_entitled(self) -> None:
        for mt, state in zip(self.m.teams, self.states, strict=True):
            assert state.generation == mt.gen
            boxed = {q for (g, q) in state.boxes if g == state.generation}
            assert boxed == set(mt.boxed[mt.gen])
            reasons = state.rotation_reasons(self.now, self.members, self.org)
            pending = self.m.rotation_pending(mt, self.now)
            assert bool(reasons) == pending, f"model says rotation pending={pending}, code says {reasons}"
            if not pending:
                entitled = self.m.team_members(mt, self.m.org_seq, self.now)
                assert boxed <= entitled and entitled - boxed <= self.waiting(mt), (boxed, entitled, mt.awaiting)
                assert not boxed & mt.awaiting, "a rotation boxed someone still waiting for a share"

    @invariant()
    def b_acts_judged_as_the_model_says(self) -> None:
        rnd, people = self.rnd, self.people()
        times = [*self.m.org_times, *(s.time for mt in self.m.teams for s in mt.snaps)]
        for _ in range(60 if LONG else 30):
            q = rnd.choice(people)
            d = rnd.choice(self.devices_of(q))
            t = rnd.choice([self.now, self.now, rnd.choice(times) + rnd.choice([-1, 0, 1, ALLOWANCE - 1, ALLOWANCE])])
            if not self.teams or rnd.random() < 0.15:
                action = rnd.choice(["org.admit", "org.role", "org.remove", "org.invite.member", "team.create.circle",
                                     "org.invite.revoke.member", "restore.accept", "audit.cosign", "org.server",
                                     "org.vouch", "org.verify", "org.approve", "org.roster", "coalition.act",
                                     "org.coalition", "org.coalition.share", *CLOSING_TYPES[:2]])
                act = Act(q.id, d.device_id, t, action)
                want = self.m.entitled(q.id, d.device_id, t, action)
                assert POLICY.entitled(act, self.org, self.members, None) == want, (act, want)
                server_judges(self.m, act, action, self.org, self.members, None, want, action)  # the server's
                # a restore acceptance, a roster export record or a coalition act record, judged as its judges do
                judged = statement_judged(action, self.org, self.members, q, d, t)
                if judged is not None:
                    event(f"{action} statement {'accepted' if want else 'refused'}")
                    assert judged == want, (act, want)
                continue
            ti = rnd.randrange(len(self.teams))
            mt = self.m.teams[ti]
            seq = rnd.randint(1, mt.seq + 1)
            gen = mt.snaps[seq - 1].gen if seq <= mt.seq and rnd.random() < 0.8 else rnd.randint(1, mt.gen)
            # A document version of any op (a deletion, a move...) is judged as the act the client names for it;
            # the rule (SECURITY.md): the same entitlement as a write.
            op = rnd.choice([None, PUT, DELETE, MOVE, RESTORE, CONFLICT])
            action = "thread.post" if op is None else "doc.write"
            act = Act(q.id, d.device_id, t, action if op is None else doc_act(op), team_seq=seq, gen=gen)
            want = self.m.entitled(q.id, d.device_id, t, action, team=mt, team_seq=seq, gen=gen)
            got = POLICY.entitled(act, self.org, self.members, self.states[ti])
            event(f"act {op or action} {'accepted' if want else 'refused'}")
            assert got == want, f"{act}: model {want}, code {got}"
            server_judges(self.m, act, action, self.org, self.members, self.states[ti], want, f"act {op or action}", mt)

    @invariant()
    def b_server_moves_accepted_as_the_model_says(self) -> None:
        """A real ``org.server`` link (a server move) signed by anyone with any of their devices, appended and
        replayed: accepted only when the model entitles its signer to ``org.server``, and in force at once only
        when no other member holds NCC at its time (two people); otherwise it waits as a proposal."""
        rnd = self.rnd
        for _ in range(3):
            q = rnd.choice(self.people())
            d = rnd.choice(self.devices_of(q))
            t = self.now
            body = {"url": f"https://moved-{rnd.randrange(10**6)}.example.org", "pin_kind": "spki",
                    "pin": p.random_bytes(32)}
            link = self.w.org_link(q, "org.server", body, time=t, append=False, by=d)
            want = self.m.entitled(q.id, d.device_id, t, "org.server")
            alone = not any(x.id != q.id and "ncc" in self.roles(x, t) for x in self.people())
            state = clone(self.org)
            try:
                state.apply(link, self.members, POLICY)
                got, why = True, ""
            except (ChainError, PolicyDenied) as e:
                got, why = False, f"{type(e).__name__}: {e}"
            event(f"link org.server {'accepted' if want else 'refused'}{' alone' if want and alone else ''}")
            assert got == want, f"org.server by {q.name} dated {t}: model {want}, code {got} {why}"
            if got:
                in_force = state.server is not None and state.server.seq == link.seq
                assert in_force == alone, f"org.server by {q.name}: in force {in_force}, signer alone {alone}"

    @invariant()
    def b_team_links_accepted_as_the_model_says(self) -> None:
        rnd, people = self.rnd, self.people()
        for _ in range(6 if LONG else 3):
            if not self.teams:
                return
            ti = rnd.randrange(len(self.teams))
            mt, state = self.m.teams[ti], self.states[ti]
            q = rnd.choice(people)
            d = rnd.choice(self.devices_of(q))
            o = rnd.choice([rnd.randint(1, self.m.org_seq), rnd.randint(max(1, mt.org_seq), self.m.org_seq)])
            head = mt.snaps[-1].time
            t = rnd.choice([self.now, max(head, self.now - rnd.choice([1, ALLOWANCE, 3 * ALLOWANCE]))])
            cut = rnd.choice(self.m.cuts) if self.m.cuts and rnd.random() < 0.5 else None
            if cut is not None:  # the thief: the cut device, dated before the cut if the chain allows (review 9)
                q = next((x for x in people if x.id == cut[0]), q)
                d = next((x for x in self.devices_of(q) if x.device_id == cut[1]), d)
                t = max(head, cut[2] - 1)
            kind = rnd.choice(["add", "role", "remove", "rotate", "review", "approve"])
            view = mt.view(self.m, o)
            holder = self.m.holds_key(mt, q.id, t, view)
            want = o >= mt.org_seq and self.m.entitled(q.id, d.device_id, t, f"team.{kind}", org_seq=o, team=mt,
                                                       position=(self.teams[ti].team_id, mt.seq + 1))
            body: dict[str, Any]
            if kind == "add":
                targets = [x.id for x in people if self.m.admitted(x.id, o)
                           and x.id not in self.m.team_members(mt, o, t, view)]
                if not targets:
                    continue
                who = rnd.choice(targets)
                after = {**view, who: ("reader", None)}
                holder = self.m.holds_key(mt, q.id, t, after)
                if holder and not self.may_box(mt, who, t, o, after):
                    continue
                key = {"gen": mt.gen, "boxes": [self.seal(ti, mt.gen, who, self.puk_at(who, t), record=False)]}
                body = {"member": who, "role": "reader", "until": None, "key": key if holder else None}
            elif kind == "role":
                targets = [m for m in self.order(self.m.team_members(mt, o, t, view)) if view[m] != ("admin", None)
                           and self.m.may_hold(self.m.org_roles(m, o, t), "admin")]
                if not targets:
                    continue
                body = {"member": rnd.choice(targets), "role": "admin", "until": None}
            elif kind == "remove":
                targets = [m for m in self.order(view) if self.m.admins(view, t) != {m}]
                if not targets:
                    continue
                who = rnd.choice(targets)
                rest = {m: r for m, r in view.items() if m != who}
                key = None
                if holder and q.id != who:
                    key = self.generation(ti, self.m.key_recipients(mt, o, t, rest), t, record=False)[0]
                body = {"member": who, "key": key}
            elif kind == "review":  # an admin confirms the list of the members admitted at org state o
                body = {"roster": roster_digest(view)}
            elif kind == "approve":  # the team's creation, approved as the second person: never by its creator
                want = want and q.id != self.teams[ti].links[0].signer
                body = {"link": self.teams[ti].links[0].hash}
            else:
                want = want and holder
                body = {"key": self.generation(ti, self.m.key_recipients(mt, o, t, view), t, record=False)[0]}
            link = self.team_link(ti, q, f"team.{kind}", body, t=t, org_seq=o, device=d, append=False)
            try:
                clone(state).apply(link, self.org, self.members, POLICY)
                got, why = True, ""
            except (ChainError, PolicyDenied) as e:
                got, why = False, f"{type(e).__name__}: {e}"
            event(f"link team.{kind} {'accepted' if want else 'refused'}")
            assert got == want, (f"team.{kind} by {q.name} dated {t} (now {self.now}) naming org state {o} "
                                 f"(team names {mt.org_seq}, head {self.m.org_seq}): model {want}, code {got} {why}")

    def openable(self, ti: int, q: str, puks: list[PukKeys], boxes: list[tuple[int, str, int, bytes]]) -> set[int]:
        state = self.states[ti]
        return openable(self.teams[ti].team_id, state.canaries, state.prev, puks, [(g, b) for g, _, _, b in boxes])

    @invariant()
    def c_nobody_opens_a_generation_made_after_they_lost_their_place(self) -> None:
        mark = (sum(len(s) for s in self.sealed), sum(len(v) for v in self.puks.values()))
        if mark == self.checked_c:
            return
        self.checked_c = mark
        for ti, mt in enumerate(self.m.teams):
            for q in self.people():
                mine = [b for b in self.sealed[ti] if b[1] == q.id]
                legit = max([g for g, holders in mt.boxed.items() if q.id in holders], default=0)
                assert self.openable(ti, q.id, self.puks[q.id], mine) == set(range(1, legit + 1))
                # A thief of a revoked device holds only the PUKs from before the revocation.
                for k, puk in enumerate(self.puks[q.id][:-1]):
                    ended = self.m.puks[q.id][k + 1]
                    got = self.openable(ti, q.id, [puk], mine)
                    assert all(self.gen_times[ti][g] <= ended for g in got), (k, got, ended)

    def teardown(self) -> None:
        """The full copy: every box ever sealed in a team, tried with every PUK a member ever held."""
        if not hasattr(self, "states"):
            return
        for ti in range(len(self.teams)):
            for q in self.people():
                mine = [b for b in self.sealed[ti] if b[1] == q.id]
                assert self.openable(ti, q.id, self.puks[q.id], self.sealed[ti]) == \
                    self.openable(ti, q.id, self.puks[q.id], mine)


AuthorityMachine.TestCase.settings = settings(
    max_examples=LONG or 200, stateful_step_count=25, deadline=None, database=None,
    phases=[ph for ph in Phase if ph != Phase.shrink or not os.environ.get("MVAULT_NOSHRINK")],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
TestAuthorityModel = pytest.mark.long(AuthorityMachine.TestCase)
