"""The rules ``offboarding`` and ``rotate-on-removal`` count a ``coalition.remove`` (issue 20): a guest removed from a
coalition space without a rotation in the same link (here the guest signs its own removal, carrying its
organization's signed statement, so it rotates nothing) must see the key rotate within ``hours``, like a member
removed from the organization; a removal that rotates in its own link is a new key generation. Real chain replays
of two organizations (tests/helpers/coalition_world.py)."""

from __future__ import annotations

import pytest

from tests.helpers.coalition_world import Coalition
from tests.helpers.rules import HOUR, audit, link_event, ok, only, result
from vault.links import Link


def removed_guest(c: Coalition) -> tuple[str, Link]:
    """alice, an ally's member, admitted to the space, then removed by her own organization's statement that she
    carries herself (no key: a removed member never boxes the next generation)."""
    ally = c.ally()
    c.pin(ally)
    alice = ally.member("alice", c.host)
    c.add(alice, c.approval(ally, alice))
    removal = c.host.team_link(c.space, alice, "coalition.remove",
                               {"member": alice.id, "statement": c.removal(ally, alice)})
    assert c.state().pending_rotation
    return alice.id, removal


@pytest.mark.parametrize(("hours", "level"), [(1, "warning"), (25, "violation")])
def test_a_removed_guest_still_holding_the_key(hours: int, level: str) -> None:
    c = Coalition()
    guest, removal = removed_guest(c)
    inp = audit(c.host, [c.space], [link_event(removal, team=c.space.team_id)], now=removal.time + hours * HOUR)
    f = only(result(inp, "offboarding"), level)
    assert f.subject == guest and "removed from coalition space" in f.message and "still holds" in f.message
    assert f.next_command == f"mvault team rotate {c.space.team_id}" and f.events == (0,)
    rotate = result(inp, "rotate-on-removal").findings
    assert [x.level for x in rotate] == [level] and guest in rotate[0].message


@pytest.mark.parametrize("hours", [30, 1])
def test_a_late_rotation_after_a_guests_removal_stays_reported(hours: int) -> None:
    c = Coalition()
    guest, removal = removed_guest(c)
    c.host.time += hours * HOUR
    rotation = c.host.rotate(c.space, c.admin, [c.admin, c.writer])
    events = [link_event(removal, team=c.space.team_id), link_event(rotation, team=c.space.team_id)]
    inp = audit(c.host, [c.space], events, now=rotation.time + 10 * 24 * HOUR)
    if hours == 1:
        ok(result(inp, "offboarding"))
        ok(result(inp, "rotate-on-removal"))
        return
    f = only(result(inp, "offboarding"), "violation")
    assert f.subject == guest and f"1d 6h after guest {guest} was removed from coalition space" in f.message, f.message
    assert f.events == (0, 1)
    r = only(result(inp, "rotate-on-removal"), "violation")
    assert r.subject == c.space.team_id and f"{guest} was removed by {guest} from the coalition space" in r.message


def test_a_removal_that_rotates_in_its_link_is_a_new_generation() -> None:
    """A host member leaves (the key must rotate); within the hour the admin removes a guest, rotating in the same
    link; a routine rotation a day later is not the late answer to the leave."""
    c = Coalition()
    ally = c.ally()
    c.pin(ally)
    alice = ally.member("alice", c.host)
    c.add(alice, c.approval(ally, alice))
    leave = c.host.team_link(c.space, c.writer, "team.leave", {})
    c.host.time += HOUR // 2
    removal = c.remove(alice, [c.admin])
    c.host.time += 30 * HOUR
    rotation = c.host.rotate(c.space, c.admin, [c.admin])
    events = [link_event(x, team=c.space.team_id) for x in (leave, removal, rotation)]
    inp = audit(c.host, [c.space], events, now=rotation.time + 10 * 24 * HOUR)
    ok(result(inp, "rotate-on-removal"))
    ok(result(inp, "offboarding"))
