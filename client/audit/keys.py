"""The audit key: which security team's key seals the log (its designation by the NCC) and its
publication by a Security Team member's client; the server's claim of it is judged before it is believed."""

from __future__ import annotations

from client.client import Client
from client.view import View
from security.auditkey import AuditKeyClaim, judge_published_audit_key, parse_claim
from security.authority import POLICY
from security.events import audit_key_statement, audit_keypair
from vault.acts import Act
from vault.chains import TeamState, org_id_for
from vault.errors import IntegrityError, PolicyDenied, VaultError
from vault.logsign import sign_audit_key
from vault.wire.schemas import AuditKeyAnswer, AuditKeyRequest, AuditKeyStored


def security_team(view: View, me: str, now: int) -> TeamState | None:
    """The security team whose key seals the audit log, if ``me`` holds its key: the team designated in
    the organization chain (``org.audit_team``); before any designation, any team of kind security."""
    designated = view.org.audit_team
    for team in sorted(view.teams.values(), key=lambda t: t.team_id):
        if team.kind == "security" and designated in (None, team.team_id) and team.holds_key(me, now):
            return team
    return None



def entitled(s: Client, view: View, action: str) -> bool:
    return POLICY.entitled(Act(s.session.me, s.session.device.device_id, s.session.now(), action), view.org,
                           view.members, None)



async def served_audit_key(s: Client, view: View) -> AuditKeyClaim | None:
    """The audit-key statement the server says it seals to, judged before it is believed: signed by a
    member entitled to at its time, for the security team designated then, within the clocks' allowance
    (``judge_published_audit_key``; the server may lie). A team no longer designated is no lie: the caller
    publishes the designated team's key over it."""
    current = (await s.session.api.get("/api/v1/audit/key", AuditKeyAnswer)).key
    if current is None:
        return None
    claim = parse_claim(current.statement)
    try:
        judge_published_audit_key(claim, current.sig, view.org, view.members, view.teams.get(claim.team))
    except VaultError as e:
        raise IntegrityError(f"the server says it seals the audit log to a key no one entitled published ({e}); "
                             "do not trust this server and tell your Security Team") from e
    return claim


async def publish_audit_key(s: Client, view: View, team_name: str | None = None,
                            explicit: bool = False) -> str | None:
    """Security Team clients make sure the server seals to the designated team's current generation.

    ``explicit`` (``mvault audit key``): refusals are errors, and a key already in force is said so;
    ``team_name``: publish that team's key (the server refuses any but the designated team's)."""
    team = security_team(view, s.session.me, s.session.now()) if team_name is None else view.team_by_name(team_name)
    if not entitled(s, view, "audit.key"):
        if explicit:
            raise PolicyDenied("only the Security Team publishes the audit key")
        return None
    if team is None:
        if explicit:
            raise PolicyDenied("you hold no key of the designated security team")
        return None
    key = await s.keys.team_key(team, team.generation)
    pub = audit_keypair(key.seed)[0]
    current = await served_audit_key(s, view)
    if current is not None and (current.team, current.gen, current.pub) == (team.team_id, team.generation, pub):
        return f"the audit key of team {team.name} (generation {team.generation}) is in force" if explicit else None
    raw = audit_key_statement(org_id_for(bytes.fromhex(s.session.cfg.org_root)), team.team_id, team.generation, pub,
                              s.session.now(), s.session.me, s.session.device.device_id)
    await s.session.api.post("/api/v1/audit/key", AuditKeyRequest(raw, sign_audit_key(s.session.device, raw)),
                             AuditKeyStored)
    return f"published the audit key of team {team.name} (generation {team.generation})"


async def designate(s: Client, team_name: str) -> bool:
    """NCC: designate ``team_name`` as the audit log's security team; True if in force, False if it
    waits for a second NCC member's same designation."""
    view = await s.chains.view()
    team = view.team_by_name(team_name)
    if team.kind != "security":
        raise PolicyDenied(f"team {team.name} is of kind {team.kind!r}: the audit log's team is of kind 'security'")
    await s.chains.append_org("org.audit_team", {"team": team.team_id})
    return (await s.chains.view(refresh=True)).org.audit_team == team.team_id


async def designate_first(s: Client, team: TeamState) -> bool:
    """After creating a security team: designate it if no team is designated or proposed and ``s.me`` is
    the only NCC member (a young organization: one signature suffices). Otherwise nothing."""
    view = await s.chains.view()
    org, t = view.org, s.session.now()
    ncc = {m for m in org.members if "ncc" in org.roles_of(m, t)}
    if team.kind != "security" or org.audit_team is not None or org.audit_team_proposals or ncc != {s.session.me}:
        return False
    await s.chains.append_org("org.audit_team", {"team": team.team_id})
    return (await s.chains.view(refresh=True)).org.audit_team == team.team_id
