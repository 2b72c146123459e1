"""A Security Team member's cosignature taken after the revocation of her role was stored, though dated before it
(review 33, finding 1; session 24, fix33a). She dated an act 600 s ahead, so the NCC's revocation is dated 601 s
ahead (SECURITY.md, "Revocations are dated after what they revoke"); her next cosignature, dated now, is before it.
The server refuses it (``Authority.judge_stored``: tests/test_review33_exploits.py). Here a malicious server takes it
all the same: another Security Team member's `audit verify` reports it (the cosigned checkpoint's log holds the
revocation's event), and `audit witness` refuses to cosign. A member's client cannot tell (event bodies are sealed
to the Security Team: SECURITY.md); it judges the cosignature by dates, as before."""

from __future__ import annotations

import time
from typing import Any

import pytest

import server.access
import server.routes.audit
from client.admin import set_org_role
from client.audit.log import witness
from security.auditkey import judge_cosignature
from security.authority import Authority
from tests.conftest import Member, Org, security_team
from tests.helpers.clock import StoppedClock
from tests.helpers.hidden_hour import assert_caught
from tests.helpers.members import session
from vault.acts import Act
from vault.chains import MemberState, OrgState, TeamState
from vault.errors import PolicyDenied


class _ByDatesOnly(Authority):
    """The server before session 24: acts judged by their dates only, a link stored dated after them not in force."""

    def judge_stored(self, act: Act, org: OrgState, members: Any, team: TeamState | None,
                     stored: int | None = None) -> None:
        self.judge(act, org, members, team)


def _takes_cosignatures_by_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malicious server (this process's server code, not the clients'): cosignatures and rights judged by dates."""
    def by_dates(raw: bytes, member: str, device: str, t: int, sig: bytes, org: OrgState,
                 members: dict[str, MemberState], *, stored: bool = False) -> None:
        judge_cosignature(raw, member, device, t, sig, org, members)

    monkeypatch.setattr(server.access, "POLICY", _ByDatesOnly())
    monkeypatch.setattr(server.routes.audit, "judge_cosignature", by_dates)


def _second_verifier(org: Org, make_member: Any) -> Member:
    """dave: Security Team role, a reader of sec (the designated team) holding its key: he reads every event."""
    dave: Member = make_member("dave")
    dave.ok("join", org.alice.json("invite")["invite"], "--name", "dave")
    org.alice.ok("role", "grant", "dave", "security", "--until", "2099-01-01")
    return dave


@pytest.mark.parametrize("malicious", [True, False])
async def test_a_cosignature_taken_after_its_signers_role_revocation_was_stored_is_reported(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch, malicious: bool) -> None:
    """carol cosigns dated 600 s ahead; alice revokes her role (stored dated 601 s ahead); the log grows; carol, her
    clock right, cosigns the new checkpoint. Malicious: the server takes it; dave's `audit verify` names it, his
    `audit witness` refuses, and members still exit 0 (they cannot read the log's events). Honest (control): the
    server refuses it, and dave's verify finds nothing."""
    carol = security_team(org, make_member)
    dave = _second_verifier(org, make_member)
    carol.ok("team", "add", "sec", "dave", "--role", "reader")
    dave.ok("whoami")
    assert dave.json("audit", "verify")["ok"]
    base = int(time.time())
    async with session(org.server, carol) as sc, session(org.server, org.alice) as sa:
        sc.session.clock = StoppedClock(at=base + 600)
        await witness(sc)  # dated base + 600
        sa.session.clock = StoppedClock(at=base)
        assert (await set_org_role(sa, "carol", "security", False, None))[1]
        assert (await sa.chains.view(refresh=True)).org.times[-1] == base + 601
    org.alice.ok("team", "create", "after", "--kind", "program")  # the log grows: a new checkpoint
    if malicious:
        _takes_cosignatures_by_dates(monkeypatch)
    async with session(org.server, carol) as sc:
        sc.session.clock = StoppedClock(at=int(time.time()))
        if malicious:
            _, size = await witness(sc)  # taken: the served witness is now this cosignature
        else:
            with pytest.raises(PolicyDenied, match="as the organization chain stood"):
                await witness(sc)
    verify, witnessed = dave.run("audit", "verify"), dave.run("audit", "witness")
    if not malicious:
        assert "PROBLEM" not in verify.out and witnessed.code == 0, (verify.out, witnessed.err)
        return
    assert f"the witnessed checkpoint (size {size}) is cosigned after the log recorded the end" in verify.out, \
        verify.out
    assert "may not cosign the audit log" in verify.out, verify.out
    assert_caught(verify, witnessed)
    for m in (org.alice, org.bob):  # a member's client judges a cosignature by dates: it cannot read the events
        m.ok("whoami")
