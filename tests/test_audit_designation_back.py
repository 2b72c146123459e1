"""Review round 31's two rules, beyond its own tests: the sealing rule is never replayed before the designation of its
team a publication was made under (a verifier who is on the new team only), and the last publication logged stays in
force when its team is designated again with no other team's publication between (``SealingWindows.unpublished``), which
hides nothing the server does after the designation back."""

from __future__ import annotations

import time
from typing import Any

import pytest

import server.recorder
from server.context import AuditKey
from tests.conftest import Org, security_team
from tests.helpers.hidden_hour import LATER, assert_caught
from tests.test_review31_exploits import publication_dated_before_its_designation


def test_a_publication_dated_before_its_designation_is_caught_by_a_member_of_the_new_team_only(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 31's first finding with the verifier dave on sec2 only (never on sec): his own publication of sec2's
    key is logged dated a second before the designation, then every event is sealed to no key and dated within 500 s
    of the designation. An hour later his `audit verify` lists the events sealed to no key (before the fix: "log
    verified", one scratch run in review 31)."""
    security_team(org, make_member)  # team sec (designated): generation 2 published (and logged)
    dave = make_member("dave")
    dave.ok("join", org.alice.json("invite")["invite"], "--name", "dave")
    org.alice.ok("role", "grant", "dave", "security", "--until", "2099-01-01")
    org.alice.ok("team", "create", "sec2", "--kind", "security")
    org.alice.ok("team", "add", "sec2", "dave", "--role", "admin")
    org.alice.ok("audit", "designate", "sec2")  # the only NCC member: in force at once
    with publication_dated_before_its_designation(monkeypatch, hold=500):
        assert "published the audit key of team sec2 (generation 1)" in dave.ok("whoami").err
        org.server.advance(LATER)
        for m in (dave, org.alice, org.bob):
            m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(LATER)
        for _ in range(3):
            org.bob.ok("whoami")
            org.alice.ok("whoami")
            dave.ok("whoami")
        verify, witness = dave.run("audit", "verify"), dave.run("audit", "witness")
    assert_caught(verify, witness)
    assert "is sealed to audit key generation 0, not the published 1" in verify.out, verify.out


def _designation_away_and_back(org: Org, make_member: Any) -> Any:
    """sec (designated, generation 2 published) -> sec2 -> sec an hour later, 1 s apart, no sec2 publication."""
    carol = security_team(org, make_member)
    org.alice.ok("team", "create", "sec2", "--kind", "security")
    org.alice.ok("team", "add", "sec2", "carol", "--role", "admin")
    org.server.advance(LATER)
    for m in (carol, org.alice, org.bob):
        m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(LATER)
    org.alice.ok("audit", "designate", "sec2")
    time.sleep(1.1)
    org.alice.ok("audit", "designate", "sec")
    assert "is in force" in carol.ok("audit", "key").out
    return carol


def _two_hours_on(org: Org, carol: Any) -> None:
    org.server.advance(LATER)
    for m in (carol, org.alice, org.bob):
        m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(2 * LATER)
    org.alice.ok("team", "create", "after", "--kind", "program")
    org.bob.ok("whoami")
    carol.ok("whoami")


def test_after_a_designation_back_events_sealed_to_no_key_are_still_flagged(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """sec's publication stays in force after sec -> sec2 -> sec; a server that then seals every event to no audit
    key (no departure, no rotation) has each flagged, and no "no publication" line (the publication is in force)."""
    carol = _designation_away_and_back(org, make_member)
    with monkeypatch.context() as m:
        m.setattr(server.recorder, "usable_audit_key", lambda app, now: AuditKey())
        _two_hours_on(org, carol)
        verify, witness = carol.run("audit", "verify"), carol.run("audit", "witness")
    assert_caught(verify, witness)
    assert "is sealed to audit key generation 0, not the published 2" in verify.out, verify.out
    assert "has no publication" not in verify.out, verify.out

