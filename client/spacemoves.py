"""The host's server move in its coalition spaces (``coalition.server``, vault/chains/spacemove.py; session 23).

- The host's side (``carry``): once the host's organization chain puts a new place in force (``org.server``), an
  NCC member whose device holds the host's coalition key for a space, and who is a member of it, signs the place
  with that key and carries it into the space's chain, so the space's guests, who never see the host's chain,
  learn it. ``mvault server announce-move`` does it when its link puts the move in force, and every later command of
  such an NCC member does it for a space still behind (``maintenance.maintain``).
- The guest's side (``follow``): a guest's verified view of the space names the place in force there; when it is
  not the one the guest's space config uses, the config is switched (its next command, or its watcher's next
  session, goes there) and the guest is told once. A place put in force by a link not newer than the one followed
  is never followed back.
"""

from __future__ import annotations

from dataclasses import replace

from client import coalitionkeys
from client.client import Client
from client.home import Home
from client.hostkey import carry_rekeys
from vault.chains import TeamState
from vault.chains.coalition import CoalitionKey, signed_statement
from vault.chains.spacemove import SpacePlace, move_statement
from vault.pin import Pin


def behind(team: TeamState, place: tuple[str, Pin]) -> bool:
    """Whether the space ``team`` (with a host key) does not yet name the place the host's chain puts in force."""
    if team.kind != "coalition" or team.host_key is None:
        return False
    return team.server is None or (team.server.url, team.server.pin) != place


async def carry(s: Client) -> tuple[list[str], list[str]]:
    """An NCC member's client: the host's move carried into every coalition space with a host key that is behind it:
    (what was done, the spaces this device could not carry it to: no key, or not in the space). Others: nothing."""
    done: list[str] = []
    left: list[str] = []
    view = await s.chains.view()
    place = view.org.server
    if place is None or view.org.outside is not None or "ncc" not in view.org.roles_of(s.session.me, s.session.now()):
        return done, left
    for team_id in sorted(view.teams):
        view = await s.chains.view()
        team, me = view.teams[team_id], s.session.me
        if not behind(team, (place.url, place.pin)):
            continue
        if team.role_of(me, s.session.now()) is None:
            left.append(team.name)
            continue
        team = await carry_rekeys(s, team)  # the host's side takes no statement signed with a retired key
        seed = await coalitionkeys.seed(s, team.name)
        if seed is None or CoalitionKey(seed).public != team.host_key:
            left.append(team.name)
            continue
        statement = move_statement(team_id, view.org.root, place.url, place.pin, s.session.now())
        await s.chains.append_team(team, "coalition.server",
                                   {"statement": signed_statement(CoalitionKey(seed), statement)})
        done.append(f"carried the server move into coalition space {team.name}")
    return done, left


def follow(home: Home, team: TeamState, warnings: list[str]) -> str | None:
    """A guest's space ``home``: switch its config to the place the verified space ``team`` puts in force, if it is
    not the one used; what to tell the guest (None: nothing). A place put in force by a link not newer than the one
    this device follows is not followed (a warning says so)."""
    place: SpacePlace | None = team.server
    cfg = home.config()
    if place is None or (cfg.url, cfg.pin) == (place.url, place.pin):
        return None
    if place.seq <= cfg.server_seq:
        warnings.append(f"coalition space {team.name} puts {place.url} in force by link {place.seq}, older than the "
                        f"move this device follows (link {cfg.server_seq}, to {cfg.url}): staying at {cfg.url}")
        return None
    home.save_config(replace(cfg, url=place.url, cert_fp=place.pin.value.hex(), pin_kind=place.pin.kind,
                             server_seq=place.seq))
    return (f"the host's server of coalition space {team.name} moved to {place.url} (pin {place.pin}), signed with "
            f"the host's coalition key: this device uses it from your next command")
