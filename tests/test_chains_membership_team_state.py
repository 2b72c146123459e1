"""Issue 3 chain links replayed with the shipped policy: what a team link is judged against.

Team links name the organization state they were made against (``org_seq``), and roles are
judged there; device keys are judged at the link's time. Also who could write at a team state,
the reasons a team key must rotate, and the re-key of an orphaned team.
"""

from __future__ import annotations

import pytest

from security.authority import POLICY
from tests.helpers.chain_world import MWorld, Person, Team, expect, rejected
from vault.acts import Act
from vault.chains import replay_member, replay_org
from vault.errors import ChainError, PolicyDenied
from vault.keys import PukKeys
from vault.links import invite_public, make_link
from vault.teamkeys import TeamKey, box_hash, seal_history


@pytest.fixture
def world() -> MWorld:
    return MWorld()


@pytest.fixture
def team(world: MWorld) -> tuple[MWorld, Person, Person, Team]:
    """Founder (NCC, admin) and Alice (writer) in a circle; Bob admitted to the org."""
    alice, bob = world.admit("alice"), world.admit("bob")
    t = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")])
    return world, alice, bob, t


# == team chains: the organization state a link names ================================================


def test_team_link_citing_an_org_seq_beyond_the_org_chain(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, _, bob, t = team
    link = world.add(t, world.founder, bob, "reader", org_seq=world.org_seq + 1, append=False)
    rejected(world, [*t.links, link], ChainError, "does not exist")
    # A server that drops the org links a team chain already names is caught the same way.
    world.add(t, world.founder, bob, "reader")
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(b"x" * 32),
                                                 "expires": world.time + 100, "note": ""})
    carol = world.admit("carol")
    world.add(t, world.founder, carol, "reader")
    world.replay_team(t.links)
    dropped = world.org_links.pop()
    rejected(world, t.links, ChainError, "does not exist")
    world.org_links.append(dropped)
    body, _ = world.team_create_body([(world.founder, "admin")], org_seq=world.org_seq + 1)
    create = make_link(chain=None, seq=1, prev=None, time=world.tick(), signer=world.founder.id,
                       device=world.founder.device, type_="team.create", body=body)
    rejected(world, [create], ChainError, "does not exist")
    body, _ = world.team_create_body([(world.founder, "admin")], org_seq=0)
    create = make_link(chain=None, seq=1, prev=None, time=world.tick(), signer=world.founder.id,
                       device=world.founder.device, type_="team.create", body=body)
    rejected(world, [create], ChainError, "org_seq")


def test_team_link_citing_an_org_seq_that_goes_backwards(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, _, bob, t = team
    carol = world.admit("carol")
    world.add(t, world.founder, bob, "reader")  # made against the head after carol's join
    cited = world.org_seq
    link = world.add(t, world.founder, carol, "reader", org_seq=cited - 1, append=False)
    rejected(world, [*t.links, link], ChainError, "went back")
    world.add(t, world.founder, carol, "reader", org_seq=cited)  # the same state again is fine
    state = world.replay_team(t.links)
    assert state.org_seq == cited and state.snapshots[state.seq].org_seq == cited
    link = world.team_link(t, world.founder, "team.leave", {}, org_seq=cited - 2, append=False)
    rejected(world, [*t.links, link], ChainError, "went back")


def test_team_link_missing_org_seq(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, _, bob, t = team
    link = world.add(t, world.founder, bob, "reader", append=False)
    head = t.links[-1]
    value = {"member": bob.id, "role": "reader", "until": None, "key": None}
    bare = make_link(chain=t.team_id, seq=head.seq + 1, prev=head.hash, time=link.time, signer=world.founder.id,
                     device=world.founder.device, type_="team.add", body=value)
    rejected(world, [*t.links, bare], ChainError, "org_seq")


def test_roles_are_judged_at_the_org_seq_a_link_names(world: MWorld) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    before_grant = world.org_seq
    world.role(world.founder, alice, "ncc")
    # A team.create citing the state before alice became NCC: she may not create a circle there.
    body, created = world.team_create_body([(alice, "admin")], org_seq=before_grant)
    create = make_link(chain=None, seq=1, prev=None, time=world.tick(), signer=alice.id, device=alice.device,
                       type_="team.create", body=body)
    rejected(world, [create], PolicyDenied, "may not create")
    body, created = world.team_create_body([(alice, "admin")])
    created.links.append(make_link(chain=None, seq=1, prev=None, time=world.tick(), signer=alice.id,
                                   device=alice.device, type_="team.create", body=body))
    world.replay_team(created.links)
    # The NCC override is judged the same way: nina acts as NCC only from the org state that made her one.
    t = world.create_team(world.founder, [(world.founder, "admin")])
    nina = world.admit("nina")
    before_nina = world.org_seq
    world.role(world.founder, nina, "ncc")  # proposed (alice is NCC too)...
    world.role(alice, nina, "ncc")  # ...and put in force by alice
    link = world.add(t, nina, bob, "reader", keyless=True, org_seq=before_nina + 1, append=False)
    rejected(world, [*t.links, link], PolicyDenied, "may not add")
    world.add(t, nina, bob, "reader", keyless=True)
    world.replay_team(t.links)
    # Members added must be admitted at the named state too.
    carol = world.person("carol")
    before_carol = world.org_seq
    world.join(carol, world.invite(world.founder))
    link = world.add(t, world.founder, carol, "reader", org_seq=before_carol + 1, append=False)
    rejected(world, [*t.links, link], ChainError, "not an admitted member")
    world.add(t, world.founder, carol, "reader")
    world.replay_team(t.links)


def test_an_org_role_ending_is_judged_by_the_links_time(world: MWorld) -> None:
    nina, bob = world.admit("nina"), world.admit("bob")
    until = world.time + 500
    world.role(world.founder, nina, "ncc", until=until)
    t = world.create_team(world.founder, [(world.founder, "admin")])
    world.add(t, nina, bob, "reader", keyless=True, time=until - 1)
    world.replay_team(t.links)
    t.links.pop()
    world.add(t, nina, bob, "reader", keyless=True, time=until)
    rejected(world, t.links, PolicyDenied, "may not add")


# == devices and time ===============================================================================


def test_links_signed_by_a_device_revoked_before_the_links_time(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    phone = world.add_device(world.founder, "phone")
    world.add(t, world.founder, bob, "reader", by=phone)  # signed while the phone was active
    invite = world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(b"p" * 32),
                                                          "expires": world.time + 1000, "note": ""}, by=phone)
    world.revoke_device(world.founder, phone)
    revoked_at = world.time
    # The older chains still replay: what the phone signed before its revocation stands.
    world.replay_team(t.links)
    assert invite in world.org_links and world.org().seq == invite.seq
    # After the revocation nothing it signs is accepted, in any chain.
    carol = world.admit("carol")
    link = world.team_role(t, world.founder, alice, "reader", by=phone, append=False)
    rejected(world, [*t.links, link], ChainError, "not an active device")
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(b"q" * 32),
                                                 "expires": world.time + 1000, "note": ""}, by=phone)
    expect(ChainError, world.org, "not an active device")
    world.org_links.pop()
    # Nor what it signs dated exactly at the revocation; and a device added later cannot sign earlier.
    link = world.add(t, world.founder, carol, "reader", by=phone, time=revoked_at, append=False)
    rejected(world, [*t.links, link], ChainError, "not an active device")
    tablet = world.add_device(world.founder, "tablet")
    link = world.team_role(t, world.founder, alice, "reader", by=tablet, time=revoked_at, append=False)
    rejected(world, [*t.links, link], ChainError, "not an active device")


# == document headers: who could write at a team state ================================================


def test_who_could_write_at_a_team_state(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    compa = world.admit("compa", role="compa")
    until = world.time + 1000
    world.add(t, world.founder, bob, "reader")  # seq 2
    world.team_role(t, world.founder, bob, "writer", until=until)  # seq 3
    world.add(t, world.founder, compa, "reader")  # seq 4
    world.remove(t, world.founder, alice, [world.founder, bob, compa])  # seq 5, generation 2
    state = world.replay_team(t.links)
    org = world.org()
    now = world.time

    def can(seq: int, who: Person, gen: int, at: int = now) -> bool:
        act = Act(who.id, who.device.device_id, at, "doc.write", team_seq=seq, gen=gen)
        return POLICY.entitled(act, org, world.members(), state)

    assert can(1, alice, 1) and can(4, alice, 1)  # alice wrote while she was a writer
    assert not can(5, alice, 2) and not can(5, alice, 1)  # removed: no state after that lets her
    assert not can(2, bob, 1) and can(3, bob, 1) and can(5, bob, 2)  # a reader until seq 3
    assert not can(3, bob, 1, at=until)  # the role's end counts at the header's time
    assert not can(5, bob, 1)  # generation 1 is not the key of state 5
    assert not can(6, bob, 2)  # a state the chain does not have
    assert not can(1, bob, 1)  # not in the team yet
    assert not can(4, compa, 1)  # compas only read
    assert can(5, world.founder, 2)  # admins write
    # Org roles are taken at the org state current at the act's time: a later compa grant does not reach
    # back, but it counts for what bob signs after it.
    world.role(world.founder, bob, "compa")
    org = world.org()
    assert can(5, bob, 2)
    assert not can(5, bob, 2, at=world.time)


# == rotation reasons ===============================================================================


def test_rotation_reasons_after_expiry(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    until = world.time + 1000
    world.add(t, world.founder, bob, "reader", until=until)
    state = world.replay_team(t.links)
    members = world.members()
    assert state.rotation_reasons(world.time, members, world.org()) == []
    # Expiry: bob's role ends while he holds the current key.
    reasons = state.rotation_reasons(until, members, world.org())
    assert len(reasons) == 1 and bob.id in reasons[0] and "role ended" in reasons[0]
    assert state.rotation_reasons(until - 1, members, world.org()) == []


def test_rotation_reasons_after_a_device_revocation(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    phone = world.add_device(alice, "phone")
    world.add(t, world.founder, bob, "reader")
    boxed_at = world.time
    world.revoke_device(alice, phone)  # alice's PUK rolls after her box was made
    revoked_at = world.time
    # Replaying the chain as it was (made before the revocation) still passes...
    state = world.replay_team(t.links)
    members = world.members()
    assert state.rotation_reasons(boxed_at, members, world.org()) == []
    # ...but from the revocation on, the current key must be rotated (only the replay of a
    # share judges the revocation's own second leniently).
    assert state.rotation_reasons(revoked_at, members, world.org(), tolerant=True) == []
    reasons = state.rotation_reasons(revoked_at, members, world.org())
    assert len(reasons) == 1 and alice.id in reasons[0] and "revoked a device" in reasons[0]
    carol = world.admit("carol")
    link = world.add(t, world.founder, carol, "reader", append=False)
    rejected(world, [*t.links, link], ChainError, "rotated before it is shared")
    # A box sealed to alice's old PUK is not accepted in a rotation either.
    stale = TeamKey.generate(t.team_id, 2)
    old_box = stale.seal_for(alice.id, 1, PukKeys.generate(1).box_public)
    body = {"gen": 2, "canary": stale.canary, "prev": seal_history(stale, t.key),
            "boxes": [world.box_commit(stale, world.founder)[0], world.box_commit(stale, bob)[0],
                      {"member": alice.id, "puk_gen": 1, "hash": box_hash(old_box)}]}
    link = world.team_link(t, bob, "team.rotate", {"key": body}, append=False)
    rejected(world, [*t.links, link], ChainError, "current key")
    world.rotate(t, bob, [world.founder, alice, bob])
    state = world.replay_team(t.links)
    assert state.rotation_reasons(world.time, world.members(), world.org()) == []
    assert state.boxes[(2, alice.id)].puk_gen == 2


def test_a_revocation_dated_like_an_earlier_team_link_keeps_the_team_replayable(
        team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    phone = world.add_device(alice, "phone")
    world.add(t, world.founder, bob, "reader")  # boxes the current key; alice's box is sealed to her PUK 1
    boxed_at = world.time
    world.replay_team(t.links)
    # Afterwards alice revokes her phone; the server accepts the link dated in the same second.
    world.revoke_device(alice, phone, time=boxed_at)
    assert replay_member(alice.chain).puk_gen == 2
    # The team chain is the one every client already verified: it must still replay (and from now on
    # ask for a rotation, since alice's old member key could open the current team key).
    state = world.replay_team(t.links)
    assert state.seq == len(t.links)
    assert any(alice.id in r for r in state.rotation_reasons(boxed_at + 10, world.members(), world.org()))


def test_no_rotation_reason_for_a_box_made_after_the_revocation(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, _, bob, t = team
    phone = world.add_device(bob, "phone")
    world.revoke_device(bob, phone)  # before bob is boxed anything: his box is sealed to the new PUK
    world.add(t, world.founder, bob, "reader")
    state = world.replay_team(t.links)
    assert state.boxes[(1, bob.id)].puk_gen == 2
    assert state.rotation_reasons(world.time, world.members(), world.org()) == []
    # A box sealed to the PUK bob revoked is refused outright.
    t.links.pop()
    stale = t.key.seal_for(bob.id, 1, PukKeys.generate(1).box_public)
    world.team_link(t, world.founder, "team.add", {"member": bob.id, "role": "reader", "until": None,
                                                    "key": {"gen": 1, "boxes": [{"member": bob.id, "puk_gen": 1,
                                                                                 "hash": box_hash(stale)}]}})
    rejected(world, t.links, ChainError, "current key")


def test_rotation_reasons_after_removal_and_leave(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc")
    world.add(t, world.founder, bob, "reader")
    base = list(t.links)
    world.remove(t, nina, alice, None)  # removal without rotation (nina holds no key)
    reasons = world.replay_team(t.links).rotation_reasons(world.time, world.members(), world.org())
    assert any("not rotated" in r for r in reasons) and any(f"{alice.id} was removed" in r for r in reasons)
    t.links = list(base)
    world.team_link(t, bob, "team.leave", {})
    reasons = world.replay_team(t.links).rotation_reasons(world.time, world.members(), world.org())
    assert any("not rotated" in r for r in reasons) and any(f"{bob.id} was removed" in r for r in reasons)
    t.links = list(base)
    world.remove(t, world.founder, alice, [world.founder, bob])  # a holder rotates: nothing pending
    assert world.replay_team(t.links).rotation_reasons(world.time, world.members(), world.org()) == []


def test_replaying_older_states_is_stable(team: tuple[MWorld, Person, Person, Team]) -> None:
    """Every prefix of a valid history replays, whatever happened later in the member and org chains."""
    world, alice, bob, t = team
    world.add(t, world.founder, bob, "reader")
    phone = world.add_device(bob, "phone")
    world.remove(t, world.founder, alice, [world.founder, bob])
    world.revoke_device(bob, phone)
    world.role(world.founder, bob, "compa")
    world.rotate(t, world.founder, [world.founder, bob])
    for n in range(1, len(t.links) + 1):
        state = world.replay_team(t.links[:n])
        assert state.seq == n
    assert replay_org(world.org_links, world.members(), POLICY).roles_of(bob.id) == {"compa"}
    state = world.replay_team(t.links)
    assert state.role_of(bob.id, world.time) == "reader"  # kept in the chain, capped by the org role
    assert not POLICY.team_allows(world.org().roles_of(bob.id), state.role_of(bob.id, world.time), "doc.write")


# == orphaned teams: a re-key when no member holds the key =====================================


def test_an_orphaned_team_is_re_keyed_by_one_of_its_admins(team: tuple[MWorld, Person, Person, Team]) -> None:
    """The founder (NCC) holds the key alone; an NCC member outside the team adds an admin and a reader
    without keys and removes the founder: no member holds the key, so nobody could rotate. Only an
    admin of the team may then re-key it: a `team.rotate` without the old key, no history, boxed to
    the members who are not waiting for a share plus the admin itself."""
    world, alice, bob, t = team
    nina, erin = world.admit("nina"), world.admit("erin")
    world.role(world.founder, nina, "ncc")
    world.team_link(t, nina, "team.remove", {"member": alice.id, "key": None})  # alice out, no rotation
    world.add(t, nina, erin, "admin", keyless=True)
    world.add(t, nina, bob, "reader", keyless=True)
    world.team_link(t, nina, "team.remove", {"member": world.founder.id, "key": None})
    state = world.replay_team(t.links)
    assert state.key_holders(world.org(), world.org_seq, world.time, POLICY) == set()
    good = list(t.links)

    body, _ = world.new_generation(t, [erin], history=False)
    world.team_link(t, bob, "team.rotate", {"key": body})  # a reader may not
    rejected(world, t.links, PolicyDenied, "only one of its admins")
    t.links[:] = good
    body, _ = world.new_generation(t, [erin], history=True)  # it has no old key to carry
    world.team_link(t, erin, "team.rotate", {"key": body})
    rejected(world, t.links, ChainError, "must not carry a previous key")
    t.links[:] = good
    body, _ = world.new_generation(t, [erin, bob], history=False)  # bob waits for a share: not boxed
    world.team_link(t, erin, "team.rotate", {"key": body})
    rejected(world, t.links, ChainError, "do not match")
    t.links[:] = good

    body, key = world.new_generation(t, [erin], history=False)
    world.team_link(t, erin, "team.rotate", {"key": body})
    t.key = key
    state = world.replay_team(t.links)
    assert state.generation == 2 and state.rekeyed == {2: erin.id} and state.rotation_reasons(
        world.time, world.members(), world.org()) == []
    assert state.pending_share == {bob.id: nina.id} and state.holds_key(erin.id, world.time)
    world.share(t, erin, bob)
    assert world.replay_team(t.links).holds_key(bob.id, world.time)


def test_a_non_holder_may_not_re_key_while_a_member_holds_the_key(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    erin = world.admit("erin")
    world.add(t, world.founder, erin, "admin", keyless=True)  # a holder adding without a box is refused...
    rejected(world, t.links, ChainError, "must box")
    t.links.pop()
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc")
    world.add(t, nina, erin, "admin", keyless=True)  # ...an NCC member outside the team may
    body, _ = world.new_generation(t, [world.founder, alice], history=False)
    world.team_link(t, erin, "team.rotate", {"key": body})
    rejected(world, t.links, PolicyDenied, "only a holder")
