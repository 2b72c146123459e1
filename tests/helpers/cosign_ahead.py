"""A seized Security Team device whose clock runs ahead (review 26's first finding; tests/test_cosign_revoke.py):
carol on the Security Team, her second device "laptop" with its clock ahead, and the laptop's witness cosignature
of the current checkpoint, dated ahead; then the check that every member's commands still verify the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Member, Org, security_team
from tests.helpers.guests import laptop_of


def witnessed_ahead(org: Org, make_member: Any, tmp_path: Path, ahead: int) -> tuple[Member, Member]:
    """carol (``security_team``) and her laptop, whose clock runs ``ahead`` seconds ahead and which has cosigned
    the current checkpoint (``audit witness``), dated that far ahead."""
    carol = security_team(org, make_member)
    laptop = laptop_of(carol, tmp_path)
    laptop.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(ahead)
    laptop.ok("audit", "witness")
    return carol, laptop


def still_in(*members: Member) -> None:
    """Each member's ``whoami`` exits 0 (a log its client refuses stops every command: exit 3)."""
    for m in members:
        r = m.run("whoami")
        assert r.code == 0, (m.name, r.code, r.err)
