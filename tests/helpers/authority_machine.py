"""The plumbing of the authority state machine (``tests/test_authority_model.py``): its state (the real
chains in an ``MWorld``, the reference ``Model``, every key, box and PUK ever made) and the helpers its
steps share (sync, pick, seal, team links judged honestly). The steps and invariants are in the test.
"""

from __future__ import annotations

import os
import random
from typing import Any, Literal

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine

from security.authority import POLICY
from security.coalitionact import judge_act
from security.events import Checkpoint
from security.policy import TEAM_KINDS
from security.restore import Acceptance, Lost, acceptance_statement, judge_acceptance, sign_acceptance
from security.roster import judge_roster
from tests.helpers.authority_model import Model, MTeam, OrgEntry
from tests.helpers.chain_world import MWorld, Person, Team
from vault.acts import ALLOWANCE, Act
from vault.chains import MemberState, OrgState, TeamState, clone, replay_org, replay_team
from vault.chains.coalition import CoalitionEntry
from vault.coalitionact import CoalitionAct, act_record, sign_act
from vault.errors import ChainError, NotFound, PolicyDenied, VaultError
from vault.keys import DeviceKeys, PukKeys
from vault.links import Link, make_link
from vault.logsign import log_keypair
from vault.roster import RosterRecord, record_bytes, sign_record
from vault.teamkeys import TeamKey, box_hash, seal_history

LONG = int(os.environ.get("MVAULT_LONG", "0") or 0)
MAX_PEOPLE, MAX_TEAMS = 7, 2
STEPS = [1, 30, 600, ALLOWANCE - 1, ALLOWANCE, ALLOWANCE + 1, 5000, 90000]
TERMS = [None, 40, 700, ALLOWANCE + 50, 4000]
idx = st.integers(0, 50)


class Honest(AssertionError):
    """The real code refused a step the model says is valid."""


class MachineBase(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = MWorld()
        self.m = Model()
        self.rnd = random.Random(0)
        self.teams: list[Team] = []
        self.keys: list[dict[int, TeamKey]] = []  # team -> gen -> key
        self.sealed: list[list[tuple[int, str, int, bytes]]] = []  # team -> every box: gen, member, puk gen, box
        self.puks: dict[str, list[PukKeys]] = {}  # member -> every PUK it ever held
        self.revoked: dict[str, list[DeviceKeys]] = {}
        self.main: dict[str, DeviceKeys] = {}  # member -> the device it signs with (Person.device is its id)
        self.gen_times: list[dict[int, int]] = []  # team -> gen -> time it was made
        f = self.w.founder
        self._person_recorded(f)
        self.m.org_link(self.w.org_links[0].time, {f.id: OrgEntry("admitted", {"member": None, "ncc": None})})
        self.checked_c = (-1, -1)
        self.sync()

    # -- plumbing --

    def _person_recorded(self, person: Person) -> None:
        self.m.devices[person.id] = {person.device.device_id: (person.chain[0].time, None)}
        self.m.adds[person.id] = {person.device.device_id: (None, 1)}
        self.m.revokers[person.id] = {}
        self.main[person.id] = person.device
        self.m.puks[person.id] = [person.chain[0].time]
        self.puks[person.id] = [person.puk]
        self.revoked[person.id] = []

    def sync(self, step: str = "") -> None:
        """Replay every chain from scratch with the real code (what a fresh client does)."""
        if step:
            event(f"step {step}")
        try:
            self.members: dict[str, MemberState] = self.w.members()
            self.org: OrgState = replay_org(self.w.org_links, self.members, POLICY)
            self.states: list[TeamState] = [replay_team(t.links, self.org, self.members, POLICY, TEAM_KINDS)
                                            for t in self.teams]
        except VaultError as e:
            raise Honest(f"the real code refused an honest history: {type(e).__name__}: {e}") from e

    @property
    def now(self) -> int:
        return self.w.time

    def order(self, ids: Any) -> list[str]:
        """Member ids in the order the people joined (ids are random: sorting them would make runs irreproducible)."""
        return [q for q in self.w.people if q in ids]

    def dev(self, q: Person) -> DeviceKeys:
        return self.main[q.id]

    def people(self) -> list[Person]:
        return list(self.w.people.values())

    def pick(self, items: list[Any], i: int) -> Any:
        return items[i % len(items)] if items else None

    def ncc(self, i: int, exclude: str | None = None) -> Person | None:
        t = self.now + 10
        found: Person | None = self.pick([q for q in self.people() if q.id != exclude and self.acting(q, t)
                                          and "ncc" in self.m.org_roles(q.id, self.m.org_seq, t)], i)
        return found

    def acting(self, q: Person, t: int | None = None) -> bool:
        """``q`` signs with a device not cut off (org.device.cut)."""
        return not self.m.cut_refused(q.id, self.dev(q).device_id, self.now + 10 if t is None else t)

    def second(self, by: Person, subject: Person, t: int) -> Person | None | Literal[False]:
        """The second NCC member an act on the strongest roles needs: None when there is none at ``t`` (one
        signs); False when the act cannot be finished honestly (the approval is signed 10 s later, when the
        proposer and an approver must still be NCC: a term ending in between leaves a mere proposal)."""
        others = [q for q in self.people() if q.id not in (by.id, subject.id) and "ncc" in self.roles(q, t)]
        if not others:
            return None
        later = [q for q in others if "ncc" in self.roles(q, t + 10) and self.acting(q, t + 10)]
        return later[0] if later and "ncc" in self.roles(by, t + 10) else False

    def roles(self, q: Person, t: int | None = None) -> frozenset[str]:
        return self.m.org_roles(q.id, self.m.org_seq, self.now + 10 if t is None else t)

    def seal(self, ti: int, gen: int, q: str, puk: PukKeys, record: bool = True) -> dict[str, Any]:
        box = self.keys[ti][gen].seal_for(q, puk.generation, puk.box_public)
        if record:
            self.sealed[ti].append((gen, q, puk.generation, box))
        return {"member": q, "puk_gen": puk.generation, "hash": box_hash(box)}

    def puk_at(self, q: str, t: int) -> PukKeys:
        return self.puks[q][self.m.puk_gen_at(q, t) - 1]

    def generation(self, ti: int, recipients: set[str], t: int, record: bool = True) -> tuple[dict[str, Any], int]:
        """A new key generation's body boxed to ``recipients`` (sealed to their PUK at ``t``)."""
        mt = self.m.teams[ti]
        gen = mt.gen + 1
        key = TeamKey.generate(self.teams[ti].team_id, gen)
        self.keys[ti][gen] = key
        n = len(self.sealed[ti])
        boxes = [self.seal(ti, gen, q, self.puk_at(q, t)) for q in sorted(recipients)]
        if not record:
            del self.sealed[ti][n:]
            del self.keys[ti][gen]
        prev = seal_history(key, self.keys[ti][gen - 1])
        return {"gen": gen, "canary": key.canary, "boxes": boxes, "prev": prev}, gen

    def team_link(self, ti: int, signer: Person, type_: str, body: dict[str, Any], *, t: int | None = None,
                  org_seq: int | None = None, device: DeviceKeys | None = None, append: bool = True) -> Link:
        team = self.teams[ti]
        head = team.links[-1]
        link = make_link(chain=team.team_id, seq=head.seq + 1, prev=head.hash, time=self.w.tick() if t is None else t,
                         signer=signer.id, device=device or self.dev(signer), type_=type_,
                         body={**body, "org_seq": self.m.org_seq if org_seq is None else org_seq})
        if append:
            team.links.append(link)
        return link

    def honest_team(self, ti: int, link: Link, action: str) -> None:
        """The model's own check that a step it makes is valid, then the team's model state moves on."""
        mt = self.m.teams[ti]
        assert self.m.entitled(link.signer, link.device, link.time, action, org_seq=self.m.org_seq, team=mt,
                               position=(self.teams[ti].team_id, link.seq)), \
            "model bug: an honest step the model itself refuses"

    def org_link_judged(self, link: Link, want: bool, label: str) -> bool:
        """Replay ``link`` on the organization chain with the real code: accepted exactly when ``want`` (the model's
        answer); appended when accepted."""
        try:
            clone(self.org).apply(link, self.members, POLICY)
            got, why = True, ""
        except (ChainError, PolicyDenied) as e:
            got, why = False, f"{type(e).__name__}: {e}"
        event(f"{label} {'accepted' if want else 'refused'}")
        assert got == want, f"{link.type} {link.body.raw} by {link.signer} dated {link.time} (now {self.now}): " \
                            f"model {want}, code {got} {why}"
        if got:
            self.w.org_links.append(link)
        return got

    def may_box(self, mt: MTeam, who: str, t: int, org_seq: int, members: dict[str, tuple[str, int | None]]) -> bool:
        """May a key holder box the current key for ``who`` at ``t`` (a team.add with a key)? Not while a rotation
        is due, nor to a PUK a cut device holds."""
        return not self.m.rotation_pending(mt, t, org_seq, tolerant=True, members=members) \
            and not self.m.compromised(who, t)

    def waiting(self, mt: MTeam) -> set[str]:
        """Members without a box of the current generation who may lack one: added by a non-holder, or left out of
        it because a cut device held their PUK when it was made (org.device.cut)."""
        made = self.gen_times[mt.index][mt.gen]
        return mt.awaiting | {q for q in mt.members if self.m.compromised(q, made)}

    def new_gen_recorded(self, mt: MTeam, gen: int, recipients: set[str], t: int) -> None:
        self.gen_times[mt.index][gen] = t
        mt.gen = gen
        mt.boxed[gen] = {q: self.m.puk_gen_at(q, t) for q in recipients}
        mt.unrotated = False  # whoever waits for a share keeps waiting: a rotation does not box them


def stored_as_modelled(m: Model, act: Act, action: str, org: OrgState, members: dict[str, MemberState],
                       state: TeamState | None, want: bool, what: str, team: MTeam | None = None) -> None:
    """The server's judge (``stored=True``: an org link dated after the act counts once stored, review 33) as the
    model's ``entitled_stored`` says for ``action``; ``want`` is the judge by dates, ``what`` names the act in the
    statistics."""
    stored = m.entitled_stored(act.author, act.device, act.time, action, team=team, team_seq=act.team_seq, gen=act.gen)
    if want and not stored:
        event(f"{what} refused by the server only (an org link dated after it stored)")
    got = POLICY.entitled(act, org, members, state, stored=True)
    assert got == stored, f"{act}: the server's model {stored}, code {got}"


def statement_judged(action: str, org: OrgState, members: dict[str, MemberState], q: Person, d: DeviceKeys,
                     t: int) -> bool | None:
    """Whether the signed statement of ``action`` (a restore acceptance, a roster export record) by ``q``'s device
    ``d`` at ``t`` passes its judge; None for an action that has no such statement."""
    judged = {"restore.accept": acceptance_judged, "org.roster": roster_judged, "coalition.act": coalition_act_judged
              }.get(action)
    return None if judged is None else judged(org, members, q, d, t)


def acceptance_judged(org: OrgState, members: dict[str, MemberState], q: Person, d: DeviceKeys, t: int) -> bool:
    """Whether a restore acceptance (security/restore.py) signed by ``q``'s device ``d`` at ``t`` passes the
    judge every client applies before following one."""
    log_public, log_secret = log_keypair(bytes(32))
    cp = Checkpoint.build(org.org_id, 3, bytes(range(32)), t)
    raw = acceptance_statement(org.org_id, cp.raw, cp.sign(log_secret), log_public, org.seq, org.head, t, q.id,
                               d.device_id, Lost((3, 5)), heads={})
    try:
        judge_acceptance(Acceptance.parse(raw), sign_acceptance(d, raw), org, members)
    except (ChainError, PolicyDenied):
        return False
    return True


def roster_judged(org: OrgState, members: dict[str, MemberState], q: Person, d: DeviceKeys, t: int) -> bool:
    """Whether a roster export record (vault/roster.py) signed by ``q``'s device ``d`` at ``t``, naming ``q``, passes
    the judge the server, the rule no-master-lists and every reader apply (security/roster.py)."""
    raw = record_bytes(org.org_id, q.id, d.device_id, t, [q.id], bytes(32))
    try:
        judge_roster(RosterRecord.parse(raw), sign_record(d, raw), org, members)
    except (ChainError, PolicyDenied):
        return False
    return True


def coalition_act_judged(org: OrgState, members: dict[str, MemberState], q: Person, d: DeviceKeys, t: int) -> bool:
    """Whether a coalition act record (vault/coalitionact.py) of ``q``'s own ``read`` in a space the organization
    recorded a coalition key for, signed by ``q``'s device ``d`` at ``t``, passes the judge of the server and the
    rules (security/coalitionact.py)."""
    org = clone(org)
    org.coalitions["campaign"] = CoalitionEntry("campaign", bytes(32), None, 1, "")
    raw = act_record(org.org_id, q.id, d.device_id, t, "campaign", "space", "read")
    try:
        judge_act(CoalitionAct.parse(raw), sign_act(d, raw), org, members)
    except (ChainError, PolicyDenied, NotFound):
        return False
    return True
