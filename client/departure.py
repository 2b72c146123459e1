"""``mvault incident departure``: a member leaves or is expelled, as one guided operation.

In order: the removal (the ``mvault remove`` path: an ``org.remove`` link, or its two-person proposal when
the member holds NCC or Security Team roles and a second NCC member exists; a runner without the NCC role
cannot sign it and is told who can), the rotations this device may do now (client/maintenance.py; a team
whose key this device does not hold is rotated by one of its key holders' next command), then what the
Security Team needs (SECURITY-PROTOCOLS.md, "after an incident"): the exposure report (client/audit/report.py:
every team, generation, document version and thread the member could decrypt, and what they fetched), who
to notify (the co-members of each of their teams), the trust graph (whom they invited, vouched for, added to
a team: links signed by them, read from the verified chains), and the incident record (client/incidents.py),
where the reason is kept: the organization chain's ``org.remove`` carries none.
"""

from __future__ import annotations

from typing import Any

from client import admin, maintenance
from client.audit import incidents
from client.audit.report import exposure
from client.client import Client
from client.view import View
from vault.chains import MemberState
from vault.errors import VaultError


async def _remove(s: Client, view: View, ms: MemberState) -> dict[str, Any]:
    """The removal, as far as this member can take it: ``status`` removed (with the org ``seq``), proposed
    (``needs``: the NCC members who can put it in force), or needs_ncc (this member is not NCC)."""
    org, now, mid = view.org, s.session.now(), ms.member_id
    om = org.members.get(mid)
    if om is not None and om.removed_at is not None:
        return {"status": "removed", "seq": None, "already": True, "time": om.removed_at}
    ncc = sorted((m for m in org.members if "ncc" in org.roles_of(m, now)), key=view.name_of)
    if s.session.me not in ncc:
        return {"status": "needs_ncc", "seq": None, "needs": ncc, "needs_names": [view.name_of(m) for m in ncc]}
    _, done = await admin.remove_member(s, mid, "")  # no reason in the chain: it stays in the private record
    after = await s.chains.view(refresh=True)
    if done:
        return {"status": "removed", "seq": after.org.seq, "already": False, "time": now}
    others = [m for m in ncc if m not in (s.session.me, mid)]
    return {"status": "proposed", "seq": after.org.seq, "needs": others,
            "needs_names": [view.name_of(m) for m in others]}


async def trust_graph(s: Client, view: View, mid: str) -> dict[str, list[dict[str, Any]]]:
    """Whom ``mid`` invited (invites claimed), vouched for (``org.vouch``), and added to a team (``team.add``
    links they signed). Team links are the server's, believed only where their hash is one the verified replay
    of the team's chain holds as signed by ``mid``."""
    invited = [{"member": i.used_by, "name": view.name_of(i.used_by), "seq": i.seq, "time": i.created}
               for i in view.org.invites.values() if i.by == mid and i.used_by is not None]
    vouched = [{"member": r.subject, "name": view.name_of(r.subject), "seq": r.seq, "time": r.time}
               for r in view.org.records if r.type == "org.vouch" and r.signer == mid]
    added = []
    for team in sorted(view.teams.values(), key=lambda t: t.name):
        if not any(sig.signer == mid for sig in team.signed.values()):
            continue
        for link in await s.chains.links(f"/api/v1/chains/team/{team.team_id}"):
            sig = team.signed.get(link.hash)
            if link.type == "team.add" and sig is not None and sig.signer == mid and sig.seq == link.seq:
                member = link.body.str_("member")
                added.append({"team": team.team_id, "team_name": team.name, "member": member,
                              "name": view.name_of(member), "seq": link.seq, "time": link.time})
    return {"invited": sorted(invited, key=lambda x: x["seq"]), "vouched": sorted(vouched, key=lambda x: x["seq"]),
            "added": added}


def notify_list(info: dict[str, Any]) -> list[dict[str, Any]]:
    """Who to tell: each co-member of the member's teams once, with the teams they shared."""
    shared: dict[str, list[str]] = {}
    for t in info["teams"]:
        for m in t["co_member_ids"]:
            shared.setdefault(m, []).append(t["name"])
    names = {m: n for t in info["teams"] for m, n in zip(t["co_member_ids"], t["co_members"], strict=True)}
    return [{"member": m, "name": names[m], "teams": sorted(ts)} for m, ts in sorted(shared.items(),
                                                                                   key=lambda x: names[x[0]])]


async def departure(s: Client, name: str, reason: str) -> dict[str, Any]:
    """Remove, rotate, report and record a departure of member ``name``: the ``--json`` object of the command."""
    view = await s.chains.view()
    incidents.records_team(s, view, write=True)  # refused before anything is done, not after the removal
    ms = view.member_by_name(name)
    if ms.member_id == s.session.me:
        raise VaultError("you cannot open a departure incident about yourself")
    generations = {t.team_id: t.generation for t in view.teams.values()}
    removal = await _remove(s, view, ms)
    await maintenance.maintain(s)  # the rotations this device may do now
    view = await s.chains.view(refresh=True)
    info, _ = await exposure(s, ms.member_id)
    now = s.session.now()
    teams = [view.teams[t["team"]] for t in info["teams"] if t["team"] in view.teams]
    rotated = [t.name for t in teams if t.generation > generations.get(t.team_id, 0)]
    pending = [t.name for t in teams if t.rotation_reasons(now, view.members, view.org)]
    graph = await trust_graph(s, view, ms.member_id)
    notify = notify_list(info)
    inc = await incidents.open_incident(s, "departure", ms.member_id, ms.name, reason, {
        "removal": removal, "rotated_teams": rotated, "pending_rotation_teams": pending,
        "exposure": _exposure_summary(info), "notify": notify, "trust_graph": graph})
    return {"id": inc.id, "kind": "departure", "member": ms.member_id, "member_name": ms.name, "removal": removal,
            "rotated_teams": rotated, "pending_rotation_teams": pending, "exposure": info, "notify": notify,
            "trust_graph": graph, "reviews_due": [incidents.iso(t) for t in inc.data["reviews_due"]]}


def _exposure_summary(info: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps of the exposure report: per team the generations readable, the versions readable
    and those fetched (ids), the threads; the log position it was computed at."""
    return {"teams": [{"team": t["team"], "name": t["name"], "generations": t["generations"],
                       "versions": [v["vid"] for v in t["versions"]],
                       "fetched": [v["vid"] for v in t["versions"] if v["fetched"]],
                       "threads": [{"thread": x["thread"], "messages": x["messages"], "fetched": x["fetched"]}
                                   for x in t["threads"]]} for t in info["teams"]],
            "fetched": info["fetched"], "messages_fetched": info["messages_fetched"], "events": info["events"],
            "log_size": info["log"].get("size")}
