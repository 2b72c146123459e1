"""Events sealed to no audit key (generation 0): the server does so while the designated Security Team must rotate
(security/auditwindow.py, review round 3), every Security Team client replays that rule in `audit verify` and
`audit witness` (review 27 finding 1: a departure from the Security Team silenced its witness for good), and a
server sealing events to no audit key outside such a window, or after the publication that closed it, is caught."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import server.recorder
from server.context import AuditKey
from tests.conftest import Member, Org, security_team
from tests.helpers.guests import laptop_of

LATER = 3600


@contextmanager
def hiding(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A server hiding events from the Security Team: it seals them to no audit key (as it may only while the
    designated team must rotate) and otherwise serves the published key as ever."""
    with monkeypatch.context() as m:
        m.setattr(server.recorder, "usable_audit_key", lambda app, now: AuditKey())
        yield


def later(org: Org, *members: Member) -> None:
    org.server.advance(LATER)
    for m in members:
        m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(LATER)


def assert_witnesses(m: Member) -> None:
    verify = m.run("audit", "verify")
    assert verify.code == 0 and "PROBLEM" not in verify.out, verify.out
    witness = m.run("audit", "witness")
    assert witness.code == 0, witness.err


def assert_refuses(m: Member, *expected: str) -> None:
    verify = m.run("audit", "verify")
    assert "PROBLEM" in verify.out and all(e in verify.out for e in expected), verify.out
    witness = m.run("audit", "witness")
    assert witness.code == 3 and "not cosigning" in witness.err, (witness.code, witness.err)


def test_the_security_team_witnesses_after_one_of_its_members_is_removed(org: Org, make_member: Any) -> None:
    carol = security_team(org, make_member)  # audit key generation 2
    dave = make_member("dave")
    dave.ok("join", org.alice.json("invite")["invite"], "--name", "dave")
    org.alice.ok("role", "grant", "dave", "security", "--until", "2099-01-01")
    carol.ok("team", "add", "sec", "dave")
    dave.ok("whoami")
    org.bob.ok("whoami")  # an event sealed to generation 2, by another member
    carol.ok("team", "remove", "sec", "dave")  # rotates team sec, publishes generation 3
    org.bob.ok("whoami")
    assert_witnesses(carol)
    later(org, carol)  # still an hour later (before the fix: exit 3 at every later `audit witness`)
    assert_witnesses(carol)


def test_the_security_team_witnesses_after_another_member_revokes_a_device(org: Org, make_member: Any,
                                                                          tmp_path: Path) -> None:
    """dave's revocation, rotation and publication: their events sealed to no audit key open for dave alone, so
    carol judges them from their place in the log (between the events she reads around them)."""
    carol = security_team(org, make_member)
    dave = make_member("dave")
    dave.ok("join", org.alice.json("invite")["invite"], "--name", "dave")
    org.alice.ok("role", "grant", "dave", "security", "--until", "2099-01-01")
    carol.ok("team", "add", "sec", "dave")
    dave.ok("whoami")
    laptop_of(dave, tmp_path)
    org.bob.ok("whoami")
    dave.ok("device", "revoke", "laptop")  # dave's command rotates team sec and publishes generation 3
    org.bob.ok("whoami")
    later(org, carol)
    assert_witnesses(carol)


def test_the_security_team_witnesses_after_a_revocation_dated_ahead(org: Org, make_member: Any,
                                                                     tmp_path: Path) -> None:
    carol = security_team(org, make_member)
    laptop = laptop_of(carol, tmp_path)
    laptop.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "300"
    laptop.ok("audit", "witness")  # a cosignature dated 300 s ahead: the revocation is dated after it
    carol.ok("device", "revoke", "laptop")
    org.bob.ok("whoami")
    org.server.advance(400)  # past the revocation's date: the key is withheld until carol's next command
    carol.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "400"
    org.bob.ok("whoami")
    carol.ok("whoami")
    org.bob.ok("whoami")
    later(org, carol)
    assert_witnesses(carol)


def test_a_server_sealing_events_to_no_audit_key_with_no_departure_is_caught(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    carol = security_team(org, make_member)
    later(org, carol, org.alice)
    with hiding(monkeypatch):  # no one left the Security Team: the key must seal these
        org.alice.ok("team", "create", "quiet", "--kind", "program")  # alice's: carol cannot open it
        carol.ok("whoami")  # carol's own: she opens it with her member key, its time known
    org.alice.ok("whoami")
    assert_refuses(carol, "is sealed to audit key generation 0, not the published 2",
                   "no departure from the Security Team withheld the key then", "team.create")


def test_a_server_sealing_events_to_no_audit_key_after_the_publication_that_closed_the_window_is_caught(
        org: Org, make_member: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    carol = security_team(org, make_member)
    laptop_of(carol, tmp_path)
    carol.ok("device", "revoke", "laptop")  # a window, closed by the publication of generation 3
    with hiding(monkeypatch):  # seconds after that publication (within the clock skew of the window)
        org.alice.ok("team", "create", "quiet", "--kind", "program")
    org.alice.ok("whoami")
    # (its link, dated within the clock skew of the window, is not one the link check can place outside it)
    assert_refuses(carol, "is sealed to audit key generation 0, not the published 3",
                   "no departure from the Security Team withheld the key then")
