"""The server's hold on a re-acting subject (server/holds.py, session 25): a link ending someone's rights refused
(409) only for its subject's own acts, after passing every other check, holds the subject for ``HOLD`` s of the
server's clock: her acts dated at or after the 409's ``not_before`` are refused, those dated before it are taken, and
the hold ends when the link is stored or ``HOLD`` passes. A link its signer may not make holds nobody. The worst
case the hold answers: tests/test_revoker_clock_behind.py, ``test_a_subject_re_acting_every_second_...``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.client import Client
from client.devicerevoke import device_revoke
from client.view import Chains
from server.context import DIRECTORY
from server.holds import HOLD
from tests.conftest import Org, security_team
from tests.helpers.clock import StoppedClock
from tests.helpers.guests import laptop_of
from tests.helpers.members import session
from vault.errors import Conflict, PolicyDenied
from vault.links import make_link
from vault.wire.schemas import LinkRequest, SeqAnswer


async def _post_org(s: Client, type_: str, body: dict[str, Any], time: int) -> None:
    """An organization link signed by ``s``'s device dated ``time``, posted as it is (no client check, no retry)."""
    view = await s.chains.view(refresh=True)
    link = make_link(chain=view.org.org_id, seq=view.org.seq + 1, prev=view.org.head, time=time, signer=s.session.me,
                     device=s.session.device, type_=type_, body=body)
    await s.session.api.post("/api/v1/org/links", LinkRequest(link.wire), SeqAnswer)


def _revoking(carol_id: str) -> dict[str, Any]:
    return {"member": carol_id, "role": "security", "grant": False, "until": None}


async def test_a_hold_refuses_the_subjects_acts_dated_after_it_until_hold_passes(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """carol stores a version dated the server's now + 600; alice's revocation of her role dated now is refused
    (409, ``not_before`` the second after carol's act). For ``HOLD`` s carol's act dated at ``not_before`` is refused,
    naming the hold; her act dated before it is taken; once ``HOLD`` passed (the server's clock moved on) her act
    dated at the new skew is taken. Before (no hold): her act dated at ``not_before`` was taken."""
    carol = security_team(org, make_member)
    cover = tmp_path / "cover.txt"
    cover.write_text("cover\n")
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    async with session(org.server, carol) as sc, session(org.server, org.alice) as sa:
        now = int(org.server.clock())
        sc.session.clock = StoppedClock(at=now + 600)
        await sc.docs.put("sec", cover)
        with pytest.raises(Conflict) as refused:
            await _post_org(sa, "org.role", _revoking(sc.session.me), now)
        not_before = refused.value.not_before
        assert not_before == now + 601, (not_before, now)
        org.server.advance(1)  # a second later (``not_before`` within the server's window)
        sc.session.clock = StoppedClock(at=not_before)
        with pytest.raises(Conflict) as held:
            await sc.docs.put("sec", cover)
        said = str(held.value)
        assert "a link ending your rights (org.role) is being stored; retry in" in said, said
        assert f"acts dated {not_before} or later are refused" in said, said
        sc.session.clock = StoppedClock(at=now)  # before the hold's date: taken
        await sc.docs.put("sec", cover)
        org.server.advance(HOLD)
        sc.session.clock = StoppedClock(at=int(org.server.clock()) + 600)
        await sc.docs.put("sec", cover)  # the hold passed: taken
        assert not org.server.app[DIRECTORY].holds.held


async def test_a_link_its_signer_may_not_make_holds_nobody(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """bob, a plain member, posts the revocation of carol's Security Team role dated before her last act (dated at
    the skew): refused as his to make (403), not 409, and carol is not held: her next act dated at the skew is taken.
    (A hold placed before the judge would let any member freeze another.)"""
    carol = security_team(org, make_member)
    cover = tmp_path / "cover.txt"
    cover.write_text("cover\n")
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    async with session(org.server, carol) as sc:
        now = int(org.server.clock())
        sc.session.clock = StoppedClock(at=now + 600)
        await sc.docs.put("sec", cover)
        monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(org.bob.passphrase_file))
        async with session(org.server, org.bob) as sb:
            with pytest.raises(PolicyDenied):
                await _post_org(sb, "org.role", _revoking(sc.session.me), now)
        assert not org.server.app[DIRECTORY].holds.held
        org.server.advance(1)
        sc.session.clock = StoppedClock(at=now + 601)
        await sc.docs.put("sec", cover)  # taken


async def test_a_device_revocation_refused_for_another_reason_holds_nobody(
        org: Org, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """bob's laptop stores a version dated at the skew; bob revokes it from his first device with key boxes that do
    not match the link's commitments (409 for the date, then 400 for the boxes): no hold, the laptop's next act dated
    at the skew is taken. The 409 still comes first (a revocation carried by a later command without its boxes,
    review 24): it places no hold."""
    bob = org.bob
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(bob.passphrase_file))
    laptop = laptop_of(bob, tmp_path)
    (tmp_path / "cover.txt").write_text("cover story\n")
    laptop.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "600"
    laptop.ok("put", "drafting", str(tmp_path / "cover.txt"))
    posted = Chains._post_link

    async def bad_boxes(self: Chains, path: str, body: Any, answer: Any) -> None:
        if "/members/" in path:
            body.puk_boxes = {d: b"\0" * len(b) for d, b in body.puk_boxes.items()}
        await posted(self, path, body, answer)

    monkeypatch.setattr(Chains, "_post_link", bad_boxes)
    async with session(org.server, bob) as s:
        with pytest.raises(Exception) as refused:
            await device_revoke(s, "laptop")
        assert "do not match" in str(refused.value), refused.value
    assert not org.server.app[DIRECTORY].holds.held
    org.server.advance(1)  # a second later: the laptop's act dated after the last, at the skew
    laptop.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "601"
    laptop.ok("put", "drafting", str(tmp_path / "cover.txt"))  # taken


async def test_a_thiefs_device_held_leaves_the_members_other_device_free(
        org: Org, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """bob's laptop (a thief's) stores versions dated at the skew. bob's ``device revoke`` is refused once (409): the
    laptop is held (its next act dated at the new skew refused, naming the hold) and bob's first device is not (it
    stores a version dated at the skew, and its retry, the revocation, is taken). Before (no hold): the thief's act
    was taken and the retry refused again."""
    bob = org.bob
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(bob.passphrase_file))
    laptop = laptop_of(bob, tmp_path)
    cover = tmp_path / "cover.txt"
    cover.write_text("cover story\n")
    laptop.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "600"
    laptop.ok("put", "drafting", str(cover))
    posted = Chains._post_link
    tries: list[str] = []

    async def racing(self: Chains, path: str, body: Any, answer: Any) -> None:
        if "/members/" in path:
            if tries:  # the retry: a second later, the thief acts first
                org.server.advance(1)
                laptop.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(int(org.server.offset) + 600)
                tries.append(laptop.fails("put", "drafting", str(cover)).err)
                self.session.clock = StoppedClock(at=int(org.server.clock()) + 600)  # bob's first device: not held
                await s.docs.put("drafting", cover)
                self.session.clock = StoppedClock(at=int(org.server.clock()))
            else:
                tries.append("")
        await posted(self, path, body, answer)

    monkeypatch.setattr(Chains, "_post_link", racing)
    async with session(org.server, bob) as s:
        s.session.clock = StoppedClock(at=int(org.server.clock()))
        revoked = await device_revoke(s, "laptop")
    assert len(tries) == 2, tries
    assert "a link ending this device's rights (device.revoke) is being stored; retry in" in tries[1], tries
    assert revoked.time > int(org.server.clock()), revoked
    r = laptop.run("whoami")
    assert r.code != 0 and "revoked" in r.err, (r.code, r.err)


async def test_a_held_members_sync_pass_keeps_her_edit_and_pushes_it_once_the_hold_ends(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """carol, held (as in the first test), edits a synced file and runs ``mvault sync``: the push is refused (exit 1,
    the row "failed" naming the hold), her edit stays under its name and no conflict copy is made; once ``HOLD``
    passed the next pass pushes it. Before (session 24's client): every 409 on a push was taken for a version
    conflict: her file was renamed to a conflict copy and the team's version fetched into its name."""
    carol = security_team(org, make_member)
    folder = tmp_path / "sec"
    folder.mkdir()
    (folder / "plan.md").write_text("plan 1\n")
    carol.ok("sync", "sec", str(folder))
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    async with session(org.server, carol) as sc, session(org.server, org.alice) as sa:
        now = int(org.server.clock())
        sc.session.clock = StoppedClock(at=now + 600)
        (tmp_path / "cover.txt").write_text("cover\n")
        await sc.docs.put("sec", tmp_path / "cover.txt")  # an act dated at the skew
        with pytest.raises(Conflict):
            await _post_org(sa, "org.role", _revoking(sc.session.me), now)
    org.server.advance(1)
    carol.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "601"  # the server's clock + 600: dated within the hold
    (folder / "plan.md").write_text("plan 2, carol's edit\n")
    r = carol.run("sync", "sec", str(folder), "--json")
    assert r.code == 1, (r.code, r.err, r.out)
    rows = {x["name"]: x for x in r.json()}
    assert rows["cover.txt"]["action"] == "pull" and rows["plan.md"]["action"] == "failed", rows
    assert "is being stored; retry in" in rows["plan.md"]["detail"], rows
    assert sorted(p.name for p in folder.iterdir()) == ["cover.txt", "plan.md"]  # no conflict copy
    assert (folder / "plan.md").read_text() == "plan 2, carol's edit\n"
    org.server.advance(HOLD)
    carol.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(int(org.server.offset))
    pushed = carol.json("sync", "sec", str(folder))
    assert [(x["action"], x["name"]) for x in pushed] == [("push", "plan.md")], pushed
