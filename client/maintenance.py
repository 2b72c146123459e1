"""Pending key work any key holder's client does on its next run: rotations (after a removal, a
revoked device, an ended term), key shares to members added by a non-holder, the daily keystore
attestation, and the audit key of a Security Team member."""

from __future__ import annotations

from client.audit.keys import publish_audit_key
from client.client import Client
from client.view import team_link_time
from security.authority import POLICY
from vault.acts import Act
from vault.chains import MemberState, TeamState
from vault.chains.coalitionspace import departed
from vault.errors import ChainError, Conflict, PolicyDenied
from vault.teamkeys import box_hash
from vault.wire.schemas import AttestRequest, Ok


async def remove_departed(s: Client, team: TeamState, keep: str | None = None) -> TeamState:
    """In a coalition space, on the host's side: for each host member the space still lists whom this organization
    removed (``coalitionspace.departed``; ``keep``: one this caller removes itself), the explicit removal a guest can
    judge (``coalition.remove`` with ``departed``, no key: the rotation is due after it) before any rotation, which
    the judge refuses while one is listed (session 17, review 17). Returns the space as it is then."""
    view = await s.chains.view()
    for mid in departed(team, view.org, view.org.seq):
        if mid != keep and team.role_of(s.session.me, s.session.now()) is not None and s.session.me not in team.guests:
            await s.chains.append_team(team, "coalition.remove", {"member": mid, "departed": True, "key": None})
            team = (await s.chains.view()).teams[team.team_id]
    return team


async def rotate(s: Client, team: TeamState) -> bool:
    """A new key generation; True when it was a re-key (no member held the key: a fresh key
    without history, which only an admin of the team may make)."""
    team = await remove_departed(s, team)
    view = await s.chains.view()
    rekey = not team.holds_key(s.session.me, s.session.now())
    old = None if rekey else await s.keys.team_key(team, team.generation)
    body, boxes = s.keys.new_generation(team, view, old)
    await s.chains.append_team(team, "team.rotate", {"key": body}, boxes)  # the chain decides who may re-key
    return rekey


async def maintain(s: Client) -> list[str]:
    """Pending work any key holder's client does on its next run: rotations, key shares."""
    done: list[str] = []
    view = await s.chains.view()
    await attest_keystore(s)
    for team in list(view.teams.values()):
        t = team_link_time(s.session.now(), team, view.org)  # a rotation is judged when it will be dated
        if not team.holds_key(s.session.me, t):
            if team.role_of(s.session.me, t) == "admin" and not team.key_holders(view.org, view.org.seq, t, POLICY):
                s.session.warnings.append(f"no member holds the key of team {team.name}: re-key it with "
                                          f"`mvault team rotate {team.name}` (a fresh key: what was written "
                                          "before stays readable only to those who held the old keys)")
            continue
        try:
            if team.rotation_reasons(t, view.members, view.org):
                await rotate(s, team)
                done.append(f"rotated the key of team {team.name}")
                view = await s.chains.view()
                team = view.teams[team.team_id]
            for mid, adder in sorted(team.pending_share.items()):
                # Share only if whoever added them may still add members now (the chain judged
                # the add at the states it named; a key leaves only if the judge agrees today).
                t = team_link_time(s.session.now(), team, view.org)
                adder_ms = view.members.get(adder)
                devices = [d.device_id for d in adder_ms.active_devices()] if adder_ms else []
                may_add = bool(devices) and POLICY.entitled(Act(adder, devices[0], t, "team.add"), view.org,
                                                            view.members, team)
                if not (may_add and mid in POLICY.team_members(team, view.org, view.org.seq, t)):
                    s.session.warnings.append(f"not sharing team {team.name}'s key with {view.name_of(mid)}: "
                                              f"{view.name_of(adder)} may no longer add members")
                    continue
                await share(s, team, view.members[mid])
                done.append(f"shared the key of team {team.name} with {view.name_of(mid)}")
                view = await s.chains.view()
                team = view.teams[team.team_id]
            for mid in sorted(m for m, gen in team.withheld.items() if gen == team.generation):
                # Left out of a rotation while a cut device held their key: shared once they revoked it.
                if view.org.incidents.compromised(view.members[mid], team_link_time(s.session.now(), team, view.org)) \
                        is None:
                    await share(s, team, view.members[mid])
                    done.append(f"shared the key of team {team.name} with {view.name_of(mid)}")
                    view = await s.chains.view()
                    team = view.teams[team.team_id]
        except (Conflict, PolicyDenied) as e:  # someone else did it first, or we may not: not fatal
            s.session.warnings.append(f"could not finish pending work in team {team.name}: {e}")
    try:
        published = await publish_audit_key(s, await s.chains.view())
    except (Conflict, PolicyDenied, ChainError) as e:
        s.session.warnings.append(f"could not publish the audit key: {e}")
        published = None
    if published:
        done.append(published)
    return done


async def attest_keystore(s: Client) -> None:
    """Once a day, tell the Security Team this device's keystore KDF parameters (rule keystore-kdf)."""
    pins = s.session.home.pins()
    day = s.session.now() // 86400
    if pins.log.get("attested") == day:
        return
    params = s.session.home.keystore_params()
    await s.session.api.post("/api/v1/audit/attest", AttestRequest("keystore", time_cost=params.time_cost,
                                                                   memory_kib=params.memory_kib,
                                                                   parallelism=params.parallelism), Ok)
    pins = s.session.home.pins()
    pins.log["attested"] = day
    s.session.home.save_pins(pins)


async def share(s: Client, team: TeamState, member: MemberState) -> None:
    key = await s.keys.team_key(team, team.generation)
    box = key.seal_for(member.member_id, member.puk_gen, member.puk_box_public, key.name_key)
    await s.chains.append_team(team, "team.share", {
        "member": member.member_id,
        "key": {"gen": team.generation,
                "boxes": [{"member": member.member_id, "puk_gen": member.puk_gen, "hash": box_hash(box)}]},
    }, {member.member_id: box})
