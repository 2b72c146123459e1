"""The Security Team's reports: every security protocol evaluated over the verified log and chains,
and one member's exposure (what it could decrypt, what it actually fetched)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from client.audit import incidents
from client.audit.log import Verified, chain_links, verify_log
from client.checkpoints import protocols_of
from client.client import Client
from client.names import Names
from client.view import View
from security.events import Event
from security.rules import AuditInput, RuleResult, evaluate
from vault.chains import TeamState
from vault.envelope import Record
from vault.errors import IntegrityError, PolicyDenied
from vault.wire.schemas import AttestRequest, Ok, TeamVersions


@dataclass(frozen=True)
class Report:
    """One evaluation of every rule, and what it was made from (the HTML report draws its charts from it)."""

    results: list[RuleResult]
    verified: Verified
    names: Names
    view: View
    input: AuditInput  # the verified chains and the events the Security Team's key opened
    # the open incidents and their weekly reviews, if this member may read them
    incidents: incidents.Overview = field(default_factory=lambda: incidents.Overview(False, [], "not read"))


async def report(s: Client) -> Report:
    """Every rule's result over the verified log and chains, and the names of whom the findings name."""
    result, view, events, keys = await verify_log(s)
    if not keys.security:
        raise PolicyDenied("the report needs the Security Team's audit key (a key of a 'security' team)")
    org_links, team_links, member_links = await chain_links(s, view)
    inp = AuditInput(now=s.session.now(), org=view.org, members=view.members, teams=view.teams, org_links=org_links,
                     team_links=team_links, member_links=member_links, events=events,
                     log_ok=not result.problems, log_problem="; ".join(result.problems),
                     last_witness=result.last_witness, last_outside_witness=result.outside_witness)
    results = evaluate(inp, protocols_of(view.org))
    violated = [r for r in results if r.status == "violated"]
    await s.session.api.post("/api/v1/audit/attest", AttestRequest("report",
                                                                   violated=",".join(r.rule for r in violated)[:1024],
                                                                   count=sum(len(r.findings) for r in violated)), Ok)
    return Report(results, result, Names(view, s.session.me), view, inp, await incidents.overview(s))


def rule_json(r: RuleResult, names: Names) -> dict[str, Any]:
    """A rule's result for ``--json``: the ids as ``security.rules`` gives them, the names beside them."""
    out = r.to_json()
    for f, fj in zip(r.findings, out["findings"], strict=True):
        fj["subject_name"] = names.name_of(f.subject) if f.subject else None
        fj["text"] = names.text(f.message)
        fj["next"] = names.command(f.next_command) if f.next_command else ""
    return out


async def exposure(s: Client, name: str) -> tuple[dict[str, Any], Names]:
    """What the member ``name`` could decrypt and what it fetched (ids with names beside them), and the names
    of the view (for people)."""
    result, view, events, keys = await verify_log(s)
    roles = view.org.roles_of(s.session.me, s.session.now())
    if "security" not in roles and "ncc" not in roles:
        raise PolicyDenied("exposure reports are for the Security Team")
    ms = view.member_by_name(name)
    mid = ms.member_id
    mine = [(i, e) for i, e in events if e.actor == mid]
    fetched_vids = {e.res.get("vid") for _, e in mine if e.action == "doc.read" and e.result == "ok"}
    last_seen: dict[str, int] = {}
    for _, e in mine:
        if e.action == "auth.login" and e.result == "ok":
            last_seen[e.device] = max(last_seen.get(e.device, 0), e.time)
    threads = _threads_seen(events, mine)
    names = Names(view)
    teams = []
    for team in sorted(view.teams.values(), key=lambda t: t.name):
        held = sorted(g for (g, m) in team.boxes if m == mid)
        if not held and mid not in team.members:
            continue
        co_members = sorted((m for m in team.active_members(s.session.now()) if m != mid), key=view.name_of)
        readable = set(range(1, max(held) + 1)) if (team.history and held) else set(held)
        versions = await _team_versions(s, team)
        exposed = [v for v in versions if v["gen"] in readable]
        teams.append({
            "team": team.team_id, "name": team.name, "team_name": team.name, "kind": team.kind,
            "member": mid in team.members, "role": team.members[mid].role if mid in team.members else None,
            "removed_at_link": team.removed_at.get(mid), "generations": sorted(readable),
            "current_generation": team.generation,
            "rotation_needed": team.rotation_reasons(s.session.now(), view.members, view.org),
            "versions": [{**v, "author_name": view.members[v["author"]].name if v["author"] in view.members else None,
                          "fetched": v["vid"] in fetched_vids} for v in exposed],
            "threads": [{**t, "messages": sum(n for g, n in t.pop("by_gen").items() if g in readable)}
                        for t in threads.get(team.team_id, {}).values()],
            "live_delivered": sum(d for _, e in mine if e.action == "thread.unfollow"
                                  and e.res.get("team") == team.team_id
                                  and isinstance(d := e.detail.get("delivered", 0), int)),
            "co_members": [view.name_of(m) for m in co_members],
            "co_member_ids": co_members,
        })
    om = view.org.members.get(mid)
    invited = sorted((i.used_by for i in view.org.invites.values() if i.by == mid and i.used_by is not None),
                     key=view.name_of)
    return {
        "member": mid, "name": ms.name, "member_name": ms.name, "status": om.status if om else "unknown",
        "removed_at": om.removed_at if om else None,
        "devices": [{"device": d.device_id, "name": d.name, "kind": d.kind, "added": d.added, "revoked": d.revoked,
                     "last_seen": last_seen.get(d.device_id)} for d in ms.devices.values()],
        "verified": s.chains.verified(ms),
        "invited": [view.name_of(i) for i in invited],
        "invited_ids": invited,
        "teams": teams,
        "fetched": len(fetched_vids),
        "messages_fetched": sum(t["fetched"] for ts in threads.values() for t in ts.values()),
        "events": len(mine),
        "retention_days": protocols_of(view.org).retention_days,
        "log": result.to_json(),
    }, names


def _threads_seen(events: list[tuple[int, Event]], mine: list[tuple[int, Event]]) -> dict[str, dict[str, Any]]:
    """team id -> thread id -> what the log tells of the thread: its expiry (what may still sit on a
    device), messages posted per key generation, and how many the member fetched (reads and live)."""
    out: dict[str, dict[str, Any]] = {}
    for _, e in events:
        if e.result != "ok" or not e.res.get("team") or not e.res.get("thread"):
            continue
        team, thread = e.res["team"], e.res["thread"]
        if e.action == "thread.create":
            out.setdefault(team, {})[thread] = {"thread": thread, "expire": e.detail.get("expire", 0),
                                                "created": e.time, "by_gen": {}, "fetched": 0}
        elif e.action == "msg.post" and thread in out.get(team, {}):
            gen = e.detail.get("gen")
            by_gen = out[team][thread]["by_gen"]
            by_gen[gen] = by_gen.get(gen, 0) + 1
    for _, e in mine:
        t = out.get(e.res.get("team", ""), {}).get(e.res.get("thread", ""))
        if t is not None and e.action == "msg.read" and e.result == "ok":
            count = e.detail.get("count", 0)
            t["fetched"] += count if isinstance(count, int) else 0
    return out


async def _team_versions(s: Client, team: TeamState) -> list[dict[str, Any]]:
    res = await s.session.api.get(f"/api/v1/audit/teams/{team.team_id}/versions", TeamVersions)
    out = []
    for v in res.versions:
        rec = Record.parse(v.record)
        if rec.core.team != team.team_id:
            raise IntegrityError("the server listed another team's document version")
        out.append({"vid": rec.version_id, "doc": rec.core.doc, "seq": rec.core.seq, "gen": rec.core.gen,
                    "author": rec.core.author, "time": rec.core.time})
    return out
