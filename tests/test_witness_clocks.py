"""A cosignature read by a member whose clock is behind the cosigner's (session 24; found by helper "fix34b").

The server takes what a device signs dated up to its ``clock_skew`` (600 s) ahead of its own clock, and takes the
commands of a device whose clock is as far behind: two honest devices' clocks may then be ``ALLOWANCE`` (1200 s)
apart. ``check_witness`` refused a Security Team cosignature dated more than 600 s ahead of the reader's clock as
"dated outside its checkpoint's lifetime", a STOP ("do not trust this server") for every member whose clock was
behind, until real time closed the gap."""

from __future__ import annotations

from typing import Any

from tests.conftest import Org, security_team


def test_a_cosignature_by_a_clock_ahead_does_not_stop_a_member_whose_clock_is_behind(org: Org,
                                                                                     make_member: Any) -> None:
    carol = security_team(org, make_member)
    carol.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "400"  # within the server's 600 s, ahead
    org.alice.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "-300"  # within the server's 600 s, behind: 700 s apart
    org.bob.ok("whoami")
    assert carol.run("audit", "witness").code == 0
    r = org.alice.run("whoami")  # the served witness: carol's cosignature, dated 700 s ahead of alice's clock
    assert r.code == 0, r.err
    assert "STOP" not in r.err, r.err
