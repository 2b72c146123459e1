"""Review 33, finding 2 (tests/test_review33_exploits.py, the org link variants): a link ending someone's rights,
refused (409) as dated before their last act, is signed again dated the second the server names when that is at
most ``END_AHEAD`` ahead of the server's clock (the 409's ``server_time``) and ``END_AHEAD`` + ``CLOCKS_APART`` ahead
of the revoking device's own (client/view.py ``ending_retry``). Here: a thief's act on a seized device dated at the
server's skew, and the owner's other device 2 s slow (``device revoke``: taken); and a malicious server naming a
``not_before`` (and a clock) further ahead than that: the client refuses, naming both clocks, and signs nothing dated
beyond its own bound."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import server.http
from client.admin import set_org_role
from client.clock import Clock
from client.devicerevoke import device_revoke
from client.lost import cut_device
from client.view import CLOCKS_APART, END_AHEAD, Chains
from server.context import DIRECTORY
from server.directory import Directory
from tests.conftest import Org, ServerThread, security_team
from tests.helpers.clock import StoppedClock
from tests.helpers.guests import laptop_of
from tests.helpers.members import session
from vault.errors import Conflict
from vault.links import Link


async def test_a_thief_dating_an_act_at_the_skew_cannot_keep_a_slightly_slow_device_from_revoking_it(
        org: Org, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """bob's laptop is seized; the thief uploads a document dated 600 s ahead of the server's clock (its skew:
    taken). bob revokes the laptop from his first device, whose clock is 2 s behind the server's (as it was when the
    thief acted). Before (``END_AHEAD`` on this device's clock alone): the retry needed (the thief's time + 1 =
    the server's then + 601) was 603 s ahead of bob's clock, refused by his client, and the 409 raised; the thief's
    sessions went on."""
    bob = org.bob
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(bob.passphrase_file))
    laptop = laptop_of(bob, tmp_path)
    (tmp_path / "cover.txt").write_text("cover story\n")
    laptop.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "600"  # the server's clock is the real one (offset 0)
    laptop.ok("put", "drafting", str(tmp_path / "cover.txt"))
    del laptop.env_extra["MVAULT_TEST_CLOCK_OFFSET"]
    async with session(org.server, bob) as s:
        view = await s.chains.view(refresh=True)
        stolen = next(d for d in view.members[s.session.me].active_devices() if d.name == "laptop")
        t = org.server.app[DIRECTORY].signed_by_device[stolen.device_id]  # the thief's act: its signed time
        assert t >= int(time.time()) + 590, t  # dated at the skew
        s.session.clock = StoppedClock(at=t - 602)  # 2 s behind the server's clock when the thief acted
        revoked = await device_revoke(s, "laptop")
    assert revoked.time == t + 1, (revoked.time, t)  # the second after the thief's act: 603 s ahead of bob's clock
    assert "603 s ahead of this device's clock" in revoked.ahead, revoked.ahead
    r = laptop.run("whoami")
    assert r.code != 0 and "revoked" in r.err, (r.code, r.err)  # the thief is out at once


def _naming(monkeypatch: pytest.MonkeyPatch, not_before: int, kind: str) -> list[int]:
    """A malicious server: it refuses every ``kind`` link (409) as dated too early, naming ``not_before`` and a clock
    of its own ``END_AHEAD`` before that (so the server's word alone would allow it). Returns the times of the links
    it was asked to take."""
    seen: list[int] = []
    honest = Directory.check_not_before

    def lying(self: Directory, link: Link, window: tuple[int, int] | None = None) -> None:
        if link.type != kind:
            return honest(self, link, window)
        seen.append(link.time)
        raise Conflict(f"someone signed something, not before this {link.type}", not_before)

    monkeypatch.setattr(Directory, "check_not_before", lying)
    monkeypatch.setattr(server.http, "now_of", lambda request: not_before - END_AHEAD)
    return seen


@pytest.mark.parametrize("ahead", [END_AHEAD + CLOCKS_APART + 5, 86400])
async def test_a_server_cannot_have_a_role_revocation_dated_far_ahead(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch, ahead: int) -> None:
    """A 409 naming a ``not_before`` beyond ``END_AHEAD`` + ``CLOCKS_APART`` of alice's clock (just beyond, and a
    day): refused, the error naming both clocks; no link was signed dated beyond her bound (dated so, the role's end
    would take effect that much later). Before: refused too, but with the server's words only (no clocks named)."""
    security_team(org, make_member)
    now = int(time.time())
    seen = _naming(monkeypatch, now + ahead, "org.role")
    async with session(org.server, org.alice) as sa:
        sa.session.clock = StoppedClock(at=now)
        with pytest.raises(Conflict) as refused:
            await set_org_role(sa, "carol", "security", False, None)
    said = str(refused.value)
    assert f"this device's ({now})" in said and f"server's clock reads {now + ahead - END_AHEAD}" in said, said
    assert f"{ahead} s ahead of this device's clock" in said and "check both clocks" in said, said
    assert seen == [now], seen  # signed once, dated now: nothing dated ahead
    assert max(seen) <= now + END_AHEAD + CLOCKS_APART


async def test_a_server_cannot_have_a_device_revocation_dated_far_ahead(
        org: Org, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The same for ``device revoke``: the laptop stays active (nothing stored), the error names both clocks."""
    bob = org.bob
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(bob.passphrase_file))
    laptop_of(bob, tmp_path)
    now = int(time.time())
    seen = _naming(monkeypatch, now + 3600, "device.revoke")
    async with session(org.server, bob) as s:
        s.session.clock = StoppedClock(at=now)
        with pytest.raises(Conflict) as refused:
            await device_revoke(s, "laptop")
        view = await s.chains.view(refresh=True)
        assert "laptop" in [d.name for d in view.members[s.session.me].active_devices()]
    said = str(refused.value)
    assert f"server's clock reads {now + 3600 - END_AHEAD}" in said and f"this device's ({now})" in said, said
    assert seen == [now], seen


@dataclass(frozen=True)
class _ServersClock(Clock):
    """A client clock that reads the server's (the clocks right, as the server's moves)."""

    server: ServerThread | None = None

    def now(self) -> int:
        assert self.server is not None
        return int(self.server.clock())


async def test_a_subject_re_acting_every_second_cannot_outrun_the_revokers_retries(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The worst case, made deterministic: the clocks right (alice's reads the server's); carol stores a document
    version dated the server's now + 600 (its skew); before each of alice's retries the server's clock moves on a
    second and carol tries to store another, dated at the new skew, first. Before (session 24, a strict xfail): each
    retry, dated the ``not_before`` of the last 409, was then in the second of carol's newest act: refused again, and
    after ``END_ATTEMPTS`` the command failed (SECURITY.md, "A subject re-acting every second"). Now the 409 holds
    carol (server/holds.py): her act dated after it is refused, naming the hold, and the first retry is taken."""
    carol = security_team(org, make_member)
    cover = tmp_path / "cover.txt"
    cover.write_text("cover\n")
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    async with session(org.server, carol) as sc, session(org.server, org.alice) as sa:
        sa.session.clock = _ServersClock(server=org.server)

        async def act() -> None:  # carol, at the server's skew
            sc.session.clock = StoppedClock(at=int(org.server.clock()) + 600)
            await sc.docs.put("sec", cover)

        await act()
        posted = Chains._post_link
        tries: list[int] = []
        held: list[str] = []

        async def racing(self: Chains, path: str, body: Any, answer: Any) -> None:
            if self is sa.chains and path == "/api/v1/org/links":
                if tries:  # a retry: the server's clock moved on a second on the way, and carol acted first
                    org.server.advance(1)
                    with pytest.raises(Conflict) as refused:
                        await act()
                    held.append(str(refused.value))
                tries.append(1)
            await posted(self, path, body, answer)

        monkeypatch.setattr(Chains, "_post_link", racing)
        assert (await set_org_role(sa, "carol", "security", False, None))[1]
        stored = org.server.app[DIRECTORY]
        assert "security" not in stored.require_org().roles_of(sc.session.me, int(org.server.clock()) + 700)
        assert not stored.holds.held  # ended by the revocation's storing
    assert len(tries) == 2, tries  # taken at the first retry
    assert len(held) == 1 and "a link ending your rights (org.role) is being stored; retry in" in held[0], held


async def test_a_server_cannot_have_a_cut_dated_far_ahead(
        org: Org, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The same for the Security Team's (here the NCC's) cut of a lost device (``client/lost.py`` ``cut_device``,
    which looks again and signs again after a 409): refused, both clocks named, nothing signed dated ahead. Before
    (session 24, first commit): the command's own retry took the lying ``not_before`` as the date of its next two
    cuts, signed an hour ahead."""
    bob = org.bob
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(bob.passphrase_file))
    laptop_of(bob, tmp_path)
    monkeypatch.delenv("MVAULT_PASSPHRASE_FILE")
    now = int(time.time())
    seen = _naming(monkeypatch, now + 3600, "org.device.cut")
    async with session(org.server, org.alice) as sa:
        sa.session.clock = StoppedClock(at=now)
        with pytest.raises(Conflict) as refused:
            await cut_device(sa, "bob", "laptop")
    said = str(refused.value)
    assert f"server's clock reads {now + 3600 - END_AHEAD}" in said and f"this device's ({now})" in said, said
    assert seen and max(seen) <= now + 1, seen
    assert said.count("the server said") == 1, said  # one wrap of the server's text (review 37, "Also seen")
