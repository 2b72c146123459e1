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

And a rule (session 20, review 24's fourth finding): from any state reached, the NCC members' stale-key hooks (the
client's own ``when_stale``, through the stand-in of tests/test_review20_exploits.py), run in turn in any order,
replace every stale key that two NCC members can open (one, with no other NCC member), and go quiet (no loop).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from client.coalitionkeys import next_slot
from client.coalitionrekey import when_stale
from security.authority import POLICY
from security.stalekeys import stale_keys
from tests.helpers.chain_world import Person
from tests.helpers.coalition_model import AllyKeysModel
from tests.helpers.coalition_world import Coalition
from tests.test_review20_exploits import _Device
from vault.chains import clone
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement
from vault.coalitionkeys import open_coalition_box, seal_coalition_seed
from vault.errors import ChainError, IntegrityError, PolicyDenied
from vault.keys import DeviceKeys
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
        self.voided: set[tuple[str, str]] = set()  # (name, new key) proposals void by their device's revocation
        self.offered: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}  # (name, new key) -> its boxes (model)
        self.spare: dict[str, DeviceKeys] = {}  # member -> a second device of theirs, which a rekey may be signed on
        self.puks = {(p.id, p.puk.generation): p.puk for p in self.people}  # every PUK generation, to open boxes
        self.keystores: dict[str, dict[str, bytes]] = {p.id: {} for p in self.people}  # the main devices' seeds
        self.keystores[self.w.founder.id].update({n: self.keys[n].seed for n in ("campaign", "other")})
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

    @rule(who=st.integers(0, 3))
    def spare_device(self, who: int) -> None:
        """Session 19: a member adds a second device (a rekey may be signed on it), or revokes the one they have (the
        boxes were sealed to the member's key and its keystore kept the seeds it made: every key they held by then is
        stale, and the proposals it signed are void)."""
        person = self.people[who]
        spare = self.spare.get(person.id)
        if spare is None:
            self.spare[person.id] = self.w.add_device(person, "spare")
        else:
            self.w.revoke_device(person, spare)
            self.puks[(person.id, person.puk.generation)] = person.puk
            del self.spare[person.id]
            voided = self.model.lose_device(person.id, spare.device_id)
            self.voided |= set(voided)
            event(f"spare device revoked{' (a proposal of it void)' if voided else ''}")
        self.members = self.w.members()

    @rule(signer=st.tuples(st.integers(0, 3), st.sampled_from([True, True, False])),
          name=st.sampled_from(["campaign", "other"]),
          kind=st.sampled_from(["fresh", "cosign", "cosign", "bad-sig", "original"]), on_spare=st.booleans(),
          which=st.integers(0, 3), boxes=st.sampled_from(["none", "ncc", "ncc", "outsider", "wrong-key"]))
    def rekey(self, signer: tuple[int, bool], name: str, kind: str, on_spare: bool, which: int, boxes: str) -> None:
        """``org.coalition`` replacing ``name``'s key: a fresh key signed with the recorded one, the same link as a
        pending proposal (a second signature), a statement signed with another key, or one replacing the key first
        recorded (retired after a rekey). Session 21: a new one carries ``boxes`` of the new key (none, one per NCC
        member, one more for a member without NCC, or one holding another key's seed)."""
        by = self.pick(*signer)
        current, original = self.model.keys[name], name
        if kind == "cosign":
            pending = [(label, body) for (n, label), body in self.bodies.items() if n == name]
            if not pending:
                return
            new, body = pending[-1 - which % len(pending)]
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
            if boxes != "none":
                body["boxes"], self.offered[(name, new)] = self.offer(name, new, boxes)
        device = self.spare.get(by.id) if on_spare else None
        outcome = self.model.rekey(by.id, name, new, valid, device.device_id if device else "main",
                                   self.offered.get((name, new)))
        event(f"rekey {kind} {outcome}{' on a spare device' if device else ''}")
        if "boxes" in body:  # session 21
            event(f"rekey with boxes {outcome}{' (filed)' if outcome == 'recorded' else ''}")
        self.attempt(self.w.org_link(by, "org.coalition", body, append=False, by=device), outcome != "refused")
        if device is None and kind == "fresh" and outcome != "refused":  # made on the main device: it keeps the seed
            self.keystores[by.id][f"{next_slot(name)}@{self.keys[new].public.hex()}"] = self.keys[new].seed
        if outcome == "proposed":
            self.bodies[(name, new)] = body
        elif outcome == "recorded":
            self.bodies = {act: b for act, b in self.bodies.items() if act[0] != name}

    def offer(self, name: str, new: str, kind: str) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]]]:
        """A rekey's ``boxes`` of the key ``new`` (session 21) and the model's view of them: one per NCC member now
        ("ncc"), one more for a member without NCC ("outsider", when there is one), or the first holding the seed of
        a key nobody recorded ("wrong-key")."""
        to = [p for p in self.people if p.id in self.model.ncc]
        if kind == "outsider":
            to += [p for p in self.people if p.id not in self.model.ncc][:1]
        body, seen = [], {}
        for i, person in enumerate(to):
            inside = "fresh" if kind == "wrong-key" and i == 0 else new
            body.append({"member": person.id, "puk_gen": person.puk.generation,
                         "box": seal_coalition_seed(self.keys[inside], name, person.id, person.puk.generation,
                                                    person.puk.box_public)})
            seen[person.id] = (inside, person.id)
        return body, seen

    @rule(signer=st.tuples(st.integers(0, 3), st.sampled_from([True, True, False])))
    def cosign_void(self, signer: tuple[int, bool]) -> None:
        """Session 19: the same link as a rekey proposed on a device revoked since, signed by anyone (a second NCC
        member, as the hook or `coalition rekey` would): it only proposes (the proposal was the device's)."""
        void = sorted(act for act in self.voided if act in self.bodies)
        if not void:
            return
        by, (name, new) = self.pick(*signer), void[0]
        body = self.bodies[(name, new)]
        outcome = self.model.rekey(by.id, name, new, body["replaces"] == self.keys[self.model.keys[name]].public,
                                   offered=self.offered.get((name, new)))
        event(f"rekey of a proposal void since {outcome}")
        self.attempt(self.w.org_link(by, "org.coalition", body, append=False), outcome != "refused")
        self.voided.discard((name, new))
        if outcome == "recorded":
            self.bodies = {act: b for act, b in self.bodies.items() if act[0] != name}

    @invariant()
    def d_the_hooks_converge(self) -> None:
        """Session 20 (review 24, finding 4): whenever a key is stale, the hooks replace it (``hooks_converge``), in
        an order and with keystores that vary with the chain's length (the rule below draws them)."""
        n = len(self.w.org_links)
        if stale_keys(self.org, self.w.time, self.members):
            self.hooks_converge([(i + n) % 4 for i in range(4)][:: 1 if n % 3 else -1], n % 2 == 0)

    @rule(order=st.permutations(range(4)), sealed=st.booleans())
    def hooks_converge(self, order: list[int], sealed: bool) -> None:
        """Session 20 (review 24, finding 4): from here, every NCC member's stale-key hook runs, in turn, three rounds
        (a hypothetical: the links it appends are taken off after). Each stale key that two NCC members can open (a
        keystore seed or a box: the statement is signed with it), or one with no other NCC member, is replaced (not
        stale after); and a fourth round appends nothing (the hooks neither wait on each other for good nor propose
        again in turn). ``sealed``: every NCC member's device holds the recorded keys too (as after a key holder's
        ``share_missing``, which the machine's random shares rarely reach)."""
        stale, start = stale_keys(self.org, self.w.time, self.members), len(self.w.org_links)
        if not stale:
            return
        ncc = [self.people[i] for i in order if self.people[i].id in self.model.ncc]
        recorded = {n: self.keys[self.model.keys[n]].seed for n in ("campaign", "other")}
        devices = [_Device(self.w, p, {**self.keystores[p.id], **(recorded if sealed else {})}) for p in ncc]
        puks = self.puks

        def client(d: _Device) -> Any:
            c = d.client()

            async def puk(gen: int) -> Any:
                return puks[(d.person.id, gen)]
            c.keys = type("Keys", (), {"puk": staticmethod(puk)})()  # type: ignore[misc]
            return c

        def opens(d: _Device, name: str) -> bool:
            key, held = self.org.coalitions[name].key, d.coalitions
            return (name in held and CoalitionKey(held[name]).public == key) or any(
                k.startswith(next_slot(name)) and CoalitionKey(v).public == key for k, v in held.items()) or (
                self.model.opens(name, d.person.id))

        able = {name: sum(1 for d in devices if opens(d, name)) for name in stale}  # before the hooks change keystores
        try:
            for _ in range(3):
                for d in devices:
                    asyncio.run(when_stale(client(d)))
            quiet = len(self.w.org_links)
            for d in devices:
                asyncio.run(when_stale(client(d)))
            assert len(self.w.org_links) == quiet, "the hooks still append after three rounds"
            after = stale_keys(self.w.org(), self.w.time, self.w.members())
            for name in stale:
                if able[name] >= 2 or (able[name] == 1 and len(ncc) == 1):
                    assert name not in after, (name, stale[name], able)
                    event("hooks: a stale key replaced")
                else:
                    event("hooks: a stale key fewer than two NCC members can open")
        finally:
            del self.w.org_links[start:]

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
        assert {k: set(v) for k, v in self.org.coalition_offers.items()} == {  # session 21: the boxes waiting
            self.keys[label].public: set(v) for label, v in self.model.offers.items()}

    @invariant()
    def c_the_stale_keys_are_the_models(self) -> None:
        """Issue 20, session 18: ``stale_keys``, the one rule of a coalition key to replace, is the model's."""
        stale = {n: tuple(sorted(m)) for n, m in self.model.stale().items()}
        assert stale_keys(self.org, self.w.time, self.members) == stale

    @invariant()
    def b_a_box_opens_to_the_recorded_key_only_as_the_model_says(self) -> None:
        for name, filed in self.org.coalition_shares.items():
            recorded = self.org.coalitions[name].key
            for member, share in filed.items():
                puk = self.puks.get((member, share.puk_gen))
                try:
                    if puk is None:
                        raise IntegrityError("no such PUK generation")
                    got = open_coalition_box(share.box, puk, name, recorded, member)
                    opened = got.public == recorded
                except IntegrityError:
                    opened = False
                assert opened == self.model.opens(name, member), (name, member)


AllyKeysMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("MVAULT_LONG", "0") or 0) or 40, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestAllyKeysModel = AllyKeysMachine.TestCase
