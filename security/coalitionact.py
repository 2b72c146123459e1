"""Judging a ``coalition.act`` record (``vault/coalitionact.py``; docs/lifecycle.md section 2 "Audit").

The member's own server (before it logs the record) and the rules (``security/rules/coalition.py``) judge a record
the same way, with the one judge (``security.authority.POLICY``): an act ``coalition.act`` by its member, with its
device, at its signed time (any admitted member; ``approve`` and ``remove`` of another member: the NCC, who alone
holds the coalition key), the signature verifying with that device's key, naming this organization and a coalition
space this organization recorded a coalition key for (``org.coalition``) at or before the act."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from security.authority import POLICY
from vault.acts import Act
from vault.chains import MemberState, OrgState
from vault.coalitionact import NCC_ACTS, CoalitionAct, verify_act
from vault.errors import NotFound, PolicyDenied

ACT: Final = "coalition.act"


def judge_act(record: CoalitionAct, sig: bytes, org: OrgState, members: Mapping[str, MemberState], *,
              stored: bool = False) -> None:
    """Refuse (``PolicyDenied``, ``NotFound``, ``ChainError``, ``BadSignature``) a record its signer was not entitled
    to sign. ``stored``: the server's judge, also on the organization chain as stored (``Authority.judge_stored``: a
    removal or role revocation stored after the record's time is in force, whatever the record's date; review 37);
    the rules judge by dates."""
    if record.org != org.org_id:
        raise PolicyDenied("the coalition act record names another organization")
    judge = POLICY.judge_stored if stored else POLICY.judge
    judge(Act(record.member, record.device, record.time, ACT), org, members, None)
    if record.act in NCC_ACTS:  # approving or removing a member is the NCC's (it holds the coalition key)
        judge(Act(record.member, record.device, record.time, "org.coalition"), org, members, None)
    verify_act(members[record.member].device_at(record.device, record.time).sign_public, record.raw, sig)
    entry = org.coalitions.get(record.coalition)
    retired = [r.entry.seq for r in org.coalitions_retired.get(record.coalition, [])]  # a rekey keeps the space
    if entry is None or min([entry.seq, *retired]) > org.seq_at(record.time):
        raise NotFound(f"this organization recorded no coalition key for a space named {record.coalition!r} "
                       "at the act's time (org.coalition)")
