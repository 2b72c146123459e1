"""Review 32, finding 4 (tests/test_review32_exploits.py): a link that ends someone's rights (a role's revocation, an
organization removal, a compa grant, as already a device's revocation and a cut: ``POLICY.rights_ended``) is dated
strictly after everything they signed, as the judge ends the rights in the link's own second (``OrgState.seq_at``).
The server refuses one dated in or before that second (409, ``not_before`` the second after); the client signs it
again dated then (``Chains.append_org``). One SQLite server, and two processes over PostgreSQL: the role's end
through process two, which noted nothing of the cosignature stored by process one, refused all the same (read from
the database in its transaction) and signed again dated the second after (the race: tests/test_cosign_role_race.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import client.view
from client.admin import remove_member, set_org_role
from client.audit.log import witness
from client.checkpoints import check_witness, sync_log
from security.authority import POLICY
from tests.conftest import Org, security_team
from tests.helpers.clock import StoppedClock
from tests.helpers.members import session
from tests.helpers.pair import Pair
from vault.errors import Conflict


def test_the_rule_names_whose_rights_each_link_ends() -> None:
    assert POLICY.rights_ended("org.role", {"role": "security", "grant": False}) == ("member",)
    assert POLICY.rights_ended("org.role", {"role": "compa", "grant": True}) == ("member",)
    assert POLICY.rights_ended("org.role", {"role": "security", "grant": True}) == ()
    assert POLICY.rights_ended("org.remove", {"member": "m"}) == ("member",)
    assert POLICY.rights_ended("device.revoke", {"device": "d"}) == ("device",)
    assert POLICY.rights_ended("org.device.cut", {"device": "d"}) == ("device", "member")
    assert POLICY.rights_ended("org.admit", {"member": "m"}) == ()
    assert POLICY.ending_not_before(100) == 101


@pytest.mark.parametrize("end", ["role-revoke", "org-remove"])
async def test_the_server_refuses_a_role_end_in_the_second_of_its_subjects_cosignature(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch, end: str) -> None:
    """Signed once only (no retry): the server answers 409 naming the second after the cosignature, and stores
    nothing; signed again (the client's retry), it is taken dated that second and every client goes on."""
    carol = security_team(org, make_member)
    t = int(time.time()) + 2
    async with session(org.server, carol) as sc, session(org.server, org.alice) as sa:
        sc.session.clock = sa.session.clock = StoppedClock(at=t)
        await witness(sc)  # the cosignature, dated t
        before = (await sa.chains.view(refresh=True)).org.seq
        with monkeypatch.context() as m:
            m.setattr(client.view, "END_ATTEMPTS", 1)
            with pytest.raises(Conflict) as refused:
                if end == "role-revoke":
                    await set_org_role(sa, "carol", "security", False, None)
                else:
                    await remove_member(sa, "carol", "left")
        assert refused.value.not_before == t + 1, refused.value
        assert f"signed something dated {t}, not before this" in str(refused.value), refused.value
        assert f"{t + 1} or later" in str(refused.value), refused.value
        view = await sa.chains.view(refresh=True)
        assert view.org.seq == before and "security" in view.org.roles_of(view.member_by_name("carol").member_id, t)
        if end == "role-revoke":  # the client's retry: dated t + 1, taken
            assert (await set_org_role(sa, "carol", "security", False, None))[1]
        else:
            assert (await remove_member(sa, "carol", "left"))[1]
        view = await sa.chains.view(refresh=True)
        assert view.org.seq == before + 1 and view.org.times[-1] == t + 1
        assert "security" not in view.org.roles_of(view.member_by_name("carol").member_id, t + 1)
    for m in (org.alice, org.bob):
        r = m.run("whoami")
        assert r.code == 0, (r.code, r.err)


async def test_a_role_end_with_nothing_signed_in_its_second_is_dated_now(org: Org, make_member: Any) -> None:
    """Control: no act of the subject in the link's second, no refusal; the link is dated by the signer's clock."""
    security_team(org, make_member)
    t = int(time.time()) + 2
    async with session(org.server, org.alice) as sa:
        sa.session.clock = StoppedClock(at=t)
        assert (await set_org_role(sa, "carol", "security", False, None))[1]
        assert (await sa.chains.view(refresh=True)).org.times[-1] == t
        assert not sa.session.warnings



async def test_a_role_end_in_the_second_of_a_cosignature_stored_by_the_other_process_is_dated_after_it(
        pair: Pair, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    carol = security_team(pair.org, make_member)
    alice = pair.org.alice
    t = int(time.time()) + 2
    async with session(pair.one, carol) as sc, session(pair.two, alice) as sa:
        sc.session.clock = sa.session.clock = StoppedClock(at=t)
        await witness(sc)  # stored by process one, dated t
        with monkeypatch.context() as m:
            m.setattr(client.view, "END_ATTEMPTS", 1)  # signed once: process two refuses it
            with pytest.raises(Conflict) as refused:
                await set_org_role(sa, "carol", "security", False, None)
        assert refused.value.not_before == t + 1, refused.value
        assert (await set_org_role(sa, "carol", "security", False, None))[1]  # signed again: dated t + 1
        assert (await sa.chains.view(refresh=True)).org.times[-1] == t + 1
    for server in (pair.one, pair.two):
        async with session(server, alice) as s:
            lv = await sync_log(s.session)
            view = await s.chains.view(refresh=True)
            assert lv.witness is not None
            check_witness(s.session, view.org, view.members, lv.witness)
    r = alice.run("whoami")
    assert r.code == 0, (r.code, r.err)
