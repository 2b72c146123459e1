"""Review 26, finding 1 (tests/test_review26_exploits.py: a cosignature dated ahead by a seized Security Team device,
then its revocation, on one running server): a witness cosignature is a signed act of its device, so a revocation is
dated after it whichever server process took it. Here: after a restart (the stored cosignatures are read at start,
on both backends) and through the other process over PostgreSQL (``signed_since`` reads the ``cosigs`` table: the
pair, tests/helpers/pair.py). Before the fix the revocation was stored dated before the cosignature and every
member's next command stopped (exit 3, "a cosignature names a device or member that was not on the Security Team
then")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.devicerevoke import device_revoke
from tests.conftest import Org
from tests.helpers.cosign_ahead import still_in, witnessed_ahead
from tests.helpers.members import session
from tests.helpers.pair import Pair

AHEAD = 300  # the thief's clock: within the server's 600 s skew


@pytest.mark.usefixtures("world_backend")
def test_a_cosignature_dated_ahead_counts_against_the_revocation_after_a_restart(
        org: Org, make_member: Any, tmp_path: Path) -> None:
    carol, laptop = witnessed_ahead(org, make_member, tmp_path, AHEAD)  # a cosignature dated 300 s ahead
    org.server = org.server.restart()  # what this process noted is gone: read from the audit store at start
    revoke = carol.run("device", "revoke", "laptop")
    assert revoke.code == 0, revoke.err
    assert "ahead of this device's clock" in revoke.out, revoke.out  # dated after the cosignature
    assert laptop.run("whoami").code == 1  # the thief is out
    still_in(org.alice, org.bob, carol)


async def test_a_cosignature_through_one_process_counts_against_the_revocation_through_the_other(
        pair: Pair, make_member: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # through process one (the CLI's server): the cosignature stored by process one, dated 300 s ahead
    carol, laptop = witnessed_ahead(pair.org, make_member, tmp_path, AHEAD)
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    async with session(pair.two, carol) as s:  # process two: it noted nothing of the cosignature
        revoked = await device_revoke(s, "laptop")
    # refused once (409: the laptop signed something dated after it), signed again dated after the cosignature
    assert "ahead of this device's clock" in revoked.ahead, revoked
    assert laptop.run("whoami").code == 1
    still_in(pair.org.alice, carol)


def test_the_security_role_ended_before_a_cosignature_dated_ahead_does_not_lock_the_organization_out(
        org: Org, make_member: Any, tmp_path: Path) -> None:
    carol, _ = witnessed_ahead(org, make_member, tmp_path, AHEAD)  # a cosignature dated 300 s ahead
    # refused (409) while dated in or before the cosignature's second, and signed again dated the second after it (up
    # to the server's clock skew + 1 s ahead; review 32, fix32a), which the command says
    ended = org.alice.run("role", "revoke", "carol", "security")
    assert ended.code == 0, ended.err
    assert "s ahead of this device's clock" in ended.err, ended.err
    still_in(org.alice, org.bob, carol)
