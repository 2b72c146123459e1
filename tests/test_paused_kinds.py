"""Issue 18: the team kinds a paused member adds no content to are a protocol parameter
(``[rules.lost-device] paused_kinds``), changed by two NCC members like every other, and judged as in force at
each act's time (``security.authority.paused_kinds``): the one judge, as the server and every client use it."""

from __future__ import annotations

from security.authority import POLICY, paused_kinds
from security.protocols import default_text
from tests.helpers.chain_world import MWorld, Person, Team
from tests.helpers.rules import ncc
from vault.acts import Act


def _writes(w: MWorld, who: Person, team: Team, t: int) -> bool:
    state = w.replay_team(team.links)
    act = Act(who.id, who.device.device_id, t, "doc.write", team_seq=state.seq, gen=state.generation)
    return POLICY.entitled(act, w.org(), w.members(), state)


def test_the_paused_kinds_are_the_protocols_in_force_at_each_act() -> None:
    w = MWorld()
    sec = w.admit("sec")
    w.role(w.founder, sec, "security")  # the founder alone, while the only NCC member
    dana = ncc(w, "dana")
    bob = w.admit("bob")
    circle = w.create_team(w.founder, [(w.founder, "admin"), (bob, "writer")], kind="circle")
    program = w.create_team(w.founder, [(w.founder, "admin"), (bob, "writer")], kind="program")
    w.org_link(sec, "org.suspect", {"member": bob.id})
    paused_at = w.tick()
    assert paused_kinds(w.org(), paused_at) == ("ncc", "security", "circle", "staff")
    assert not _writes(w, bob, circle, paused_at) and _writes(w, bob, program, paused_at)
    # One NCC member's proposal changes nothing; the second's approval puts circles out of the pause.
    text = default_text().replace("version = 1\n", "version = 2\n", 1)
    changed = text.replace('paused_kinds = ["ncc", "security", "circle", "staff"]', 'paused_kinds = ["ncc"]', 1)
    assert changed != text
    w.org_link(w.founder, "org.protocols.propose", {"text": changed})
    assert not _writes(w, bob, circle, w.tick())
    w.org_link(dana, "org.protocols.approve", {"digest": next(iter(w.org().proposals))})
    later = w.tick()
    assert paused_kinds(w.org(), later) == ("ncc",) and _writes(w, bob, circle, later)
    assert not _writes(w, bob, circle, paused_at)  # judged as at its time: the pause applied then
