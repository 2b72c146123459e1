"""Retention's pruned prefix bounded by times the client can check (review 34's first finding; session 24, fix34a):
every leaf at or after the size of the log this device saw at a time of its own clock (its pins' ``anchors``), or of
the Security Team's cosigned checkpoint, was logged after that time, so it may not be served as deleted by retention
while that time is within the retention period (``check_pruning``, client/audit/pruning.py). Honest retention still
verifies clean. The last hour served as pruned, with the device's own anchors, is
tests/test_review34_exploits.py. Retention periods changed (review 35; session 24, fix35b): an anchor is judged
against every period in force since its day (``honest_cuts``), the first kept event against the longest in force
today; the honest raise after a prune is review 35's test."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from client.audit.pruning import check_pruning, honest_cuts
from client.home import Home
from tests.conftest import Member, Org, join_member, security_team
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


def _retention(org: Org, ncc: Member, tmp_path: Path, version: int, days: int) -> None:
    """alice proposes protocols ``version`` with ``[retention] days`` = ``days``; ``ncc`` (a second NCC member)
    approves: in force (tests/test_review35_exploits.py uses it too)."""
    text = org.alice.ok("audit", "protocols", "show").out
    text = re.sub(r"(?m)^version = \d+", f"version = {version}", text)
    text = re.sub(r"(\[retention\]\ndays = )\d+", rf"\g<1>{days}", text)
    path = tmp_path / f"protocols-{version}.toml"
    path.write_text(text)
    digest = org.alice.json("audit", "protocols", "propose", str(path))["digest"]
    assert ncc.json("audit", "protocols", "approve", digest[:16])["version"] == version


def _second_ncc(org: Org, make_member: Any) -> Member:
    dana = join_member(org, make_member, "dana")
    org.alice.ok("role", "grant", "dana", "ncc", "--until", "2099-01-01")
    return dana


def test_events_an_anchor_younger_than_a_raise_covers_served_as_pruned_are_a_problem(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Review 35's honest raise, then a malicious server: retention 30 days from day 0, raised to 180 on day 40
    after the honest prune; carol sees the log on day 45; on day 80 the server serves every event before the next
    commands as deleted (day 45's among them). Only the 30-day period ever allowed a cut at day 50 by day 80, and it
    ended on day 40 (its deepest cut: day 10): a problem. A check judging anchors against the shortest period
    ever in force would take day 45 as outside the retention period and miss it."""
    carol = security_team(org, make_member)
    dana = _second_ncc(org, make_member)
    _retention(org, dana, tmp_path, 2, 30)
    members = (carol, org.alice, org.bob, dana)
    org.bob.ok("whoami")
    _days_later(org, 40, *members)
    org.bob.ok("whoami")  # the first request of the day prunes (30 days)
    _retention(org, dana, tmp_path, 3, 180)
    _days_later(org, 5, *members)
    org.bob.ok("whoami")
    assert carol.json("audit", "verify")["ok"]  # an anchor of day 45
    org.alice.ok("team", "create", "day45", "--kind", "program")
    _days_later(org, 35, *members)
    org.bob.ok("whoami")
    first_kept = _log_size(org)
    org.alice.ok("team", "create", "after", "--kind", "program")
    with pruned_before(monkeypatch, org, first_kept):
        verify, witness = carol.run("audit", "verify"), carol.run("audit", "witness")
    assert_caught(verify, witness)
    assert "but this device saw the log at" in verify.out, verify.out
    assert "within the retention period (180 days)" in verify.out, verify.out  # no change since day 45


def test_lowering_the_retention_period_after_the_days_prune_is_no_false_alarm(
        org: Org, make_member: Any, tmp_path: Path) -> None:
    """An honest sequence: events of day 0 and day 90; on day 181 the day's first request prunes day 0's (the
    default 180 days), then the NCC lowers retention to 30. The server prunes by the new period at the next day's
    first request: the rest of day 181 day 90's events are still served, the first kept, and are no fault (before
    session 24's fix35b: "older than the retention period, was kept" until the next day). On day 182 they are
    deleted and the verify is clean."""
    carol = security_team(org, make_member)
    dana = _second_ncc(org, make_member)
    members = (carol, org.alice, org.bob, dana)
    _days_later(org, 90, *members)
    org.bob.ok("whoami")
    _days_later(org, 91, *members)
    org.bob.ok("whoami")  # the day's prune, by 180 days: day 0's events
    _retention(org, dana, tmp_path, 2, 30)
    verify, witness = carol.run("audit", "verify"), carol.run("audit", "witness")
    assert verify.code == 0 and "PROBLEM" not in verify.out, verify.out
    assert witness.code == 0, witness.err
    kept = carol.json("audit", "verify")["pruned"]
    assert kept > 0
    _days_later(org, 1, *members)
    org.bob.ok("whoami")  # by 30 days: day 90's events go
    after = carol.json("audit", "verify")
    assert after["ok"] and after["pruned"] > kept, after


def test_the_honest_cuts_of_a_retention_history() -> None:
    """``honest_cuts`` (day numbers): the deepest cut is the latest ``day - days`` over the days each period was in
    force; the least, the longest period in force today. Lowered to 30 on day 100 and raised to 180 on day 101:
    by day 150 the honest server may have cut at day 71 (its prune of day 101 may have come before the raise), not
    further; on the lowering day it may not have cut at all."""
    history = [(0, 180), (100 * DAY + 60, 30), (101 * DAY + 60, 180)]
    assert honest_cuts(history, 150) == (150 - 180, 101 - 30)
    assert honest_cuts(history, 101) == (101 - 180, 101 - 30)
    assert honest_cuts(history[:2], 100) == (100 - 180, 100 - 30)
    assert honest_cuts(history[:2], 130) == (130 - 30, 130 - 30)
    assert honest_cuts([(0, 180)], 150) == (150 - 180, 150 - 180)
    # a version approved after this device's today (its clock behind): judged as in force from today
    assert honest_cuts([(0, 180), (151 * DAY, 30)], 150) == (150 - 180, 150 - 30)
    # every event served as deleted (a log of 10, none kept): an anchor of day 72 is past the deepest cut's margin
    assert check_pruning({}, 10, history, 150 * DAY, [(3, 72 * DAY, "this device saw")]) == []
    problems = check_pruning({}, 10, history, 150 * DAY, [(3, 73 * DAY, "this device saw")])
    assert len(problems) == 1 and "events 3 to 9 are served as deleted" in problems[0], problems
    assert "(every period in force since, now 180 days)" in problems[0], problems

