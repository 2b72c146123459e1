"""Judging a roster export's signed record (``vault/roster.py``; rule ``no-master-lists``).

The server (before it logs the export), the rule (``security/rules/rosters.py``) and every reader's client (before it
shows the file) judge a record the same way, with the one judge (``security.authority.POLICY``): an act
``org.roster`` by its member, with its device, at its signed time (NCC or Security Team), the signature verifying
with that device's key, naming this organization, and every reader an admitted member at that time. How many
readers are allowed is the protocols' (``[rules.no-master-lists] max_readers``); the Security Team's members are
never counted (``outside_readers``)."""

from __future__ import annotations

from collections.abc import Mapping

from security.authority import POLICY
from vault.acts import Act
from vault.chains import MemberState, OrgState
from vault.errors import PolicyDenied
from vault.roster import RosterRecord, verify_record

ACT = "org.roster"


def judge_roster(record: RosterRecord, sig: bytes, org: OrgState, members: Mapping[str, MemberState], *,
                 stored: bool = False) -> None:
    """Refuse (``PolicyDenied``, ``ChainError``, ``BadSignature``) a record its signer was not entitled to sign.
    ``stored``: the server's judge, also on the organization chain as stored (``Authority.judge_stored``: a role
    revocation dated after the record, which its signer's own act dated ahead may push 601 s ahead, is in force once
    stored; review 37); the rule and the readers' clients judge by dates."""
    if record.org != org.org_id:
        raise PolicyDenied("the roster export record names another organization")
    judge = POLICY.judge_stored if stored else POLICY.judge
    judge(Act(record.member, record.device, record.time, ACT), org, members, None)
    verify_record(members[record.member].device_at(record.device, record.time).sign_public, record.raw, sig)
    seq = org.seq_at(record.time)
    strangers = [r for r in record.readers if not org.admitted(r, seq)]
    if strangers:
        raise PolicyDenied(f"the roster export names readers who were not admitted members then: "
                           f"{', '.join(strangers)}")


def outside_readers(record: RosterRecord, org: OrgState) -> list[str]:
    """The readers who did not hold the Security Team role at the record's time (the ones ``max_readers`` counts)."""
    seq = org.seq_at(record.time)
    return [r for r in record.readers if "security" not in org.roles_of(r, record.time, seq)]
