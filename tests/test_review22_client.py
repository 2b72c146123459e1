"""Session 19 (fix22, review round 22), the client's side against a server that takes the link: an NCC member's
``role grant`` by hand never becomes the second signature of a proposal whose device the view holds revoked, however
the revocation is dated (``client/view.py`` ``append_org``: dated at the revocation, the judge has dropped the
proposal and the link proposes the act anew). One real server (the ally's: tests/helpers/allies.py) with its
``Directory._check_not_void`` switched off (a server that takes the link), the real CLI, hank's laptop linked."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import client.view as client_view
from server.directory import Directory
from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.allies import own_server
from tests.helpers.guests import laptop_of
from tests.helpers.members import session
from vault.chains.twoperson import role_act
from vault.errors import Conflict, VaultError

ally = ally_fixture


def _revoked_ahead(dora: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """hank (NCC) and gina join; hank's laptop (the thief) proposes gina for NCC; hank's ``device revoke laptop`` is
    dated 300 s ahead (hank's clock; or after a thief's forward-dated link)."""
    hank: Member = make_member("hank")
    hank.ok("join", dora.json("invite")["invite"], "--name", "hank")
    gina: Member = make_member("gina")
    gina.ok("join", dora.json("invite")["invite"], "--name", "gina")
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(hank.passphrase_file))
    dora.ok("role", "grant", "hank", "ncc")  # one signature (no third NCC member)
    laptop = laptop_of(hank, tmp_path)
    laptop.ok("role", "grant", "gina", "ncc")  # the thief, on the seized laptop: proposed (dora is a second NCC)
    hank.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(int(own_server(tmp_path).offset) + 300)
    hank.ok("device", "revoke", "laptop")
    del hank.env_extra["MVAULT_TEST_CLOCK_OFFSET"]


def test_a_grant_by_hand_does_not_put_in_force_a_proposal_of_a_device_revoked_ahead_of_the_clock(
        ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dora, server = ally, own_server(tmp_path)
    _revoked_ahead(dora, make_member, monkeypatch, tmp_path)
    monkeypatch.setattr(Directory, "_check_not_void", lambda self, link: 0)  # a server that takes it
    dora.ok("role", "grant", "gina", "ncc")  # by hand, her clock right: before fix22, the thief's act in force
    roles, last, revoked, waiting = asyncio.run(_state(tmp_path, dora))
    assert revoked >= server.clock() + 200  # the revocation is dated ahead of dora's clock
    assert "ncc" not in roles  # before fix22: gina held NCC
    assert last[0] == "dora" and last[1] >= revoked  # dora's link dated at the revocation: the judge dropped the void
    assert waiting == "dora"  # her own proposal waits for a second NCC member


def test_the_server_refuses_the_second_signature_of_a_proposal_of_a_device_revoked_ahead(
        ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The server's side over HTTP (``append_org_link``): a client signing as before fix22 (``void_devices`` seen
    empty) gets 409 naming the revocation, with its time as ``not_before``; nothing is stored."""
    dora = ally
    _revoked_ahead(dora, make_member, monkeypatch, tmp_path)
    monkeypatch.setattr(client_view, "void_devices", lambda org, members: {})  # the client before fix22
    refused, revoked, seq = asyncio.run(_grant_in_process(tmp_path, dora))
    assert isinstance(refused, Conflict) and "revoked or cut" in str(refused), refused  # before fix22: taken
    assert refused.not_before == revoked
    roles, _last, _revoked, waiting = asyncio.run(_state(tmp_path, dora))
    assert "ncc" not in roles and waiting == "hank"  # nothing stored: the thief's proposal still waits (void)


async def _grant_in_process(tmp_path: Path, dora: Member) -> tuple[BaseException | None, int, int]:
    async with session(own_server(tmp_path), dora) as s:
        view = await s.chains.view(refresh=True)
        gina, hank = view.member_by_name("gina"), view.member_by_name("hank")
        revoked = max(d.revoked for d in hank.devices.values() if d.revoked is not None)
        try:
            await s.chains.append_org("org.role", {"member": gina.member_id, "role": "ncc", "grant": True,
                                                   "until": None})
        except VaultError as e:
            return e, revoked, view.org.seq
        return None, revoked, view.org.seq


async def _state(tmp_path: Path, dora: Member) -> tuple[frozenset[str], tuple[str, int], int, str | None]:
    """gina's roles at the org chain's head, the last org link's (signer name, time), the laptop's revocation time and
    who proposed gina's NCC grant (None: nobody)."""
    async with session(own_server(tmp_path), dora) as s:
        view = await s.chains.view(refresh=True)
        gina, hank = view.member_by_name("gina"), view.member_by_name("hank")
        revoked = max(d.revoked for d in hank.devices.values() if d.revoked is not None)
        last = (view.name_of(view.org.signed[view.org.head].signer), view.org.time)
        proposal = view.org.role_proposals.get(role_act(gina.member_id, "ncc", True, None))
        return (view.org.roles_of(gina.member_id, view.org.time), last, revoked,
                view.name_of(proposal[0]) if proposal is not None else None)
