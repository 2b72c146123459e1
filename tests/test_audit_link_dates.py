"""A Security Team ``audit verify`` reports a chain link whose date is far from its event's place in the log (session
25): a link dated ahead (a device's clock set ahead, the server taking it beyond its clock window: the dates a
rights-ending link must come after, review 35) and a backdated one (a link signed after the fact, dated into a window
that would allow it). Before, both read "backdated", and no test asserted either.

The server is made malicious in the test process: its clock window widened to two days (``config.clock_skew``),
which an honest server's configuration refuses (at most ``ALLOWANCE / 2``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from client.admin import create_team, remove_member
from server.context import CONFIG
from tests.conftest import Org, security_team
from tests.helpers.clock import StoppedClock
from tests.helpers.members import session

DAY = 86400


@pytest.mark.parametrize("offset", [DAY, -DAY], ids=["ahead", "behind"])
def test_a_chain_link_dated_a_day_from_its_log_time_is_reported(org: Org, make_member: Any, offset: int) -> None:
    """``[ahead]``: alice's clock a day ahead. ``[behind]``: the server's clock a day ahead while alice signs (her
    device is minutes old, so her own clock cannot go a day back): the link is logged a day after its date."""
    carol = security_team(org, make_member)
    config = org.server.app[CONFIG]
    config.clock_skew = 2 * DAY  # malicious: takes links dated up to two days either way
    if offset > 0:
        org.alice.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(offset)
    else:
        config.clock = lambda: time.time() - offset
    org.alice.ok("team", "create", "skewed")
    org.alice.env_extra.pop("MVAULT_TEST_CLOCK_OFFSET", None)
    config.clock, config.clock_skew = time.time, 600.0
    r = carol.run("audit", "verify")
    assert r.code == 1, r.out + r.err
    text = r.out + r.err
    line = next((x for x in text.splitlines() if "chain link team.create" in x), "")
    if offset > 0:
        assert f"dated {DAY}" in line and "s ahead" in line and "backdated" not in line, text
    else:
        assert line.endswith("backdated"), text


def test_a_link_dated_within_the_clock_window_is_not_reported(org: Org, make_member: Any) -> None:
    """The control: alice's clock 500 s ahead (within the server's 600 s): the link is taken and not reported."""
    carol = security_team(org, make_member)
    org.alice.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "500"
    org.alice.ok("team", "create", "skewed")
    del org.alice.env_extra["MVAULT_TEST_CLOCK_OFFSET"]
    r = carol.run("audit", "verify")
    assert r.code == 0, r.out + r.err
    assert "chain link" not in r.out + r.err


@pytest.mark.parametrize("case", ["behind", "ahead", "ending-ahead"])
async def test_only_a_link_ending_rights_may_be_dated_one_second_beyond_the_window_and_only_ahead(
        org: Org, make_member: Any, case: str) -> None:
    """Review 37 (LOW): the bound was ``clock_skew`` + 1 either way (ddfd862), where an honest server takes only a
    link ending rights (``POLICY.rights_ended``) dated a second beyond its window, and only ahead. The server's
    window widened (malicious) and its clock and alice's stopped, so each link is exactly 601 s from its event's
    time: ``[behind]`` a team created with the server's clock 601 s ahead of alice's (reported "backdated"),
    ``[ahead]`` a team created with alice's clock 601 s ahead (reported "dated 601 s ahead"), ``[ending-ahead]``
    bob's removal with alice's clock 601 s ahead (not reported: what an honest server takes when bob signed
    something 600 s ahead)."""
    carol = security_team(org, make_member)
    config = org.server.app[CONFIG]
    config.clock_skew = 2 * DAY  # malicious: takes links dated up to two days either way
    now = int(time.time())
    config.clock = lambda: now + (601 if case == "behind" else 0) + 0.5
    async with session(org.server, org.alice) as s:
        s.session.clock = StoppedClock(at=now if case == "behind" else now + 601)
        if case == "ending-ahead":
            await remove_member(s, "bob", "left")
        else:
            await create_team(s, "skewed", "program")
    config.clock, config.clock_skew = time.time, 600.0
    r = carol.run("audit", "verify")
    text = r.out + r.err
    which = "chain link org.remove" if case == "ending-ahead" else "chain link team.create"
    line = next((x for x in text.splitlines() if which in x), "")
    if case == "behind":
        assert line.endswith("backdated"), text
    elif case == "ahead":
        assert "dated 601 s ahead" in line, text
    else:
        assert line == "", text
