"""Issue 20, session 18: an NCC role that ends by its term (no command marks it) leaves the coalition key stale
(security/stalekeys.py): the remaining NCC's next commands replace it through the two-person flow
(client/coalitionrekey.py ``when_stale``, run after every command of an NCC member holding the key), and the former
member's old key then signs nothing the host or the ally accepts. Two real servers (the host: alice's organization,
tests/helpers/forgery.py; the ally: dora's, tests/helpers/allies.py), the real CLI, both clocks moved past the term."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.allies import own_server
from tests.helpers.forgery import Forge
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guests import erin_of
from tests.helpers.members import session, unlock_here
from tests.test_coalition_rekey_cli import _old_key_expel_refused
from vault.chains.coalition import CoalitionKey

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = ally_fixture
LATER = 2 * 86400  # past the end of gina's term (the end of today, UTC)


def test_an_ncc_term_ends_the_next_ncc_commands_replace_the_key_and_the_old_one_signs_nothing(
        forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """dora, hank (NCC until 2099) and gina (NCC until today) hold the ally's key; gina approves fred with it. Two days
    later: gina's and erin's commands do nothing; dora's proposes a new key (once: her next command does not propose
    again), hank's records it (an `invite`, a command ending on its own chain link: the hook decides from the view
    before it and then fetches the chains), dora's next seals it to the two of them; erin carries it to the host. The
    host then refuses gina's approval signed with the old key and takes hank's; the host's own key, sealed to bob (NCC
    until today on the host), is listed stale by alice's `coalition ls`, which replaces it; the ally refuses an
    `org.remove` whose `coalition.expel` gina's old key signed."""
    alice, dora = forge.org.alice, ally
    unlock_here(dora)  # her ~15 commands and the others' ~15 skip Argon2id (alice's agent: the forge fixture)
    people = {n: erin_of(forge, dora, make_member, monkeypatch, n) for n in ("erin", "fred", "gina", "hank")}
    erin, gina, hank = people["erin"], people["gina"], people["hank"]
    unlock_here(erin, gina, hank)
    pairing = dora.json("coalition", "pairing-code", "campaign")["code"]
    old = bytes.fromhex(pairing.split(":")[3])
    dora.ok("role", "grant", "hank", "ncc", "--until", "2099-01-01")  # dora's client seals the key to hank
    # the UTC day an hour from now: the terms below end 1 to 25 h ahead, so the grants never come after the end (near
    # midnight "today" could end before the commands below ran) and LATER (48 h) is always past it
    today = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).date().isoformat()
    assert dora.json("role", "grant", "gina", "ncc", "--until", today)["proposed"] is True
    hank.ok("role", "grant", "gina", "ncc", "--until", today)  # in force: hank's client seals the key to gina
    space = alice.json("coalition", "create", "campaign", "--with", pairing)["space"]
    org = alice.json("coalition", "show", "campaign")["allies"][0]["name"]
    code = gina.json("coalition", "approve", "campaign", "erin", "--space", space)["code"]
    alice.ok("coalition", "add", "campaign", f"erin@{org}", "--approval", code)
    erin.ok("coalition", "join", alice.json("coalition", "join-code", "campaign")["code"])
    before_end = gina.json("coalition", "approve", "campaign", "fred", "--space", space)["code"]
    gina_seed = Home(gina.home).unlock().coalitions["campaign"]
    assert CoalitionKey(gina_seed).public == old
    alice.ok("role", "grant", "bob", "ncc", "--until", today)  # the host's own key, sealed to bob
    host_key = forge.d.team(space).host_key

    for server in (forge.server, own_server(tmp_path)):
        server.advance(LATER)
    for m in (alice, dora, erin, gina, hank):
        m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(LATER)
    monkeypatch.setenv("MVAULT_TEST_CLOCK_OFFSET", str(LATER))  # the in-process sessions below
    listed = alice.ok("coalition", "ls", "--json")  # bob's term ended: the host's key is stale, then replaced
    assert [r["key"] for r in listed.json()] == ["stale"], listed.out
    assert "coalition key campaign: replaced and sealed to the NCC; guests carry" in listed.err, listed.err
    assert alice.json("coalition", "show", "campaign")["coalition_key"]["stale"] == []
    assert forge.d.team(space).host_key != host_key  # carried into the space by alice's command (a member)
    for m in (gina, erin):  # out of the NCC, or never in it: nothing
        assert "coalition key" not in m.ok("members").err
    gina.fails("coalition", "approve", "campaign", "fred", "--space", space, contains="may not record")  # her client
    proposed = dora.ok("members").err
    assert "coalition key campaign: new key proposed" in proposed and "sealed to gina" in proposed, proposed
    assert "coalition key" not in dora.ok("members").err  # pending: not proposed again
    assert asyncio.run(_rekeys(tmp_path, dora)) == (old, ["dora"])
    signed = hank.ok("invite").err  # a command ending on its own link: the hook decides from the view before it
    assert "coalition key campaign: replaced (your signature recorded it)" in signed, signed
    sealed = dora.ok("members").err
    assert "coalition key campaign: replaced and sealed to the NCC" in sealed, sealed
    new, pending = asyncio.run(_rekeys(tmp_path, dora))
    assert new != old and pending == []
    assert "coalition key" not in dora.ok("members").err + hank.ok("members").err  # nothing stale now

    carried = erin.ok("--space", "campaign", "ls", "campaign").err
    assert "carried your organization's new coalition key to coalition space campaign" in carried, carried
    assert [a.key for a in forge.d.team(space).allies.values()] == [new]
    alice.fails("coalition", "add", "campaign", f"fred@{org}", "--approval", before_end,  # gina's old key
                contains="not signed with the coalition key")
    assert forge.ids["fred"] not in forge.d.team(space).members
    alice.ok("coalition", "add", "campaign", f"fred@{org}", "--approval",
             hank.json("coalition", "approve", "campaign", "fred", "--space", space)["code"])
    asyncio.run(_old_key_expel_refused(own_server(tmp_path), dora, gina_seed, people["fred"]))


async def _rekeys(tmp_path: Path, dora: Member) -> tuple[bytes, list[str]]:
    """The key the ally's chain records for ``campaign``, and who proposed a new one still waiting."""
    async with session(own_server(tmp_path), dora) as s:
        view = await s.chains.view(refresh=True)
        return view.org.coalitions["campaign"].key, [view.name_of(by) for act, (by, _) in
                                                     view.org.role_proposals.items()
                                                     if act[:2] == ("org.coalition", "campaign")]
