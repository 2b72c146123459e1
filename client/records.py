"""The signed records the security protocols ask for: vouches, key verifications, approvals and membership
reviews. Each is a chain link (``vault.chains.records``, ``team.review``) signed by this device, checked
locally against the verified state before it is posted, and replayed by every client that reads the chain.
"""

from __future__ import annotations

from client.client import Client
from client.maintenance import remove_departed
from client.view import member_fingerprint
from vault.chains import MemberState, TeamState, records_of
from vault.errors import NotFound, VaultError
from vault.links import Link


async def vouch(s: Client, name: str) -> MemberState:
    """Vouch for member ``name`` (rule vouching): an ``org.vouch`` link."""
    view = await s.chains.view()
    them = view.member_by_name(name)
    if them.member_id == s.session.me:
        raise VaultError("you cannot vouch for yourself")
    await s.chains.append_org("org.vouch", {"member": them.member_id})
    return them


async def record_verification(s: Client, them: MemberState) -> None:
    """Sign that this member compared safety numbers with ``them`` in person: an ``org.verify`` link carrying
    the key fingerprint this client shows for them (rule key-verification). Nothing when this very fingerprint
    was recorded already."""
    view = await s.chains.view()
    fp = member_fingerprint(them)
    if any(r.signer == s.session.me and r.subject == them.member_id and r.detail == fp.hex()
           for r in records_of(view.org, "org.verify")):
        return
    await s.chains.append_org("org.verify", {"member": them.member_id, "fingerprint": fp})


async def approve(s: Client, link: Link) -> None:
    """Approve the organization link ``link`` as the second person (rule two-person): an ``org.approve`` link."""
    await s.chains.append_org("org.approve", {"link": link.hash})


async def approve_team_link(s: Client, team_name: str, ref: str) -> tuple[TeamState, int, bytes]:
    """Approve a link of team ``team_name`` as the second person (rule two-person: admin grants and removals): a
    ``team.approve`` link. ``ref``: the start of the link's hash (8 hex characters or more, as a finding prints it)
    or its team sequence number; the link is looked up in the chain this client replayed. (team, seq, hash)."""
    view = await s.chains.view()
    team = view.team_by_name(team_name)
    if ref.isdigit() and len(ref) <= 7:
        found = [h for h, sg in team.signed.items() if sg.seq == int(ref)]
    elif len(ref) >= 8 and all(c in "0123456789abcdef" for c in ref.lower()):
        found = [h for h in team.signed if h.hex().startswith(ref.lower())]
    else:
        raise VaultError(f"{ref!r} is neither a team sequence number nor the start of a link hash (8+ hex characters)")
    if len(found) != 1:
        raise NotFound(f"no link {ref} in team {team.name}" if not found else f"{ref} names several links; give more")
    await s.chains.append_team(team, "team.approve", {"link": found[0]})
    return team, team.signed[found[0]].seq, found[0]


async def review(s: Client, team_name: str) -> tuple[TeamState, list[str]]:
    """Confirm team ``team_name``'s member list (rule membership-review): a ``team.review`` link carrying the
    digest of the list this client replayed; the member ids it confirms."""
    team = await remove_departed(s, (await s.chains.view()).team_by_name(team_name))  # coalition: explicit first
    view = await s.chains.view()
    await s.chains.append_team(team, "team.review", {"roster": team.roster(view.org)})
    return team, sorted(m for m in team.members if view.org.admitted(m))
