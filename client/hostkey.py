"""The host's own coalition key for a space it creates (docs/lifecycle.md "The host's members' entry, verifiable by a
guest"): recorded in the host's chain as ``org.coalition {name, key, host: own root}`` (NCC, two-person), carried by
the space's ``team.create`` (``host_key``); it signs the host's ``coalition.admit`` of each host member's entry (and
promotion to admin) and the host's ``coalition.remove`` of a member its organization removed. A guest's client,
which never sees the host's chain, judges the host's members' entry with it as it judges an ally's.

The key is held like an ally's (client/coalitionkeys.py): kept by the device that made it, sealed to every NCC
member in ``org.coalition.share``, opened from the box when first needed.
"""

from __future__ import annotations

from client import coalitionkeys
from client.client import Client
from client.maintenance import remove_departed
from vault.chains import TeamState
from vault.chains.coalition import CoalitionKey, admit_statement, remove_statement, signed_statement
from vault.encoding import Value
from vault.errors import ChainError, VaultError


async def record(s: Client, name: str) -> bytes | None:
    """The host's coalition key for the space ``name``: made and recorded in this organization's chain the first time
    (the seed kept in this device's keystore before the link is posted); with another NCC member, the first run only
    proposes it (None) and the same command by a second NCC member records it (rule two-person)."""
    view = await s.chains.view()
    entry = view.org.coalitions.get(name)
    if entry is not None:
        if entry.host != view.org.root:
            raise VaultError(f"this organization's coalition key {name!r} is an ally's for another host's space: "
                             "name this space otherwise")
        return entry.key
    proposals = {act: by for act, (by, _, _) in view.org.pending(view.members, s.session.now()).items()
                 if act[:2] == ("org.coalition", name)}  # none of a device revoked or cut (twoperson)
    if s.session.me in proposals.values():
        return None  # waits for a second NCC member
    pending = [act for act, by in proposals.items() if act[3] == view.org.root.hex()]
    if pending:  # a second NCC member signs the key another one proposed
        key = bytes.fromhex(pending[0][2])
    else:
        made = CoalitionKey.generate()
        s.session.secrets.coalitions[name] = made.seed
        s.session.home.save_secrets(s.session.secrets)  # kept before it is recorded: never a key on record we lost
        key = made.public
    await s.chains.append_org("org.coalition", {"name": name, "key": key, "host": view.org.root})
    entry = (await s.chains.view()).org.coalitions.get(name)
    if entry is None:
        return None
    await coalitionkeys.share_missing(s)  # the key holder seals it to the NCC (the others: nothing to seal)
    return entry.key


async def carry_rekeys(s: Client, team: TeamState) -> TeamState:
    """The host's rekeys of its coalition key for the space ``team`` (``org.coalition`` with ``replaces``) that the
    space does not hold yet, carried into it one at a time and in their order: a ``coalition.rekey`` with the
    statement each ``org.coalition`` holds (docs/lifecycle.md "The host's members' entry", session 16). Until then
    the host's side takes no statement signed with the space's key and guests do not know the new one. Returns the
    space's state after (the caller's ``team`` otherwise)."""
    view = await s.chains.view()
    if team.host_key is None or team.role_of(s.session.me, s.session.now()) is None:
        return team
    org_links = None
    while (retired := next((r for r in view.org.coalitions_retired.get(team.name, [])
                            if r.entry.key == team.host_key and r.entry.host == view.org.root), None)) is not None:
        org_links = org_links or await s.chains.links("/api/v1/chains/org")
        made = org_links[retired.seq - 1] if retired.seq <= len(org_links) else None
        rekey = made.body.raw.get("rekey") if made is not None and made.type == "org.coalition" else None
        if made is None or made.seq != retired.seq or not isinstance(rekey, dict):
            raise ChainError(f"the organization chain's rekey of the coalition key of space {team.name} is missing")
        await s.chains.append_team(team, "coalition.rekey", {"statement": rekey.get("statement"),
                                                             "sig": rekey.get("sig")})
        view = await s.chains.view()
        team = view.teams[team.team_id]
    return team


async def _key(s: Client, team: TeamState, what: str) -> CoalitionKey:
    seed = await coalitionkeys.seed(s, team.name)
    if seed is None or CoalitionKey(seed).public != team.host_key:
        raise VaultError(f"{what} in coalition space {team.name} needs this organization's approval, signed with its "
                         "coalition key for the space, which you do not hold: an NCC member runs `mvault coalition "
                         f"approve {team.name} MEMBER --space {team.team_id} --role ROLE` and you add with `mvault "
                         "coalition add NAME MEMBER --approval CODE`")
    return CoalitionKey(seed)


async def approval(s: Client, team: TeamState, member: str, role: str, until: int | None) -> dict[str, Value]:
    """The host's ``coalition.admit`` of its own ``member`` for this space, role and end, signed here (the caller is
    an NCC member whose device holds the key)."""
    key = await _key(s, team, "a member's entry")
    root = (await s.chains.view()).org.root
    return signed_statement(key, admit_statement(team.team_id, root, member, role, until, s.session.now()))


async def carry_removal(s: Client, member: str) -> list[str]:
    """After this organization removed ``member`` (``org.remove``): in every coalition space with a host key where
    the space still lists them (session 17: until an explicit removal, on the host's side too), a ``coalition.remove``
    carrying the host's signed removal, rotating the key when this member holds it, so the guests' clients drop them
    too; other members the organization removed before are removed first (``remove_departed``). Returns the spaces
    this device could not carry it to (no key, or not in the space), to name in a warning: the next command of a host
    key holder there removes them (``coalition.remove`` with ``departed``)."""
    left = []
    for team_id in sorted((await s.chains.view()).teams):
        view = await s.chains.view()
        team, now, me = view.teams[team_id], s.session.now(), s.session.me
        if team.kind != "coalition" or team.host_key is None or member not in team.members or member in team.guests:
            continue
        team = await carry_rekeys(s, team)  # the host's side takes no statement signed with a retired key
        team = await remove_departed(s, team, keep=member)  # others removed before: explicitly first (session 17)
        view = await s.chains.view()
        seed = await coalitionkeys.seed(s, team.name)
        if seed is None or CoalitionKey(seed).public != team.host_key or team.role_of(me, now) is None:
            left.append(team.name)
            continue
        statement = signed_statement(CoalitionKey(seed), remove_statement(team_id, view.org.root, member, now))
        body: dict[str, Value] = {"member": member, "statement": statement, "key": None}
        boxes: dict[str, bytes] = {}
        if team.holds_key(me, now):
            old = await s.keys.team_key(team, team.generation)
            body["key"], boxes = s.keys.new_generation(team, view, old, leaving=member)
        await s.chains.append_team(team, "coalition.remove", body, boxes)
    return left
