"""Review round 32 (fix27cosig over PostgreSQL, two server processes): a Security Team member's cosignature through
process one at once with the NCC's end of that member's security role through process two, three rounds. The
cosignature is stored only while the signer's member chain and the organization chain are as judged (``add_cosig``,
under those chains' locks taken shared); whatever order the two take, no stored cosignature may be dated in or after
the second of the role's end, the NCC's client keeps verifying the witnessed log through both processes, and another
Security Team member's ``audit verify`` through each finds no cosignature of a checkpoint over the log holding the
role's end (``_check_cosigners``, fix33a: not run over two processes before session 25). Before
fix32a it failed when the two fell in the same second (review 32's finding of that name: the revocation was taken,
every client stopped); the race decides whether they do, so tests/test_role_end_dating.py puts them there in order
(docs/STATUS.md, "Review round 32")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from client.admin import set_org_role
from client.audit.log import verify_log, witness
from client.checkpoints import check_witness, sync_log
from tests.conftest import join_member, security_team
from tests.helpers.members import session
from tests.helpers.pair import Pair
from vault.errors import VaultError


async def test_a_cosignature_at_once_with_the_end_of_its_signers_role_in_the_other_process(
        pair: Pair, make_member: Any) -> None:
    carol = security_team(pair.org, make_member)  # through process one (the CLI's server)
    alice = pair.org.alice
    dana = join_member(pair.org, make_member, "dana")  # a second Security Team member: her ``audit verify`` judges
    alice.ok("role", "grant", "dana", "security", "--until", "2099-01-01")  # the served cosignatures
    carol.ok("team", "add", "sec", "dana", "--role", "admin")  # (``_check_cosigners``) at the log's org state
    # In order first: carol cosigns through two; alice ends the role through one; carol's next cosignature through
    # two is refused (two judges it on the organization chain one stored: ``judge_stored``); dana's verify through
    # each process finds carol's first cosignature served, and nothing wrong with it.
    async with session(pair.two, carol) as sc:
        await witness(sc)
    async with session(pair.one, alice) as sa:
        await set_org_role(sa, "carol", "security", False, None)
    async with session(pair.two, carol) as sc:
        with pytest.raises(VaultError):
            await witness(sc)
    for server in (pair.one, pair.two):
        async with session(server, dana) as s:
            verified, *_ = await verify_log(s)
            assert not verified.problems, verified.problems
            lv = await sync_log(s.session)
            assert lv.witness is not None and {c.member for c in lv.witness.cosigs} == {carol.json("whoami")["member"]}
    alice.ok("role", "grant", "carol", "security", "--until", "2099-01-01")
    carol.ok("whoami")
    outcomes: list[tuple[bool, bool]] = []
    for _ in range(3):
        async with session(pair.one, carol) as sc, session(pair.two, alice) as sa:
            got = await asyncio.gather(witness(sc), set_org_role(sa, "carol", "security", False, None),
                                       return_exceptions=True)
        for x in got:  # a refusal is a VaultError (judged after the role's end), nothing else
            assert not isinstance(x, BaseException) or isinstance(x, VaultError), repr(x)
        outcomes.append((not isinstance(got[0], BaseException), not isinstance(got[1], BaseException)))
        # secure: every cosignature served is by a member on the Security Team at its signed time, through both
        # processes (``check_witness`` raises otherwise), and alice's commands go on (exit 0). Not carol's: once her
        # role ends, the team chains she saw as an overseer are hidden and her client stops ("no longer shows
        # chain"; review 32's fourth finding)
        for server in (pair.one, pair.two):
            async with session(server, alice) as s:
                lv = await sync_log(s.session)
                print("round", len(outcomes), "(cosigned, role ended):", outcomes[-1])
                view = await s.chains.view(refresh=True)
                assert lv.witness is not None or not outcomes[-1][0]
                if lv.witness is not None:
                    check_witness(s.session, view.org, view.members, lv.witness)
        r = alice.run("whoami")
        assert r.code == 0, (r.code, r.err)
        for server in (pair.one, pair.two):  # no cosignature taken after the log recorded the role's end
            async with session(server, dana) as s:
                verified, *_ = await verify_log(s)
                assert not verified.problems, verified.problems
        alice.ok("role", "grant", "carol", "security", "--until", "2099-01-01")
        carol.ok("whoami")
    print("(cosigned, role ended) per round:", outcomes)
    assert all(ended for _, ended in outcomes)
