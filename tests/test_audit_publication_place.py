"""Publications and sealed events judged at their place in the log against the team designated there (review round
30): an ``audit.key`` event of a team not designated there is no publication but a problem, an event sealed to a team's
key after another team's designation is a fault even when no publication of the new team is logged, and the honest
designation back to a former team verifies clean for a member of both teams and for one of the new team only."""

from __future__ import annotations

import time
from typing import Any

import pytest

import server.recorder
import server.routes.audit
from server.context import STATE
from tests.conftest import Org, security_team
from tests.helpers.hidden_hour import an_hour_later
from tests.test_review30_exploits import publication_forged


def test_a_logged_publication_of_a_team_not_designated_is_a_problem(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A malicious server logs "audit.key team sec2, generation 1" while team sec is designated (sec2 is a security
    team, its generation 1 exists), an hour after sec's designation, then seals every event to no audit key: the
    event itself is reported, and the window it would close stays open. (Within 600 s of the first designation a
    publication of any security team may still be one made before it: the unpublished check reports it then.)"""
    carol = security_team(org, make_member)
    org.alice.ok("team", "create", "sec2", "--kind", "security")
    org.alice.ok("team", "add", "sec2", "carol", "--role", "admin")
    an_hour_later(org, carol, org.alice, org.bob)
    with publication_forged(monkeypatch, "sec2", 1):
        org.bob.ok("whoami")
        org.alice.ok("team", "create", "hidden", "--kind", "program")
        org.bob.ok("whoami")
        verify = carol.run("audit", "verify")
        witness = carol.run("audit", "witness")
    assert verify.code == 1, verify.out
    # session 23: an audit.key event the server wrote carries no member's signed statement: no publication
    assert "is an audit.key event without its signed statement: no publication" in verify.out, verify.out
    assert "is sealed to audit key generation 0, not the published 2" in verify.out, verify.out
    assert witness.code == 3 and "not cosigning" in witness.err, (witness.code, witness.err)


def test_events_sealed_to_the_former_teams_key_after_the_designation_are_flagged_without_a_publication(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """After ``audit designate sec2`` a malicious server stores sec2's publication but logs none, and keeps sealing
    every event to team sec's generation 2 (a key the former team's members hold). No publication of sec2 is in the
    log, so the publication in force is still sec's: each such event an hour after the designation is a fault of
    its own (it stays one after a later publication), besides the missing publication."""
    carol = security_team(org, make_member)
    org.alice.ok("team", "create", "sec2", "--kind", "security")
    org.alice.ok("team", "add", "sec2", "carol", "--role", "admin")
    former = org.server.app[STATE].key
    assert former.gen == 2
    org.alice.ok("audit", "designate", "sec2")
    note = server.routes.audit.note

    def dropped(request: Any, action: str, *args: Any, **kwargs: Any) -> Any:
        return None if action == "audit.key" else note(request, action, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(server.routes.audit, "note", dropped)
        m.setattr(server.recorder, "usable_audit_key", lambda app, now: former)
        assert "published the audit key of team sec2 (generation 1)" in carol.ok("whoami").err  # not logged
        an_hour_later(org, carol, org.alice, org.bob)
        org.alice.ok("team", "create", "hidden", "--kind", "program")
        org.bob.ok("whoami")
        verify = carol.run("audit", "verify")
        witness = carol.run("audit", "witness")
    assert verify.code == 1, verify.out
    assert "sealed to team sec's audit key generation 2, a team not designated at its place in the log" in verify.out
    assert "key generation 1 (team sec2, designated at" in verify.out, verify.out
    assert witness.code == 3 and "not cosigning" in witness.err, (witness.code, witness.err)


def test_an_honest_designation_back_to_the_former_team_verifies_clean(org: Org, make_member: Any) -> None:
    """sec -> sec2 -> sec with an honest server, both publications logged: carol (on both teams) verifies and
    witnesses with nothing unheld; dave (Security Team role, on sec2 only) verifies and witnesses while sec2 is
    designated, counting sec's events as unheld, and his verify stays clean after the designation back."""
    carol = security_team(org, make_member)
    dave = make_member("dave")
    dave.ok("join", org.alice.json("invite")["invite"], "--name", "dave")
    org.alice.ok("role", "grant", "dave", "security", "--until", "2099-01-01")
    org.alice.ok("team", "create", "sec2", "--kind", "security")
    org.alice.ok("team", "add", "sec2", "carol", "--role", "admin")
    org.alice.ok("team", "add", "sec2", "dave")
    org.alice.ok("audit", "designate", "sec2")
    assert "published the audit key of team sec2 (generation 1)" in carol.ok("whoami").err
    org.alice.ok("team", "create", "during", "--kind", "program")  # sealed to sec2's generation 1
    verify = dave.json("audit", "verify")
    assert verify["ok"] and verify["problems"] == [] and verify["unheld"] > 0, verify
    assert dave.run("audit", "witness").code == 0
    time.sleep(1.1)  # the fourth finding of review 30 (another helper's): a designation in the publication's second
    org.alice.ok("audit", "designate", "sec")
    assert "published the audit key of team sec (generation 2)" in carol.ok("whoami").err  # logged again
    an_hour_later(org, carol, dave, org.alice, org.bob)
    org.alice.ok("team", "create", "after", "--kind", "program")  # sealed to sec's generation 2
    org.bob.ok("whoami")
    verify = carol.json("audit", "verify")
    assert verify["ok"] and verify["problems"] == [] and verify["unheld"] == 0, verify
    assert carol.run("audit", "witness").code == 0
    assert dave.json("audit", "verify")["ok"]
