"""Session 19 (fix20, review round 20): an NCC member's device revoked makes the coalition keys it could open stale
(security/stalekeys.py), so the `device revoke` command itself starts their rekey (the hook after every command,
client/coalitionrekey.py ``when_stale``), and a rekey the seized device proposed before its revocation is void (the
judge, vault/chains/twoperson.py): the second NCC member records the key hank's phone made, never the thief's. One
real server (the ally's: tests/helpers/allies.py), the real CLI, hank's laptop linked as his second device."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.allies import own_server
from tests.helpers.guests import laptop_of
from tests.helpers.members import session
from vault.chains.coalition import CoalitionKey

ally = ally_fixture


@pytest.mark.parametrize("thief_ahead", [0, 3])
def test_revoking_a_seized_ncc_device_replaces_the_key_and_never_records_the_thiefs(
        ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, thief_ahead: int) -> None:
    """``thief_ahead``: the laptop's clock runs that many seconds ahead, so hank's revocation is dated after his
    phone's clock (the server's ``not_before``). Session 20: before, the key was not stale at the phone's time and
    the hook proposed nothing (CI's one failure: a proposal and a revocation in the same second did the same)."""
    dora = ally
    hank: Member = make_member("hank")
    hank.ok("join", dora.json("invite")["invite"], "--name", "hank")
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(hank.passphrase_file))
    old = bytes.fromhex(dora.json("coalition", "pairing-code", "campaign")["code"].split(":")[3])
    dora.ok("role", "grant", "hank", "ncc")  # one signature (no third NCC member); dora's client seals the key
    laptop = laptop_of(hank, tmp_path)
    if thief_ahead:
        laptop.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(int(own_server(tmp_path).offset) + thief_ahead)
    stolen = laptop.ok("coalition", "rekey", "campaign")  # the thief, on the seized laptop: its own key proposed
    assert "new key proposed" in stolen.out + stolen.err, stolen.out + stolen.err
    thief = {CoalitionKey(s).public for s in Home(laptop.home).unlock().coalitions.values()} - {old}
    assert len(thief) == 1

    revoked = hank.ok("device", "revoke", "laptop")  # from his phone: the hook runs after the command
    out = revoked.out + revoked.err
    assert "coalition key campaign: new key proposed" in out and "lost a device" in out, out
    dora_out = dora.ok("coalition", "rekey", "campaign")  # the second NCC member, as docs/lifecycle.md tells
    said = dora_out.out + dora_out.err
    assert "replaced" in said and "hank (device " in said, said  # names who proposed what she signed, and where
    hank.ok("members")  # hank's next command seals his key to the NCC
    recorded, pending = asyncio.run(_recorded(tmp_path, dora))
    phone = {CoalitionKey(s).public for s in Home(hank.home).unlock().coalitions.values()}
    assert recorded != old and recorded in phone and recorded not in thief and pending == []
    assert "coalition key" not in dora.ok("members").err + hank.ok("members").err  # nothing stale any more


async def _recorded(tmp_path: Path, dora: Member) -> tuple[bytes, list[str]]:
    """The key the ally's chain records for ``campaign``, and who has a rekey of it waiting (live devices)."""
    async with session(own_server(tmp_path), dora) as s:
        view = await s.chains.view(refresh=True)
        waiting = view.org.pending(view.members, s.session.now())
        return view.org.coalitions["campaign"].key, [view.name_of(by) for act, (by, _, _) in waiting.items()
                                                     if act[:2] == ("org.coalition", "campaign")]
