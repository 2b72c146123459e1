"""Issue 20, session 17 (review 17's first finding): in a coalition space nothing of the host organization's state
changes the space implicitly. The bounds of the two new explicit acts, on the host's replay and a guest's
(``vault/chains/outside.py``): ``coalition.remove`` with ``departed`` and a new key generation's ``withheld``
(docs/format.md). Real chain code, two organizations built by hand (tests/helpers/coalition_world.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.chain_world import Person
from tests.helpers.coalition_world import Coalition
from tests.helpers.forgery import Forge
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guests import guest_space
from vault.errors import ChainError, VaultError
from vault.links import Link
from vault.teamkeys import TeamKey, seal_history

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = ally_fixture


def key_body(c: Coalition, rest: list[Person], withheld: Any = None) -> dict[str, Any]:
    key = TeamKey.generate(c.space.team_id, c.space.key.gen + 1)
    body: dict[str, Any] = {"gen": key.gen, "canary": key.canary, "boxes": [c.host.box_commit(key, m)[0] for m in rest],
                            "prev": seal_history(key, c.space.key)}
    if withheld is not None:
        body["withheld"] = withheld
    return body


def departed(c: Coalition, signer: Person, target: Person, rest: list[Person] | None) -> Link:
    return c.host.team_link(c.space, signer, "coalition.remove",
                            {"member": target.id, "departed": True, "key": None if rest is None else key_body(c, rest)},
                            append=False)


def sides(c: Coalition, link: Link) -> tuple[bool, bool]:
    """(the host's judge takes it, a guest's view takes it)."""
    out = []
    for replay in c.both(link):
        try:
            replay()
            out.append(True)
        except VaultError:
            out.append(False)
    return out[0], out[1]


def space() -> tuple[Coalition, Person]:
    """A space (host: the founder, admin; host-writer) with one ally's guest, alice."""
    c = Coalition(hosted=True)
    ally = c.ally()
    c.pin(ally)
    alice = ally.member("alice", c.host)
    c.add(alice, c.approval(ally, alice))
    return c, alice


def test_a_departed_removal_is_the_hosts_only_for_a_member_its_organization_removed() -> None:
    """The host's judge takes it only for a member its chain removed; a guest's view, which cannot know, takes it for
    any host member (the safe direction: it only removes)."""
    c, alice = space()
    assert sides(c, departed(c, c.admin, c.writer, [c.admin, alice])) == (False, True)
    c.host.org_link(c.admin, "org.remove", {"member": c.writer.id, "reason": "expelled"})
    assert c.writer.id in c.state().members  # not dropped implicitly
    assert sides(c, departed(c, c.admin, c.writer, [c.admin, alice])) == (True, True)


def test_a_guest_signs_a_departed_removal_but_none_is_of_a_guest() -> None:
    """Session 18 (review 19): a guest of the space signs one too (the host's judge checks it against its
    organization, as a host member's; a guest's view takes it on the signer's word); none removes a guest."""
    c, alice = space()
    assert sides(c, departed(c, alice, c.writer, None)) == (False, True)  # the host did not remove the writer
    c.host.org_link(c.admin, "org.remove", {"member": c.writer.id, "reason": "expelled"})
    assert sides(c, departed(c, c.admin, alice, [c.admin])) == (False, False)  # of a guest
    assert sides(c, departed(c, alice, alice, None)) == (False, False)  # of themselves
    assert sides(c, departed(c, alice, c.writer, None)) == (True, True)  # a guest signs
    bad = c.host.team_link(c.space, c.admin, "coalition.remove", {"member": c.writer.id, "departed": False,
                                                                  "key": None}, append=False)
    assert sides(c, bad) == (False, False)


def test_while_a_removed_member_is_listed_the_host_refuses_rotations_and_reviews() -> None:
    """Checked against the code before session 17 by the review's tests (tests/test_review17_exploits.py); here the
    refusal's message, and that a departed removal without a key leaves the rotation due on both sides."""
    c, alice = space()
    c.host.org_link(c.admin, "org.remove", {"member": c.writer.id, "reason": "expelled"})
    rotation = c.host.team_link(c.space, c.admin, "team.rotate", {"key": key_body(c, [c.admin, alice])}, append=False)
    with pytest.raises(ChainError, match="whom the host organization removed"):
        c.state([rotation])
    review = c.host.team_link(c.space, c.admin, "team.review", {"roster": c.state().roster(c.host.org())},
                              append=False)
    with pytest.raises(ChainError, match="confirms a member list that is not the team's"):  # listed still
        c.state([review])
    link = departed(c, c.admin, c.writer, None)
    c.space.links.append(link)
    host, guest = c.state(), c.outside(c.space.links)
    assert host.pending_rotation and guest.pending_rotation
    assert host.members.keys() == guest.members.keys() == {c.admin.id, alice.id}
    assert c.writer.id in host.host_removed and c.writer.id in guest.host_removed


@pytest.mark.parametrize("withheld", [[], ["zz"], "bad", ["b", "a"]])
def test_withheld_is_sorted_known_and_present_only_when_not_empty(withheld: Any) -> None:
    c, alice = space()
    named = withheld if withheld != ["b", "a"] else sorted([c.writer.id, c.admin.id], reverse=True)
    link = c.host.team_link(c.space, c.admin, "team.rotate", {"key": key_body(c, [alice], named)}, append=False)
    assert sides(c, link) == (False, False)


def test_withheld_names_no_guest_and_only_a_cut_member_on_the_hosts_side() -> None:
    c, alice = space()
    guest = c.host.team_link(c.space, c.admin, "team.rotate",
                             {"key": key_body(c, [c.admin, c.writer], [alice.id])}, append=False)
    assert sides(c, guest) == (False, False)
    uncut = c.host.team_link(c.space, c.admin, "team.rotate",
                             {"key": key_body(c, [c.admin, alice], [c.writer.id])}, append=False)
    assert sides(c, uncut) == (False, True)  # the guest's view takes the name on the signer's word (docs)
    c.host.org_link(c.admin, "org.device.cut", c.host.cut_body(c.writer, c.writer.device))
    cut = c.host.team_link(c.space, c.admin, "team.rotate",
                           {"key": key_body(c, [c.admin, alice], [c.writer.id])}, append=False)
    assert sides(c, cut) == (True, True)


def test_withheld_only_in_a_coalition_space() -> None:
    c = Coalition()
    team = c.host.create_team(c.admin, [(c.admin, "admin"), (c.writer, "writer")])
    body, _ = c.host.new_generation(team, [c.admin, c.writer])
    link = c.host.team_link(team, c.admin, "team.rotate", {"key": {**body, "withheld": [c.writer.id]}})
    with pytest.raises(ChainError, match="unexpected fields"):
        c.host.replay_team(team.links)
    assert link in team.links


def test_two_servers_an_uncarried_host_removal_is_made_explicit_and_every_guest_reads_on(
        forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Through the real CLI on two real servers: bob, a host member, is a writer of alice's space beside the ally's
    guest erin. The host expels bob: carol, a second NCC member, not in the space, removes him, so her client cannot
    carry the removal (it warns). alice's next command (maintenance: bob holds the space's key) first posts
    the explicit removal (``coalition.remove`` with ``departed``), then rotates; erin's client takes both and reads
    on (before session 17 alice's rotation, boxed without bob, made every ``--space`` command of erin's exit 3)."""
    space = guest_space(forge, ally, make_member, monkeypatch, tmp_path)
    alice, carol, erin = space.alice, forge.carol, space.erin
    erin.ok("coalition", "join", space.code)
    alice.ok("coalition", "add", space.name, "bob", "--role", "writer")
    erin.ok("--space", space.name, "ls", space.name)
    alice.ok("role", "grant", "carol", "ncc", "--until", "2099-01-01")
    links = forge.d.team_links[space.id]
    before = len(links)
    r = carol.run("remove", "bob", "--reason", "expelled")
    assert r.code == 0, r.err
    assert len(links) == before and "still in coalition space campaign" in r.err, r.err  # not carried
    assert forge.ids["bob"] in forge.d.team(space.id).members
    alice.ok("ls", space.name)  # maintenance
    assert forge.ids["bob"] not in forge.d.team(space.id).members
    r = erin.run("--space", space.name, "ls", space.name)
    assert r.code == 0, r.err  # before session 17: exit 3, "key boxes do not match the team's membership"
    made = [(x.type, x.body.raw.get("departed")) for x in links[before:]]
    assert made == [("coalition.remove", True), ("team.rotate", None)], made
