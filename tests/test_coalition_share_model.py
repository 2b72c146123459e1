"""Issue 20: the model-based test of ``org.coalition.share`` (the ally's own chain; docs/lifecycle.md "Every NCC
member holds the coalition key").

A Hypothesis state machine grows an ally's organization chain through the REAL chain code: NCC granted to and
revoked from members (two-person, as the chain requires), and ``org.coalition.share`` links signed by anyone, for
the recorded key, another space's key or a key nobody recorded, for a recorded or unknown name, with any list of
boxes (none, a box for a member without NCC, two for one member, a box of the wrong key, a box sealed to another
member). Each link is appended only if the replay accepts it, and the replay's verdict must be the reference
model's (``tests/helpers/coalition_model.py``, ``AllyKeysModel``). After every step:

(a) the NCC and the boxes filed per name and member are exactly the model's;
(c) the coalition keys ``stale_keys`` names to replace (issue 20, session 18) are the model's, with who makes them so;
(b) each filed box opens, with its recipient's checks (``open_coalition_box``), to the key the chain records
    exactly when the model says it holds that key for that member: a box the chain filed but cannot look inside
    (the wrong key, sealed to someone else) is refused on opening, never used.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from security.authority import POLICY
from security.stalekeys import stale_keys
from tests.helpers.chain_world import Person
from tests.helpers.coalition_model import AllyKeysModel
from tests.helpers.coalition_world import Coalition
from vault.chains import clone
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement
from vault.coalitionkeys import open_coalition_box, seal_coalition_seed
from vault.errors import ChainError, IntegrityError, PolicyDenied
from vault.links import Link

NAMES = ["campaign", "other", "unrecorded"]
KEYS = ["recorded", "recorded", "recorded", "campaign", "other", "fresh"]  # the key a share names ("recorded": the
# one recorded for its name), or one nobody recorded
CONTENTS = ["honest", "honest", "honest", "wrong-key", "misfiled"]


class AllyKeysMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.ally = Coalition().ally()  # its founder (the only NCC member) recorded the key for "campaign"
        self.w = self.ally.world
        self.keys = {"campaign": self.ally.key, "other": CoalitionKey.generate(), "fresh": CoalitionKey.generate()}
        self.w.org_link(self.w.founder, "org.coalition", {"name": "other", "key": self.keys["other"].public,
                                                          "host": None})
        self.people: list[Person] = [self.w.founder, *(self.w.admit(n) for n in ("gina", "hank", "ivy"))]
        self.model = AllyKeysModel({self.w.founder.id}, {"campaign": "campaign", "other": "other"},
                                   signers={"campaign": {self.w.founder.id}, "other": {self.w.founder.id}})
        self.members = self.w.members()
        self.bodies: dict[tuple[str, str], dict[str, Any]] = {}  # (name, new key) -> the rekey link's body proposed
        self.org = self.w.org()

    def attempt(self, link: Link, expected: bool) -> bool:
        candidate = clone(self.org)
        try:
            candidate.apply(link, self.members, POLICY)
            accepted = True
        except (ChainError, PolicyDenied):
            accepted = False
        assert accepted == expected, f"{link.type} by {link.signer}: replay {accepted}, model {expected}"
        event(f"{link.type} {'accepted' if accepted else 'refused'}")
        if accepted:
            self.w.org_links.append(link)
            self.org = candidate
        return accepted

    @rule(who=st.integers(1, 3))
    def toggle_ncc(self, who: int) -> None:
        """The founder grants or revokes NCC; a second NCC member (neither the founder nor the subject) confirms
        when the model says one exists."""
        subject, founder = self.people[who], self.w.founder
        grant = subject.id not in self.model.ncc
        second = self.model.needs_second(founder.id, subject.id)
        self.attempt(self.w.role(founder, subject, "ncc", grant=grant, append=False), True)
        if second:
            other = next(p for p in self.people if p.id in self.model.ncc and p.id not in (founder.id, subject.id))
            self.attempt(self.w.role(other, subject, "ncc", grant=grant, append=False), True)
        (self.model.ncc.add if grant else self.model.ncc.discard)(subject.id)
        event(f"ncc {'granted' if grant else 'revoked'}{' two-person' if second else ''}")

    def pick(self, i: int, ncc: bool) -> Person:
        """The ``i``-th person, or the ``i``-th NCC member (``ncc``; the founder always is one)."""
        pool = [p for p in self.people if p.id in self.model.ncc] if ncc else self.people
        return pool[i % len(pool)]

    @rule(signer=st.tuples(st.integers(0, 3), st.sampled_from([True, True, False])), name=st.sampled_from(NAMES),
          key=st.sampled_from(KEYS), boxes=st.lists(st.tuples(st.integers(0, 3), st.sampled_from([True, True, False]),
                                                              st.sampled_from(CONTENTS)), max_size=4))
    def share(self, signer: tuple[int, bool], name: str, key: str, boxes: list[tuple[int, bool, str]]) -> None:
        by = self.pick(*signer)
        key = (name if name != "unrecorded" else "fresh") if key == "recorded" else key
        body, filed, ids = [], {}, []
        for i, ncc, content in boxes:
            member = self.pick(i, ncc)
            i = self.people.index(member)
            ids.append(member.id)
            sealed_to = self.people[(i + 1) % 4] if content == "misfiled" else member
            in_box = "fresh" if content == "wrong-key" else self.model.keys.get(name, "fresh")
            seed_of = self.keys[in_box]
            box = seal_coalition_seed(seed_of, name, sealed_to.id, sealed_to.puk.generation, sealed_to.puk.box_public)
            body.append({"member": member.id, "puk_gen": member.puk.generation, "box": box})
            filed[member.id] = (in_box, sealed_to.id)
        expected = self.model.may_share(by.id, name, key, ids)
        link = self.w.org_link(by, "org.coalition.share", {"name": name, "key": self.keys[key].public, "boxes": body},
                               append=False)
        if self.attempt(link, expected):
            self.model.share(name, filed)

    @rule(signer=st.tuples(st.integers(0, 3), st.sampled_from([True, True, False])),
          name=st.sampled_from(["campaign", "other"]),
          kind=st.sampled_from(["fresh", "cosign", "cosign", "bad-sig", "original"]))
    def rekey(self, signer: tuple[int, bool], name: str, kind: str) -> None:
        """``org.coalition`` replacing ``name``'s key: a fresh key signed with the recorded one, the same link as a
        pending proposal (a second signature), a statement signed with another key, or one replacing the key first
        recorded (retired after a rekey)."""
        by = self.pick(*signer)
        current, original = self.model.keys[name], name
        if kind == "cosign":
            pending = [(label, body) for (n, label), body in self.bodies.items() if n == name]
            if not pending:
                return
            new, body = pending[0]
            valid = body["replaces"] == self.keys[current].public
        else:
            new = f"{name}#{len(self.keys)}"
            self.keys[new] = CoalitionKey.generate()
            old = {"fresh": current, "bad-sig": "fresh", "original": original}[kind]
            replaces = self.keys[original if kind == "original" else current]
            statement = rekey_statement(self.ally.root, self.keys[new].public, self.w.time)
            body = {"name": name, "key": self.keys[new].public, "host": None, "replaces": replaces.public,
                    "rekey": signed_statement(self.keys[old], statement)}
            valid = kind == "fresh" or (kind == "original" and current == original)
        outcome = self.model.rekey(by.id, name, new, valid)
        event(f"rekey {kind} {outcome}")
        self.attempt(self.w.org_link(by, "org.coalition", body, append=False), outcome != "refused")
        if outcome == "proposed":
            self.bodies[(name, new)] = body
        elif outcome == "recorded":
            self.bodies = {act: b for act, b in self.bodies.items() if act[0] != name}

    @invariant()
    def a_ncc_and_shares_as_the_model_says(self) -> None:
        for name in ("campaign", "other"):
            assert self.org.coalitions[name].key == self.keys[self.model.keys[name]].public, name
            assert [r.entry.key for r in self.org.coalitions_retired.get(name, [])] == [
                self.keys[label].public for label in self.model.retired.get(name, [])], name
        ncc = {p.id for p in self.people if "ncc" in self.org.roles_of(p.id, self.w.time)}
        assert ncc == self.model.ncc
        for name in ("campaign", "other"):
            assert set(self.org.coalition_shares.get(name, {})) == set(self.model.shares.get(name, {})), name
        assert "unrecorded" not in self.org.coalition_shares

    @invariant()
    def c_the_stale_keys_are_the_models(self) -> None:
        """Issue 20, session 18: ``stale_keys``, the one rule of a coalition key to replace, is the model's."""
        assert stale_keys(self.org, self.w.time) == {n: tuple(sorted(m)) for n, m in self.model.stale().items()}

    @invariant()
    def b_a_box_opens_to_the_recorded_key_only_as_the_model_says(self) -> None:
        for name, filed in self.org.coalition_shares.items():
            recorded = self.org.coalitions[name].key
            for member, share in filed.items():
                person = next(p for p in self.people if p.id == member)
                try:
                    got = open_coalition_box(share.box, person.puk, name, recorded, member)
                    opened = got.public == recorded
                except IntegrityError:
                    opened = False
                assert opened == self.model.opens(name, member), (name, person.name)


AllyKeysMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("MVAULT_LONG", "0") or 0) or 40, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestAllyKeysModel = AllyKeysMachine.TestCase
