"""Review 37, findings 3 and 4 (tests/test_review37_exploits.py). A suspicion (``org.suspect``) pauses its member from
its own second, as a cut's pause does, so it ends the member's rights for dating (``POLICY.rights_ended``): the
server refuses one dated in or before the second of something the member already signed (409, ``not_before`` the
second after) and the client signs it again dated then. A clear (``org.clear``) ends no rights and is dated as any
link. A coalition act's record is judged at the server on the organization chain as stored (``stored=True``:
``Authority.judge_stored``), as a roster export's is (the review's test)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import client.view
from client.lost import clear_pause
from client.suspect import suspect
from security.authority import POLICY
from security.coalitionact import judge_act
from tests.conftest import Org, security_team
from tests.helpers.chain_world import expect
from tests.helpers.clock import StoppedClock
from tests.helpers.coalition_rekey import ncc_of_three
from tests.helpers.members import session
from vault.coalitionact import CoalitionAct, act_record, sign_act
from vault.errors import Conflict, PolicyDenied, VaultError


def test_a_suspicion_ends_its_members_rights_and_a_clear_ends_none() -> None:
    assert POLICY.rights_ended("org.suspect", {"member": "m"}) == ("member",)
    assert POLICY.rights_ended("org.clear", {"member": "m"}) == ()


async def test_the_server_refuses_a_suspicion_in_the_second_of_its_subjects_document(
        org: Org, make_member: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bob puts a document in the circle cell at t; carol's suspicion signed once (no retry) dated t: 409 naming
    t + 1, nothing stored, bob not paused. Signed again (the client's retry): dated t + 1 and in force from then (bob's
    next document refused), his document of t readable by alice."""
    carol = security_team(org, make_member)
    org.alice.ok("team", "create", "cell", "--kind", "circle")
    org.alice.ok("team", "add", "cell", "bob", "--role", "writer")
    note, later = tmp_path / "note.md", tmp_path / "later.md"
    note.write_text("from bob\n")
    later.write_text("after the suspicion\n")
    t = int(time.time()) + 2
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(org.bob.passphrase_file))
    async with session(org.server, org.bob) as sb:
        sb.session.clock = StoppedClock(at=t)
        await sb.docs.put("cell", note)
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    async with session(org.server, carol) as sc:
        sc.session.clock = StoppedClock(at=t)
        before = (await sc.chains.view(refresh=True)).org.seq
        with monkeypatch.context() as m:
            m.setattr(client.view, "END_ATTEMPTS", 1)
            with pytest.raises(Conflict) as refused:
                await suspect(sc, "bob")
        assert refused.value.not_before == t + 1, refused.value
        assert f"signed something dated {t}, not before this org.suspect" in str(refused.value), refused.value
        view = await sc.chains.view(refresh=True)
        bob = view.member_by_name("bob").member_id
        assert view.org.seq == before and view.org.incidents.open_pause(bob) is None
        await suspect(sc, "bob")  # the retry: dated t + 1
        view = await sc.chains.view(refresh=True)
        assert view.org.seq == before + 1 and view.org.times[-1] == t + 1
        assert view.org.incidents.paused_at(bob, t) is None and view.org.incidents.paused_at(bob, t + 1) is not None
        assert not sc.session.warnings  # 1 s ahead of this device's clock: no warning
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(org.bob.passphrase_file))
    async with session(org.server, org.bob) as sb:
        sb.session.clock = StoppedClock(at=t + 1)
        with pytest.raises(VaultError, match="paused"):
            await sb.docs.put("cell", later)
    r = org.alice.run("get", "cell", "note.md", "--output", str(tmp_path / "got.md"))
    assert r.code == 0, r.err
    assert (tmp_path / "got.md").read_text() == "from bob\n"


async def test_a_suspicion_with_nothing_signed_in_its_second_is_dated_now_and_a_clear_is_not_held_back(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: bob signed nothing at or after t: the suspicion is dated t (this device's clock), no warning. The
    clear after it is dated by the clock as well, whatever bob signed: it ends a pause, so it makes nothing the server
    took refused on replay, and the server holds it to no ``not_before`` (here bob signs a member link dated t + 300,
    within the window, and the clear dated t + 5 is taken)."""
    carol = security_team(org, make_member)
    t = int(time.time()) + 2
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    async with session(org.server, carol) as sc:
        sc.session.clock = StoppedClock(at=t)
        await suspect(sc, "bob")
        view = await sc.chains.view(refresh=True)
        assert view.org.times[-1] == t and not sc.session.warnings
    org.bob.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "300"
    org.bob.ok("recovery-key", "--name", "drawer")  # a member link dated t + 300 or so (no pause stops a device.add)
    del org.bob.env_extra["MVAULT_TEST_CLOCK_OFFSET"]
    async with session(org.server, carol) as sc:
        sc.session.clock = StoppedClock(at=t + 5)
        await clear_pause(sc, "bob")
        view = await sc.chains.view(refresh=True)
        bob = view.member_by_name("bob").member_id
        assert view.org.times[-1] == t + 5 and view.org.incidents.paused_at(bob, t + 5) is None
    for m in (org.alice, org.bob, carol):
        r = m.run("whoami")
        assert r.code == 0, (r.code, r.err)


def test_a_coalition_act_record_is_judged_on_the_organization_chain_as_stored() -> None:
    """gina (NCC) signs an ``approve`` record dated t; her NCC role is then revoked (two-person, dated after t). By
    dates (the rules' judge) the record stands, as she held NCC at t; the server's judge (``stored=True``) refuses it:
    the revocation is in force once stored, whatever date she gives her record (up to 30 days back). The founder's
    record of the same time still passes."""
    a, w, founder, hank, gina = ncc_of_three("hank", "gina")
    t = w.time
    raw = act_record(w.org_id, gina.id, gina.device.device_id, t, "campaign", "space", "approve", subject=hank.id)
    record, sig = CoalitionAct.parse(raw), sign_act(gina.device, raw)
    judge_act(record, sig, w.org(), w.members(), stored=True)  # before the revocation: taken
    w.role(founder, gina, "ncc", grant=False)
    w.role(hank, gina, "ncc", grant=False)
    assert "ncc" not in w.org().roles_of(gina.id, w.time) and w.time > t
    judge_act(record, sig, w.org(), w.members())  # by dates: she held NCC at t
    expect(PolicyDenied, lambda: judge_act(record, sig, w.org(), w.members(), stored=True),
           "as the organization chain stood")
    raw = act_record(w.org_id, founder.id, founder.device.device_id, t, "campaign", "space", "approve",
                     subject=hank.id)
    judge_act(CoalitionAct.parse(raw), sign_act(founder.device, raw), w.org(), w.members(), stored=True)
