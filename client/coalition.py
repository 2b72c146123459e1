"""Coalition spaces, each organization on its own server (docs/lifecycle.md section 2): the ally's pairing code
(its coalition key, recorded by its NCC in its own chain) and the host's space with the allies it pins.

The pairing code travels out of band, between the organizations' leaders (in person, as invites do):
``mvault-ally:1:<org root, 64 hex>:<coalition key, 64 hex>:<organization name>``. The host checks nothing in it
against a server: the code *is* the pin (the ally's root and key), so it must come from the ally's leaders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from client import admin, coalitionkeys, guests, hostkey
from client.client import Client
from client.view import View
from security.stalekeys import stale_keys
from vault.chains import TeamState, check_name
from vault.chains.coalition import CoalitionKey
from vault.errors import NotFound, VaultError

PREFIX = "mvault-ally:1:"


@dataclass(frozen=True)
class Pairing:
    """An allied organization as its pairing code gives it."""

    org_root: bytes
    key: bytes
    name: str

    @property
    def code(self) -> str:
        return f"{PREFIX}{self.org_root.hex()}:{self.key.hex()}:{self.name}"

    @classmethod
    def parse(cls, code: str) -> Pairing:
        if not code.startswith(PREFIX):
            raise VaultError(f"not a pairing code (it starts with {PREFIX!r})")
        parts = code[len(PREFIX):].split(":", 2)
        try:
            if len(parts) != 3 or len(parts[0]) != 64 or len(parts[1]) != 64:
                raise ValueError
            root, key = bytes.fromhex(parts[0]), bytes.fromhex(parts[1])
        except ValueError:
            raise VaultError("malformed pairing code: expected mvault-ally:1:ROOT:KEY:NAME (64 hex digits each)"
                             ) from None
        return cls(root, key, check_name(parts[2], "organization name"))


async def pairing_code(s: Client, name: str) -> Pairing | None:
    """The ally's side (NCC): the organization's coalition key for the space ``name``, made and recorded in its own
    chain (``org.coalition``) the first time; the key's seed stays in this device's keystore, and this device seals it
    to every NCC member (``client/coalitionkeys.py``) once it is recorded. Two people (rule
    two-person): with another NCC member, the first run proposes the key (None), and the same command by a second
    NCC member signs the same link, which records it; then anyone of the NCC prints the code (it is public)."""
    check_name(name, "coalition space name")
    view = await s.chains.view()
    if name not in view.org.coalitions:
        seed = s.session.secrets.coalitions.get(name)
        proposals = {act: by for act, (by, _, _) in view.org.pending(view.members, s.session.now()).items()
                 if act[:2] == ("org.coalition", name)}  # none of a device revoked or cut (twoperson)
        pending = [act for act, by in proposals.items() if by != s.session.me]
        if s.session.me in proposals.values():
            return None  # this member's proposal waits for a second NCC member
        if seed is None and pending:  # a second NCC member: sign the key another one proposed
            _, _, key_hex, host_hex = pending[0]
            await s.chains.append_org("org.coalition", {"name": name, "key": bytes.fromhex(key_hex),
                                                        "host": bytes.fromhex(host_hex) if host_hex else None})
        else:
            key = CoalitionKey.generate() if seed is None else CoalitionKey(seed)
            s.session.secrets.coalitions[name] = key.seed
            s.session.home.save_secrets(s.session.secrets)  # kept before it is recorded: never a key on record we lost
            await s.chains.append_org("org.coalition", {"name": name, "key": key.public, "host": None})
        view = await s.chains.view()
        if name not in view.org.coalitions:
            return None
    await coalitionkeys.share_missing(s)  # the key holder seals it to the NCC (the others: nothing to seal)
    return Pairing(view.org.root, view.org.coalitions[name].key, view.org.name)


async def create(s: Client, name: str, codes: list[str]) -> TeamState | None:
    """The host's side (NCC): the host's own coalition key for the space (``org.coalition``, host = this
    organization's root: client/hostkey.py), a team of kind ``coalition`` whose ``team.create`` carries it
    (``host_key``), and a ``coalition.ally`` pin for each pairing code (with another NCC member, a proposal each:
    ``pin``, by a second NCC member, puts them in force). None: the key is only proposed (with another NCC member,
    the same command by a second one records it and creates the space)."""
    allies = [Pairing.parse(c) for c in codes]  # every code checked before anything is signed
    check_name(name, "coalition space name")
    if any(t.name == name for t in (await s.chains.view()).teams.values()):
        raise VaultError(f"a team named {name!r} exists already")
    key = await hostkey.record(s, name)
    if key is None:
        return None
    team = await admin.create_team(s, name, "coalition", host_key=key)
    return await _pin(s, team, allies)


async def pin(s: Client, name: str, codes: list[str]) -> TeamState:
    """The host's side (NCC): pin allies in an existing space, or sign as the second NCC member the pins another
    proposed (the same pairing codes)."""
    allies = [Pairing.parse(c) for c in codes]
    team = await _pin(s, _space((await s.chains.view()).team_by_name(name)), allies)
    await coalitionkeys.share_missing(s)  # the host's key, if this device holds it, to NCC members without a box
    return team


async def _pin(s: Client, team: TeamState, allies: list[Pairing]) -> TeamState:
    for ally in allies:
        await s.chains.append_team(team, "coalition.ally", {"ally": ally.org_root, "key": ally.key, "name": ally.name})
        team = (await s.chains.view()).teams[team.team_id]
    return team


async def add(s: Client, name: str, who: str, role: str, until: int | None, approval: str | None = None) -> bool:
    """A space admin adds ``who`` (``MEMBER`` or ``MEMBER@ORG``): a member of this organization as to any team, or
    an allied organization's member with that organization's approval (``approval``, its guest code)."""
    view = await s.chains.view()
    space = _space(view.team_by_name(name))
    member, _, org = who.partition("@")
    allied = org in {a.name for a in space.allies.values()}  # an ally may bear the host's name: the pin decides
    own = approval is not None and guests.GuestCode.parse(approval).ally == view.org.root
    if own and not allied and org in ("", view.org.name):  # the host's own approval (`coalition approve` here)
        assert approval is not None
        return await admin.add_member(s, name, member, role, until, guests.GuestCode.parse(approval).approval)
    if approval is not None or allied or org and org != view.org.name:
        if approval is None:
            raise VaultError(f"adding a member of {org!r} needs their organization's approval: its NCC runs `mvault "
                             f"coalition approve {name} {member} --space {space.team_id}` and gives you the guest "
                             "code (--approval)")
        return await guests.add_guest(s, space, who, role, until, approval)
    return await admin.add_member(s, name, member, role, until)


async def remove(s: Client, name: str, who: str) -> bool:
    """The host's side: a space admin removes a member (``coalition.remove``), rotating the key when it holds it."""
    view = await s.chains.view()
    space = _space(view.team_by_name(name))
    member, _, org = who.partition("@")
    roots = {a.org_root for a in space.allies.values() if a.name == org}
    guests = [g.member for g in space.guests.values() if g.ally in roots and view.chosen_name(g.member) == member]
    if len(guests) == 1:  # an ally's member, by the name their own chain gives and the ally's pinned name
        member = guests[0]
    return await admin.remove_from_team(s, name, member, "coalition.remove")


def _space(t: TeamState) -> TeamState:
    if t.kind != "coalition":
        raise NotFound(f"team {t.name} is not a coalition space")
    return t


async def spaces(s: Client) -> list[dict[str, Any]]:
    view = await s.chains.view()
    now = s.session.now()
    stale = stale_keys(view.org, now, view.members)
    return [{"space": t.team_id, "name": t.name, "allies": len(t.allies), "members": len(t.active_members(now)),
             "guests": len(set(t.guests) & t.active_members(now)),
             "key": "stale" if t.name in stale else "current" if t.name in view.org.coalitions else "none"}
            for t in sorted(view.teams.values(), key=lambda t: t.name) if t.kind == "coalition"]


def key_state(view: View, name: str, now: int) -> dict[str, Any] | None:
    """The coalition key this organization's chain records for ``name``: its key, and the members it was sealed to
    who no longer hold NCC (``stale``: replaced on an NCC key holder's next command; empty: current)."""
    entry = view.org.coalitions.get(name)
    if entry is None:
        return None
    stale = stale_keys(view.org, now, view.members).get(name, ())
    return {"key": entry.key.hex(), "stale": [view.name_of(m) for m in stale]}


async def show(s: Client, name: str) -> dict[str, Any]:
    view = await s.chains.view()
    t = _space(view.team_by_name(name))
    now = s.session.now()
    allies = {root: a.name for root, a in t.allies.items()}
    return {"space": t.team_id, "name": t.name, "generation": t.generation,
            "coalition_key": key_state(view, t.name, now),
            "allies": [{"name": a.name, "org_root": a.org_root.hex(), "key": a.key.hex(),
                        "pinned_by": view.name_of(a.by)} for a in t.allies.values()],
            "members": [{"member": m.member_id, "name": view.name_of(m.member_id), "role": m.role,
                         "guest_of": view.guest_of(m.member_id),
                         "organization": allies[t.guests[m.member_id].ally] if m.member_id in t.guests
                         else view.org.name}
                        for m in sorted(t.members.values(), key=lambda m: view.name_of(m.member_id)) if m.active(now)]}
