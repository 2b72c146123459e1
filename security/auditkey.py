"""Judging the audit log's signed acts: audit-key statements and witness cosignatures.

The server (before it accepts one) and every client (before it believes one) judge them the
same way, with the one judge (``security.authority.POLICY``):

* an audit-key statement (``security.events.audit_key_statement``) is an act ``audit.key`` by
  its member, with its device, at its signed time; it must name the organization, verify with
  that device's key, name the security team designated in the organization chain
  (``org.audit_team``; before any designation, any team of kind ``security``) and, where the
  team's chain is known, a team of kind ``security`` and a generation the signer held;
* a cosignature of a checkpoint is an act ``audit.cosign`` by its member, with its device, at
  its signed time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from security.auditwindow import designated_near, designations
from security.authority import POLICY
from security.events import AUDIT_KEY_FIELDS, Statement, cosign_statement
from vault.acts import ALLOWANCE, Act
from vault.chains import MemberState, OrgState, TeamState
from vault.errors import ChainError, EncodingError, IntegrityError, PolicyDenied
from vault.logsign import verify_audit_key, verify_cosignature


@dataclass(frozen=True)
class AuditKeyClaim:
    """What an audit-key statement says, parsed (not yet judged)."""

    raw: bytes
    org: str
    team: str
    gen: int
    pub: bytes
    time: int
    member: str
    device: str

    @classmethod
    def parse(cls, raw: bytes) -> AuditKeyClaim:
        f = Statement.parse(raw, "audit key statement", AUDIT_KEY_FIELDS).fields
        return cls(raw, f.str_("org", 64), f.str_("team", 64), f.int_("gen", 1), f.bytes_("pub", 32),
                   f.int_("time", 0), f.str_("member", 64), f.str_("device", 64))


def parse_claim(raw: bytes) -> AuditKeyClaim:
    """``AuditKeyClaim.parse``, malformed input as ``IntegrityError`` (for bytes a server served)."""
    try:
        return AuditKeyClaim.parse(raw)
    except EncodingError as e:
        raise IntegrityError(f"malformed audit key statement: {e}") from e


def judge_audit_key(claim: AuditKeyClaim, sig: bytes, org: OrgState, members: Mapping[str, MemberState],
                    team: TeamState | None, designated: str | None) -> None:
    """Refuse (``PolicyDenied``, ``ChainError``, ``BadSignature``) a statement its signer was not
    entitled to make. ``designated``: the team the statement must name (None: none designated yet);
    ``team``: the named team's replayed chain, if the judge can see it (then its kind and the
    signer's key generation are checked too)."""
    if claim.org != org.org_id:
        raise PolicyDenied("the audit key statement names another organization")
    POLICY.judge(Act(claim.member, claim.device, claim.time, "audit.key"), org, members, None)
    verify_audit_key(members[claim.member].device_at(claim.device, claim.time).sign_public, claim.raw, sig)
    if team is not None:
        if team.team_id != claim.team:
            raise ChainError("the audit key statement names another team")
        if team.kind != "security":
            raise PolicyDenied("the audit key comes from a team of kind 'security'")
        if not 1 <= claim.gen <= team.generation or (claim.gen, claim.member) not in team.boxes:
            raise ChainError(f"member {claim.member} never held generation {claim.gen} of team {team.name}")
    if designated is not None and claim.team != designated:
        raise PolicyDenied(f"the audit key must come from the designated security team {designated}, "
                           f"not team {claim.team}")


def designated_at(org: OrgState, t: int) -> str | None:
    """The designated security team at time ``t`` (the organization state then)."""
    return org.audit_team_at(org.seq_at(t))


def designated_around(org: OrgState, t: int, within: int = ALLOWANCE) -> set[str]:
    """The security teams designated at any organization state in force between ``t - within`` and ``t + within``
    (states with no team designated add none): ``security.auditwindow.designated_near``, one rule for both."""
    return {team for _, team in designated_near(designations(org), t - within, t + within) if team is not None}


def judge_published_audit_key(claim: AuditKeyClaim, sig: bytes, org: OrgState, members: Mapping[str, MemberState],
                              team: TeamState | None) -> None:
    """``judge_audit_key`` for a statement published earlier (the key a server serves, or stored at its start):
    the team it names must have been designated at its signed time or at any organization state in force within
    ``ALLOWANCE`` of it. Links and statements are dated by their signers' clocks, each within the server's window
    (half ``ALLOWANCE``) of its clock: a designation accepted after the statement may be dated before it, and one
    accepted before it after it (review 30, finding 4). A team never designated near that time is still refused;
    a statement of a team no longer designated is the key no longer in force, which the designated team's
    members publish over (``put_key`` judges the designation now)."""
    designated = designated_at(org, claim.time)
    if designated is not None and claim.team in designated_around(org, claim.time):
        designated = claim.team
    judge_audit_key(claim, sig, org, members, team, designated)


def judge_cosignature(checkpoint_raw: bytes, member: str, device: str, t: int, sig: bytes, org: OrgState,
                      members: Mapping[str, MemberState], *, stored: bool = False) -> None:
    """Refuse a witness cosignature by anyone but a Security Team member's device active at its signed
    time ``t``, or one that does not verify (``PolicyDenied``/``ChainError``/``BadSignature``). ``stored``: the
    server taking it, which judges it on the organization chain as stored too (``Authority.judge_stored``: a role
    revocation or removal stored is in force whatever its date; review 33)."""
    act = Act(member, device, t, "audit.cosign")
    (POLICY.judge_stored if stored else POLICY.judge)(act, org, members, None)
    verify_cosignature(members[member].device_at(device, t).sign_public,
                       cosign_statement(checkpoint_raw, member, device, t), sig)


def entitled_cosigner(member: str, device: str, t: int, org: OrgState, members: Mapping[str, MemberState]) -> bool:
    """Was ``member`` on the Security Team, signing with an active ``device``, at ``t``?"""
    return POLICY.entitled(Act(member, device, t, "audit.cosign"), org, members, None)

