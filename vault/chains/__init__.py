"""Chain replay: member, organization and team chains as pure state machines.

Each ``*State.apply(link, ...)`` checks a link against the state *before* it (sequence,
previous hash, chain id, time order, signer's device at the link's time, signer's right
under the policy) and then applies it. ``replay_*`` folds a whole chain. Server and
clients run the same code; a server that forges, alters, reorders or drops links is
caught here. Always apply a candidate link to a ``clone`` (a rejected link may leave the
state it was applied to half changed).

Transitions (link type -> effect)::

    member.create   new member: first device, PUK generation 1 (self-signed)
    device.add      another device (or a paper key); cosigned by the new device's key
    device.revoke   device revoked; PUK rolls to a new generation sealed to the rest
    org.create      founds the organization; founder becomes member + ncc (invite-cosigned)
    org.invite      records a one-time invite key with the role it grants and its expiry
    org.invite.revoke  withdraws an open invite (its author, or NCC for anyone's): a join with it is refused
    org.join        a new member claims an invite (cosigned with the invite key)
    org.admit       NCC admits a pending member
    org.role        NCC grants or revokes ncc / staff / security / compa (optional end date)
    org.audit_team  NCC designates the security team whose key seals the audit log; with another
                    NCC member at the time it is a proposal until a second NCC member signs the same
    org.server      NCC says the server moved: its new URL and transport pin (two people, like org.audit_team)
    org.vouch       a member vouches for another member (signed record: rule vouching)
    org.verify      a member records a key verification in person, with the fingerprint seen (rule key-verification)
    org.approve     an NCC member approves an earlier org link as the second person (rule two-person)
    org.coalition   NCC records the organization's coalition key for a coalition space (vault.chains.coalition)
    org.coalition.share
                    NCC seals a recorded coalition key's seed to NCC members' PUKs (vault.chains.coalitionshare)
    org.close.propose / org.close.approve / org.close.exported / org.closed
                    closing the organization by a quorum (``vault.chains.closing``); nothing follows org.closed
    team.create     team with kind, initial members and key generation 1
    team.add        adds a member with role (+ expiry) and their key box (none if the
                    signer holds no key: the member waits for a holder's team.share)
    team.share      a key holder boxes the current key for a member added by a non-holder
    team.remove     removes a member; a key holder rotates in the same link, otherwise
                    the team is blocked for new content until a holder's team.rotate
    team.leave      a member leaves; the team needs a rotation
    team.role       changes a member's role or expiry
    team.rotate     a key holder starts a new generation for the current members
    team.review     an admin confirms the member list, by its digest (rule membership-review)
    team.approve    an admin (or NCC) approves an earlier team link as the second person (rule two-person)
    coalition.ally  the host's NCC pins an allied organization (root, coalition key) in a coalition space
    coalition.remove  a space admin, or any member carrying the ally's signed removal, removes a member
                    (a team.add of an ally's member carries the ally's signed coalition.admit)

Team links carry ``org_seq``: the organization chain head they were made against, so the
signer's organization roles are judged as they were at that point.

The package: ``common`` (ids, names, ``clone``), ``member``, ``org`` and ``team`` (one chain each,
each importing only the ones before it), ``records`` (the org chain's signed records). This module
re-exports their public names, so ``from vault.chains import ...`` is the import path everyone uses.
"""

from vault.chains.closing import (
    CLOSING_TYPES,
    Closed,
    Closing,
    PlanEntry,
    Proposal,
    Quorum,
    check_quorum,
    plan_hash,
    quorum_met,
)
from vault.chains.common import (
    MAX_NAME,
    check_name,
    clone,
    member_id_for,
    org_id_for,
    protocols_digest,
    roster_digest,
    team_id_for,
)
from vault.chains.member import Device, MemberState, PukGeneration, replay_member, verify_signer
from vault.chains.org import (
    GRANTABLE_ROLES,
    MAX_INVITE_SECONDS,
    MAX_OPEN_INVITES,
    ORG_INVITE_ROLES,
    Invite,
    OrgMember,
    OrgPolicy,
    OrgState,
    ProtocolsChange,
    RoleEntry,
    ServerPlace,
    replay_org,
)
from vault.chains.records import RECORD_TYPES, Record, records_of
from vault.chains.team import (
    HISTORY_BLOB,
    TEAM_ROLE_NAMES,
    BoxCommitment,
    Policy,
    TeamMember,
    TeamSnapshot,
    TeamState,
    replay_team,
)
from vault.chains.twoperson import TWO_PERSON_ROLES, role_act

__all__ = [
    "CLOSING_TYPES",
    "Closed",
    "Closing",
    "PlanEntry",
    "Proposal",
    "Quorum",
    "check_quorum",
    "plan_hash",
    "quorum_met",
    "GRANTABLE_ROLES",
    "HISTORY_BLOB",
    "MAX_INVITE_SECONDS",
    "MAX_NAME",
    "MAX_OPEN_INVITES",
    "ORG_INVITE_ROLES",
    "TEAM_ROLE_NAMES",
    "TWO_PERSON_ROLES",
    "BoxCommitment",
    "Device",
    "Invite",
    "MemberState",
    "OrgMember",
    "OrgPolicy",
    "OrgState",
    "Policy",
    "ProtocolsChange",
    "PukGeneration",
    "RECORD_TYPES",
    "Record",
    "RoleEntry",
    "ServerPlace",
    "TeamMember",
    "TeamSnapshot",
    "TeamState",
    "check_name",
    "clone",
    "member_id_for",
    "org_id_for",
    "protocols_digest",
    "records_of",
    "replay_member",
    "replay_org",
    "replay_team",
    "role_act",
    "roster_digest",
    "team_id_for",
    "verify_signer",
]
