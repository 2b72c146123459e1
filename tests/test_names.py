"""``client.names.Names``: ids in a message shown by name; commands with names as arguments (quoted for a
shell) only where a name alone names the thing and is safe to paste (issue 15, people). Real chain replays
(``MWorld``)."""

from __future__ import annotations

from client.names import Names
from client.view import View
from tests.helpers.chain_world import MWorld
from tests.helpers.rules import audit, circle_of


def test_names_in_messages_and_commands() -> None:
    world = MWorld()
    alice, twin, zoe, dash = (world.admit(n) for n in ("alice", "alice", "zoë", "-x"))
    phone = world.add_device(zoe, "phone")
    t = circle_of(world, (alice, "writer"))
    inp = audit(world, [t])
    names = Names(View(inp.org, dict(inp.members), dict(inp.teams)))

    unknown, link = "0" * 32, "ab" * 32
    text = names.text(f"member {zoe.id} and {alice.id} in team {t.team_id}; {unknown}; link {link}")
    assert text == (f"member zoë and alice ({alice.id[:8]}) in team {names.team(t.team_id)}; {unknown}; "
                    f"link {link}")  # a shared name shows the id's start; unknown ids and hashes stay
    assert names.device(phone.device_id) == "phone" and names.raw[twin.id] == "alice"

    assert names.command(f"mvault team remove {t.team_id} {zoe.id}") == \
        f"mvault team remove {names.team(t.team_id)} 'zoë'"
    assert names.command(f"mvault verify {alice.id}") == f"mvault verify {alice.id}"  # two are named alice
    assert names.command(f"mvault verify {dash.id}") == f"mvault verify {dash.id}"  # would read as an option
    # `device revoke NAME` looks NAME up among the reader's own devices: only zoë's reader gets the name
    assert names.command(f"mvault device revoke {phone.device_id}") == f"mvault device revoke {phone.device_id}"
    mine = Names(View(inp.org, dict(inp.members), dict(inp.teams)), zoe.id)
    assert mine.command(f"mvault device revoke {phone.device_id}") == "mvault device revoke phone"
