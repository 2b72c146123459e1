"""A change of the audit log's designated security team (``audit designate``): a publication is a team's generation,
so after the new team's first publication an event sealed to the former team's key is a fault of the log (review
round 29, second finding: the verifier judged generations without their team)."""

from __future__ import annotations

from typing import Any

import pytest

import server.recorder
from server.context import AuditKey
from tests.conftest import Org, security_team
from tests.test_review28_exploits import publication_dropped

LATER = 3600


def _designate_sec2(org: Org, make_member: Any) -> Any:
    carol = security_team(org, make_member)  # team sec (designated), audit key generation 2 published
    org.alice.ok("team", "create", "sec2", "--kind", "security")
    org.alice.ok("team", "add", "sec2", "carol", "--role", "admin")
    org.alice.ok("team", "create", "quiet", "--kind", "program")  # sealed to sec's generation 2
    org.alice.ok("audit", "designate", "sec2")  # the only NCC member: in force at once
    return carol


def test_after_the_new_team_published_an_event_sealed_to_the_former_teams_key_is_flagged(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A malicious server: once team sec2's key is published it keeps sealing events to team sec's generation 2 (a
    key the former team's members, who may have left, still hold). The leaf names generation 2 only: sec2 never
    reached it, and the events open with sec's key: both are faults once sec2's publication is in force."""
    usable = server.recorder.usable_audit_key
    former: list[AuditKey] = []

    def sealed_to_the_former_team(app: Any, now: int) -> AuditKey:
        key = usable(app, now)
        if key.pub is not None and former and key.team != former[0].team:
            return former[0]
        if key.pub is not None and not former:
            former.append(key)
        return key

    monkeypatch.setattr(server.recorder, "usable_audit_key", sealed_to_the_former_team)
    carol = _designate_sec2(org, make_member)
    assert former and former[0].gen == 2
    assert "published the audit key of team sec2 (generation 1)" in carol.ok("whoami").err
    org.server.advance(LATER)
    for m in (carol, org.alice, org.bob):
        m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(LATER)
    org.alice.ok("team", "create", "after", "--kind", "program")
    org.bob.ok("whoami")
    verify = carol.run("audit", "verify")
    witness = carol.run("audit", "witness")
    assert verify.code == 1, verify.out
    assert "sealed to team sec's audit key generation 2, not team sec2's published 1" in verify.out, verify.out
    assert witness.code == 3 and "not cosigning" in witness.err, (witness.code, witness.err)


def test_an_honest_change_of_designation_keeps_the_log_verified_and_witnessed(org: Org, make_member: Any) -> None:
    """The same acts with an honest server: the former team's events (sealed to sec's generation 2, before sec2's
    publication) and the new team's (sealed to sec2's generation 1) all open and none is a problem; the witness
    cosigns, and a rotation of the new team afterwards is judged on sec2's generations."""
    carol = _designate_sec2(org, make_member)
    assert "published the audit key of team sec2 (generation 1)" in carol.ok("whoami").err
    org.alice.ok("team", "create", "after", "--kind", "program")
    verify = carol.json("audit", "verify")
    assert verify["ok"] and verify["problems"] == [] and verify["unheld"] == 0, verify
    assert carol.run("audit", "witness").code == 0


def test_a_new_team_member_who_never_held_the_former_teams_key_counts_its_events_and_witnesses(
        org: Org, make_member: Any) -> None:
    """dave joins the Security Team on sec2 only: the events sealed to sec's generation 2 (before sec2's first
    publication) do not open for him; they are counted as sealed to a key he never held, not problems."""
    carol = _designate_sec2(org, make_member)
    dave = make_member("dave")
    dave.ok("join", org.alice.json("invite")["invite"], "--name", "dave")
    org.alice.ok("role", "grant", "dave", "security", "--until", "2099-01-01")
    org.alice.ok("team", "add", "sec2", "dave")
    assert "published the audit key of team sec2 (generation 1)" in carol.ok("whoami").err
    org.alice.ok("team", "create", "after", "--kind", "program")
    verify = dave.json("audit", "verify")
    assert verify["ok"] and verify["problems"] == [] and verify["unheld"] > 0, verify
    assert "sealed to a former security team's key you never held" in dave.ok("audit", "verify").out
    assert dave.run("audit", "witness").code == 0


def test_a_dropped_first_publication_of_the_new_team_cannot_hide_events_for_good(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 29's masked variant: after the designation, the server stores sec2's key but logs no ``audit.key``
    event for it and seals every event to no audit key. The designated team sec2 is judged (not sec, whose
    publication is the last logged): its generation 1 has no publication, a problem an hour later. A guard: it
    passes on the code before the fix too (the lead's fc5ee49 judges the designated team), where the former team's
    events are problems as well."""
    carol = _designate_sec2(org, make_member)
    with publication_dropped(monkeypatch):
        carol.ok("whoami")  # publishes sec2's generation 1: stored, served, not logged
        org.server.advance(LATER)
        for m in (carol, org.alice, org.bob):
            m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(LATER)
        org.alice.ok("team", "create", "hidden", "--kind", "program")
        org.bob.ok("whoami")
        verify = carol.run("audit", "verify")
        witness = carol.run("audit", "witness")
    assert "key generation 1 (team sec2, designated at" in verify.out and "has no publication" in verify.out, verify.out
    assert witness.code == 3 and "not cosigning" in witness.err, (witness.code, witness.err)
