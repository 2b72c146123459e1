"""Retention's pruned prefix bounded by times the client can check (review 34's first finding; session 24, fix34a):
every leaf at or after the size of the log this device saw at a time of its own clock (its pins' ``anchors``), or of
the Security Team's cosigned checkpoint, was logged after that time, so it may not be served as deleted by retention
while that time is within the retention period (``check_pruning``, client/audit/pruning.py). Honest retention still
verifies clean. The last hour served as pruned, with the device's own anchors, is
tests/test_review34_exploits.py."""

from __future__ import annotations

from typing import Any

import pytest

from client.home import Home
from tests.conftest import Member, Org, security_team
from tests.helpers.hidden_hour import an_hour_later, assert_caught
from tests.test_review34_exploits import _log_size, pruned_before

DAY = 86400


def _days_later(org: Org, days: int, *members: Member) -> None:
    """The server's clock and each member's command clock ``days`` further ahead."""
    org.server.advance(days * DAY)
    for m in members:
        before = int(m.env_extra.get("MVAULT_TEST_CLOCK_OFFSET", "0"))
        m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(before + days * DAY)


def _half_a_year(org: Org, carol: Member) -> int:
    """carol reads the log on day 0 and on day 90 (an anchor within the retention period, 180 days); on day 181
    bob's command prunes the days before day 1 (an honest server). Returns the log's size on day 90 before carol's
    verify (every event from there on is from day 90 or later)."""
    assert carol.json("audit", "verify")["pruned"] == 0
    members = (carol, org.alice, org.bob)
    _days_later(org, 90, *members)
    org.bob.ok("whoami")
    day90 = _log_size(org)
    assert carol.json("audit", "verify")["ok"]
    _days_later(org, 91, *members)
    org.bob.ok("whoami")  # the first request of the new day prunes
    return day90


def test_honest_retention_with_an_anchor_within_the_period_verifies_clean(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: day 0's events deleted on day 181, carol's pins hold an anchor of day 90 (within the retention
    period, at a size past every deleted event): `audit verify` is clean and `audit witness` cosigns."""
    carol = security_team(org, make_member)
    day90 = _half_a_year(org, carol)
    v = carol.json("audit", "verify")
    assert v["ok"] and 0 < v["pruned"] < day90, v
    assert carol.run("audit", "witness").code == 0
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    anchors = Home(carol.home).pins().log["anchors"]
    now = max(t for _, t in anchors)
    assert any(v["pruned"] < size <= day90 + 5 and now - 92 * DAY < t < now - 89 * DAY for size, t in anchors), \
        anchors


def test_events_within_the_retention_period_served_as_pruned_with_older_ones_are_a_problem(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same half year; on day 181 the server also serves day 90's events as deleted by retention (every leaf
    before the log's size on day 181), with day 0's, which retention did delete: the first kept event is a day old,
    which the check before session 24 allowed. carol saw the log at its day-90 size on day 90: a problem."""
    carol = security_team(org, make_member)
    _half_a_year(org, carol)
    first_kept = _log_size(org)
    org.alice.ok("team", "create", "after", "--kind", "program")
    with pruned_before(monkeypatch, org, first_kept):
        verify, witness = carol.run("audit", "verify"), carol.run("audit", "witness")
    assert f"pruned by retention: {first_kept}" in verify.out, verify.out
    assert_caught(verify, witness)
    assert "but this device saw the log at" in verify.out and "within the retention period (180 days)" in verify.out


def test_a_device_without_anchors_has_the_security_teams_cosigned_checkpoint(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device that never saw the log (here carol's home with its log pin wiped: no anchor, no checkpoint) has the
    Security Team's cosigned checkpoint the server serves: carol cosigns the log an hour into its life; later the
    server serves every event before the next commands as deleted by retention (those after the cosigned size
    among them, none older than the hour): a problem, naming the cosigned checkpoint."""
    carol = security_team(org, make_member)
    an_hour_later(org, carol, org.alice, org.bob)
    org.bob.ok("whoami")
    assert carol.run("audit", "witness").code == 0
    witnessed = _log_size(org)
    org.alice.ok("team", "create", "between", "--kind", "program")
    org.bob.ok("whoami")
    first_kept = _log_size(org)
    assert first_kept > witnessed + 2
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)

    def wiped(pins: Any) -> None:
        pins.log = {}

    Home(carol.home).change_pins(wiped)
    org.alice.ok("team", "create", "after", "--kind", "program")
    with pruned_before(monkeypatch, org, first_kept):
        verify, witness = carol.run("audit", "verify"), carol.run("audit", "witness")
    assert f"pruned by retention: {first_kept}" in verify.out, verify.out
    assert_caught(verify, witness)
    assert "but the Security Team cosigned the log at" in verify.out, verify.out
