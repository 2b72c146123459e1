"""Review 27, finding 2 (tests/test_review27_exploits.py has the review's order: over PostgreSQL a Security Team
cosignature judged by process one, held before its insert while process two stores its device's revocation; before
the fix it was stored after it, dated before it, and every member's next command stopped, exit 3). The cosignature is
now stored only while its signer's member chain and the organization chain are as judged (``add_cosig``'s
``signer``, under those chains' locks taken shared on PostgreSQL); else the route catches up and judges it again.
Here: the other order over PostgreSQL (the revocation judged in process two and held, the cosignature stored by
process one meanwhile: the revocation is refused or dated after it), and the route's answer when the store keeps
answering ``SignerMoved`` (one SQLite server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.audit.log import witness
from server.context import AUDIT
from server.store.records import SignerMoved
from tests.conftest import Org, security_team
from tests.helpers.guests import laptop_of
from tests.helpers.members import SECRETS, session
from tests.helpers.pair import Pair
from tests.test_revoke_race import dated_after_or_refused, revocation_held_while


async def test_a_revocation_held_in_one_process_is_dated_after_a_cosignature_the_other_stored_meanwhile(
        pair: Pair, make_member: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    carol = security_team(pair.org, make_member)  # through process one (the CLI's server)
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    laptop = laptop_of(carol, tmp_path)
    sizes: list[int] = []

    async def cosign(s: Any) -> None:  # the laptop (its clock ahead) witnesses through process one
        sizes.append((await witness(s))[1])

    refused = await revocation_held_while(pair, laptop, monkeypatch, cosign, owner=carol)
    assert sizes, "the laptop's cosignature was not stored"
    print("revocation refused:", refused)
    # secure: the revocation, if taken, is dated after the cosignature (or refused for it), and every member's
    # commands keep verifying the witnessed log through both processes
    for m in (pair.org.alice, carol):
        r = m.run("whoami")
        assert r.code == 0, (m.name, r.code, r.err)
    for server in (pair.one, pair.two):
        async with session(server, carol) as s:
            view = await s.chains.view(refresh=True)
            device = view.members[s.session.me].devices[SECRETS[laptop.home][1].device.device_id]
    dated_after_or_refused(device, refused, s.session.now())


def test_a_cosignature_whose_signers_chains_keep_moving_is_refused_with_409(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    carol = security_team(org, make_member)
    me = carol.json("whoami")["member"]
    store = org.server.app[AUDIT]
    real, tries = store.add_cosig, []

    async def moving(*args: Any) -> Any:  # the chains moved before every insert (STORE_TRIES of them)
        tries.append(args[-1])
        return SignerMoved()

    monkeypatch.setattr(store, "add_cosig", moving)
    carol.fails("audit", "witness", contains="your member chain or the organization chain changed while this was "
                "stored; sync and try again")
    assert [set(signer) for signer in tries] == [{me, "org"}] * 3  # caught up and judged again each time

    async def once(*args: Any) -> Any:  # moved once: judged again, then stored
        tries.append(args[-1])
        return SignerMoved() if len(tries) == 4 else await real(*args)

    monkeypatch.setattr(store, "add_cosig", once)
    carol.ok("audit", "witness")
    assert len(tries) == 5
    org.bob.ok("whoami")  # the witnessed checkpoint verifies
