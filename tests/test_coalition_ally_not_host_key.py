"""Session 17 (review 16's note): the space's host key (or one it retired) is never an ally's key. An ally keyed to
it would let whoever holds the host's coalition key sign as that ally (approve its "members", remove or expel its
guests). Refused in ``apply_rekey`` (an ally's ``coalition.rekey`` naming it) and in ``pin_ally`` (a
``coalition.ally`` pinning it), on the host's replay and on a guest's alike (``Coalition.both``). Chain level."""

from __future__ import annotations

import pytest

from tests.helpers.coalition_world import Coalition
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement
from vault.errors import VaultError
from vault.links import Link


def refused_by_both(c: Coalition, link: Link, match: str) -> None:
    for replay in c.both(link):
        with pytest.raises(VaultError, match=match):
            replay()


def test_an_ally_rekey_or_pin_to_the_host_key_is_refused_on_both_sides() -> None:
    c = Coalition(hosted=True)
    assert c.host_key is not None
    ally, alice, _ = c.ally_with_two_guests()
    to_host = signed_statement(ally.key, rekey_statement(ally.root, c.host_key.public, c.host.time))
    refused_by_both(c, c.host.team_link(c.space, alice, "coalition.rekey", dict(to_host), append=False),
                    "already pinned here")
    other = c.ally("other")
    refused_by_both(c, c.pin(other, key=c.host_key.public, append=False), "host's coalition key")
    # The host rekeys and a member carries it: the retired host key is refused as an ally's key too
    old = c.host_key
    new = c.rekey_host_key()
    root = c.host.org_links[0].hash
    c.host.team_link(c.space, c.writer, "coalition.rekey",
                     dict(signed_statement(old, rekey_statement(root, new.public, c.host.time))))
    assert c.state().host_key == new.public
    for key in (old, new):
        statement = signed_statement(ally.key, rekey_statement(ally.root, key.public, c.host.time))
        refused_by_both(c, c.host.team_link(c.space, alice, "coalition.rekey", dict(statement), append=False),
                        "already pinned here")
        refused_by_both(c, c.pin(other, key=key.public, append=False), "host's coalition key")
    # an ordinary rekey and pin still work
    fresh = CoalitionKey.generate()
    c.host.team_link(c.space, alice, "coalition.rekey",
                     dict(signed_statement(ally.key, rekey_statement(ally.root, fresh.public, c.host.time))))
    assert c.state().allies[ally.root].key == c.outside(c.space.links).allies[ally.root].key == fresh.public
