"""``org.device.cut`` and ``org.clear`` in the chain replay and the one judge (what the server and every client
run): who may sign them, what they name, and their effect on later acts, rotations and key shares (issue 18).

The world (``MWorld`` of tests/helpers/chain_world.py): the founder (NCC), carol (Security Team), bob with a
laptop and a phone, both writers in team "cell" (kind circle, sensitive) and "program" (kind program)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from security.authority import POLICY
from security.events import Event
from tests.helpers.chain_world import MWorld, Person, Team, expect
from tests.helpers.rules import HOUR, MINUTE, audit, event, link_event, ok, only, result
from vault.acts import Act
from vault.chains import replay_member
from vault.errors import ChainError, PolicyDenied
from vault.keys import DeviceKeys
from vault.links import make_link


@dataclass
class Lost:
    w: MWorld
    carol: Person
    bob: Person
    phone: DeviceKeys
    cell: Team
    program: Team

    def cut(self, signer: Person | None = None, device: DeviceKeys | None = None) -> None:
        self.w.org_link(signer or self.carol, "org.device.cut", self.w.cut_body(self.bob, device or self.bob.device))

    def judged(self, action: str, team: Team | None, device: DeviceKeys | None = None, t: int | None = None,
               ) -> None:
        w = self.w
        state = w.replay_team(team.links) if team is not None else None
        POLICY.judge(Act(self.bob.id, (device or self.phone).device_id, w.time if t is None else t, action,
                         gen=state.generation if state else None), w.org(), w.members(), state)


@pytest.fixture
def lost() -> Lost:
    w = MWorld()
    carol = w.admit("carol")
    w.role(w.founder, carol, "security", until=w.time + 10**8)
    bob = w.admit("bob")
    phone = w.add_device(bob, "phone")
    cell = w.create_team(w.founder, [(w.founder, "admin"), (bob, "writer")], kind="circle")
    program = w.create_team(w.founder, [(w.founder, "admin"), (bob, "writer")], kind="program")
    return Lost(w, carol, bob, phone, cell, program)


def test_a_cut_device_is_refused_from_the_cut_and_its_member_paused_in_sensitive_teams(lost: Lost) -> None:
    w, bob = lost.w, lost.bob
    before = w.time
    lost.cut()
    cut_at = w.time
    org = w.org()
    assert [(c.member, c.device, c.time) for c in org.incidents.cuts] == [(bob.id, bob.device.device_id, cut_at)]
    # The laptop (cut): what it signed before the cut stands, nothing dated from the cut on is believed.
    lost.judged("doc.write", lost.program, bob.device, t=before)
    expect(PolicyDenied, lambda: lost.judged("doc.write", lost.program, bob.device), "cut off by the Security Team")
    expect(PolicyDenied, lambda: w.org_link(bob, "org.vouch", {"member": lost.carol.id}) and w.org(),
           "cut off by the Security Team")
    w.org_links.pop()
    # The phone (not cut): paused in the circle, writing on in the program team.
    expect(PolicyDenied, lambda: lost.judged("doc.write", lost.cell), "paused since")
    expect(PolicyDenied, lambda: lost.judged("thread.post", lost.cell), "paused since")
    lost.judged("doc.read", lost.cell)
    lost.judged("doc.write", lost.program)
    # Cleared by the Security Team: the phone writes in the circle again; the laptop stays cut.
    w.org_link(lost.carol, "org.clear", {"member": bob.id})
    lost.judged("doc.write", lost.cell)
    expect(PolicyDenied, lambda: lost.judged("doc.write", lost.cell, bob.device), "cut off")
    pause = w.org().incidents.pauses[0]
    assert (pause.since, pause.cleared_at, pause.cleared_by) == (cut_at, w.time, lost.carol.id)
    # A pause judges "as it was at the time": a write dated inside the pause stays refused after the clear.
    expect(PolicyDenied, lambda: lost.judged("doc.write", lost.cell, t=cut_at + 1), "paused since")


def test_who_may_cut_and_clear(lost: Lost) -> None:
    w, bob = lost.w, lost.bob
    dave = w.admit("dave")
    # A plain member, a compa, and NCC while the Security Team has a member: refused by every replay.
    for signer, why in ((dave, "may not cut off a device"), (w.founder, "the Security Team handles incidents")):
        lost.cut(signer)
        expect(PolicyDenied, w.org, why)
        w.org_links.pop()
    compa = w.admit("compa", role="compa")
    lost.cut(compa)
    expect(PolicyDenied, w.org, "may not cut off a device")
    w.org_links.pop()
    # A device of another member than the one named, an unknown device, a device cut already: refused.
    lost.cut(device=lost.carol.device)
    expect(ChainError, w.org, "is not a device of member")
    w.org_links.pop()
    lost.cut()
    w.org()
    lost.cut()
    expect(ChainError, w.org, "already cut off")
    w.org_links.pop()
    # org.clear: not by a plain member, not by NCC while there is a Security Team, never of a member not paused.
    for signer, why in ((dave, "may not clear"), (w.founder, "the Security Team handles incidents")):
        w.org_link(signer, "org.clear", {"member": bob.id})
        expect(PolicyDenied, w.org, why)
        w.org_links.pop()
    w.org_link(lost.carol, "org.clear", {"member": dave.id})
    expect(ChainError, w.org, "is not paused")
    w.org_links.pop()


def test_a_paused_security_member_cannot_clear_themselves_and_ncc_acts_without_a_security_team() -> None:
    w = MWorld()
    carol = w.admit("carol")
    w.role(w.founder, carol, "security", until=w.time + 10**8)
    w.org_link(w.founder, "org.device.cut", w.cut_body(carol, carol.device))
    expect(PolicyDenied, w.org, "Security Team handles incidents")  # carol is the Security Team
    w.org_links.pop()
    phone = w.add_device(carol, "phone")
    erin = w.admit("erin")
    w.role(w.founder, erin, "security", until=w.time + 10**8)
    w.org_link(erin, "org.device.cut", w.cut_body(carol, carol.device))
    w.org_link(carol, "org.clear", {"member": carol.id}, by=phone)
    expect(PolicyDenied, w.org, "cannot clear themselves")
    w.org_links.pop()
    # With nobody in the Security Team, NCC acts.
    w2 = MWorld()
    bob = w2.admit("bob")
    w2.org_link(w2.founder, "org.device.cut", w2.cut_body(bob, bob.device))
    w2.org_link(w2.founder, "org.clear", {"member": bob.id})
    assert w2.org().incidents.pauses[0].cleared_by == w2.founder.id


def test_a_device_the_cut_device_adds_is_not_believed_until_the_member_revokes_the_lost_one(lost: Lost) -> None:
    w, bob = lost.w, lost.bob
    lost.cut()
    # The thief adds a device with the seized laptop (a colluding server stores it): cut like the laptop.
    extra = w.add_device(bob, "thief", by=bob.device)
    expect(PolicyDenied, lambda: lost.judged("doc.write", lost.program, extra), "added after device")
    w.org_link(bob, "org.vouch", {"member": lost.carol.id}, by=extra)
    expect(PolicyDenied, w.org, "added after device")
    w.org_links.pop()
    # From the phone, bob revokes the laptop (and the thief's device): a device he adds afterwards acts.
    w.revoke_device(bob, bob.device, by=lost.phone)
    w.revoke_device(bob, extra, by=lost.phone)
    tablet = w.add_device(bob, "tablet", by=lost.phone)
    lost.judged("doc.write", lost.program, tablet)


def test_rotations_leave_the_compromised_key_out_until_the_member_revokes_the_device(lost: Lost) -> None:
    w, bob, program = lost.w, lost.bob, lost.program
    assert w.replay_team(program.links).rotation_reasons(w.time, w.members(), w.org()) == []
    lost.cut()
    reasons = w.replay_team(program.links).rotation_reasons(w.time, w.members(), w.org())
    assert reasons == [f"a device of {bob.id} that could open the current key was cut off"]
    # A rotation that still boxes bob's key (which the laptop holds) is refused; one without him is the rule.
    old = program.key
    w.rotate(program, w.founder, [w.founder, bob])
    expect(ChainError, lambda: w.replay_team(program.links), "missing or extra box")
    program.links.pop()
    program.key = old
    body, key = w.new_generation(program, [w.founder])
    w.team_link(program, w.founder, "team.rotate", {"key": body})
    program.key = key
    state = w.replay_team(program.links)
    assert state.withheld == {bob.id: 2} and state.rotation_reasons(w.time, w.members(), w.org()) == []
    # A share to bob's compromised key is refused; after bob revokes the laptop (PUK rolls) it is accepted.
    w.share(program, w.founder, bob)
    expect(ChainError, lambda: w.replay_team(program.links), "cut off: they revoke it first")
    program.links.pop()
    w.revoke_device(bob, bob.device, by=lost.phone)
    assert replay_member(bob.chain).puk_gen == 2
    w.share(program, w.founder, bob)
    state = w.replay_team(program.links)
    assert (2, bob.id) in state.boxes and state.withheld == {}
    # A member who was never left out cannot be "shared" to through this path.
    w.share(program, w.founder, lost.carol)
    expect(ChainError, lambda: w.replay_team(program.links), "not waiting for the team key")


# -- rule lost-device --------------------------------------------------------------------------------------


def reported_lost(lost: Lost) -> tuple[int, Event]:
    """Bob reports his laptop lost (``mvault audit lost``, from the phone) a minute from now: (time, event)."""
    reported = lost.w.time + 60
    return reported, event(reported, "attest.lost", lost.bob.id, lost.phone.device_id,
                           res={"member": lost.bob.id, "device": lost.bob.device.device_id})


def test_rule_lost_device_counts_a_cut_as_the_revocation_and_warns_of_a_pause_not_cleared(lost: Lost) -> None:
    w, bob = lost.w, lost.bob
    reported, report = reported_lost(lost)
    w.time = reported + 20 * MINUTE
    lost.cut()
    cut_link = w.org_links[-1]
    w.time += 10 * MINUTE
    for team in (lost.cell, lost.program):
        w.rotate(team, w.founder, [w.founder])
    events = [report, link_event(cut_link)]
    res = result(audit(w, [lost.cell, lost.program], events, now=w.time + HOUR), "lost-device")
    paused = only(res, "warning")  # revoked (cut) in time, every team rotated: only the pause is left
    assert paused.subject == bob.id and "paused since" in paused.message and paused.events == (1,)
    w.org_link(lost.carol, "org.clear", {"member": bob.id})
    ok(result(audit(w, [lost.cell, lost.program], events, now=w.time + HOUR), "lost-device"))


def test_rule_lost_device_a_report_neither_revoked_nor_cut_within_the_hour_is_a_violation(lost: Lost) -> None:
    w, bob = lost.w, lost.bob
    reported, report = reported_lost(lost)
    w.time = reported + 2 * HOUR
    lost.cut()  # too late
    res = result(audit(w, [], [report, link_event(w.org_links[-1])], now=w.time + MINUTE), "lost-device")
    late = next(f for f in res.findings if f.level == "violation")
    assert late.subject == bob.device.device_id and "revoked 2h" in late.message


def test_a_key_holder_cannot_box_the_key_to_a_puk_a_cut_device_holds(lost: Lost) -> None:
    """A team.add with a box (a key holder adding bob to another team) after the cut would hand the key to the
    thief: refused until bob revokes the laptop; a keyless add waits for a share as usual."""
    w, bob = lost.w, lost.bob
    other = w.create_team(w.founder, [(w.founder, "admin")], kind="program")
    lost.cut()
    w.add(other, w.founder, bob)
    expect(ChainError, lambda: w.replay_team(other.links), "cut off: they revoke it first")
    other.links.pop()
    w.revoke_device(bob, bob.device, by=lost.phone)
    w.add(other, w.founder, bob)
    assert (1, bob.id) in w.replay_team(other.links).boxes


def test_what_the_cut_device_signed_before_the_cut_stands_and_what_it_signs_beyond_its_last_link_is_refused(
        lost: Lost) -> None:
    """bob admins "den" and adds mallory with his laptop; carol cuts the laptop: the cut names den's link 2 as the
    laptop's last there, and den still replays for everyone. Beyond it the laptop is refused whatever the date:
    a team.role in den, and a team it creates, dated a second before the cut (a colluding server stores both)."""
    w, bob = lost.w, lost.bob
    mallory = w.admit("mallory")
    den = w.create_team(w.founder, [(w.founder, "admin"), (bob, "admin")], kind="circle")
    w.add(den, bob, mallory, "writer", by=bob.device)
    lost.cut()
    cut = w.org().incidents.cut_of(bob.id, bob.device.device_id)
    assert cut is not None and cut.last[den.team_id] == (2, den.links[1].hash) and bob.id in cut.last
    cut_at, before_cut = w.time, w.org_seq - 1
    assert w.replay_team(den.links).role_of(mallory.id, w.time) == "writer"
    w.team_role(den, bob, mallory, "admin", by=bob.device, time=cut_at - 1, org_seq=before_cut)
    expect(PolicyDenied, lambda: w.replay_team(den.links), "after the last one it had signed")
    den.links.pop()
    body, rogue = w.team_create_body([(bob, "admin"), (mallory, "admin")], kind="circle", org_seq=before_cut)
    rogue.links.append(make_link(chain=None, seq=1, prev=None, time=cut_at - 1, signer=bob.id, device=bob.device,
                                 type_="team.create", body=body))
    expect(PolicyDenied, lambda: w.replay_team(rogue.links), "after the last one it had signed")


def test_a_revocation_signed_by_a_device_the_cut_device_added_answers_no_cut(lost: Lost) -> None:
    """The thief adds a device with the cut laptop (dated before the cut) and revokes the laptop with it: bob's key
    stays compromised (the new PUK is the thief's), and rotations leave him out until bob, from his phone, revokes
    the thief's device too."""
    w, bob = lost.w, lost.bob
    lost.cut()
    cut_at = w.time
    rogue = w.add_device(bob, "rogue", by=bob.device, time=cut_at - 1)
    w.time += 60
    w.revoke_device(bob, bob.device, by=rogue)
    w.time += 60
    assert w.org().incidents.compromised(w.members()[bob.id], w.time) is not None
    w.revoke_device(bob, rogue, by=lost.phone)
    w.time += 60
    assert w.org().incidents.compromised(w.members()[bob.id], w.time) is None
    state = w.replay_team(lost.cell.links)
    assert bob.id in POLICY.key_recipients(state, w.org(), w.org_seq, w.time, w.members())
