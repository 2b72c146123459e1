"""Session 25 (fix36a; review 36's second finding): from the event of an organization chain link that by itself makes
the sealing rule withhold the key (a designation away), read in the log, to the next publication, an event sealed
to the key in force is a problem whatever time the server wrote on it. Review 36's test covers a team link (a
removal from the Security Team); this one covers the organization link (``SealingWindows.withholds_from``)."""

from __future__ import annotations

from typing import Any

import pytest

import server.recorder
from server.context import STATE
from tests.conftest import Org, on_two_security_teams
from tests.helpers.hidden_hour import an_hour_later, assert_caught, logins_dated_back


@pytest.mark.xfail(strict=True, reason="review 36's second finding for an organization link (fix36a's test; fix36a "
                   "reverted in session 25: it let review 31's attack through)")
def test_an_hour_sealed_to_the_former_teams_key_from_the_designation_aways_own_event_on_dated_back_is_a_problem(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """carol on sec (designated, generation 2 published) and sec2. An hour later alice designates sec2: the honest
    rule seals every event to no audit key from the designation's event on until sec2's publication. The malicious
    server seals the designation's own event and an hour of logins (alice's and bob's `whoami`, three each) to sec's
    generation 2, each login dated 500 s after the designation (within 600 s of it: ``withheld_throughout`` reaches
    back before the designation, where sec's key was in force). Then carol's `whoami` publishes sec2's key, the
    server honest again. carol reads the designation's event (sealed to sec's key, which she holds): every event
    after it sealed to that key is a problem."""
    carol = on_two_security_teams(org, make_member)
    carol.ok("whoami")
    an_hour_later(org, carol, org.alice, org.bob)
    with monkeypatch.context() as m:
        m.setattr(server.recorder, "usable_audit_key", lambda app, now: app[STATE].key)  # sec's generation 2
        org.alice.ok("audit", "designate", "sec2")
        designated = int(org.server.clock())
        logins_dated_back(org, monkeypatch, carol, designated + 500)
    assert "published the audit key of team sec2" in carol.ok("whoami").err
    org.alice.ok("team", "create", "after", "--kind", "program")
    org.bob.ok("whoami")
    verify, witness = carol.run("audit", "verify"), carol.run("audit", "witness")
    assert "records a chain link that withheld the key" in verify.out, verify.out
    assert_caught(verify, witness)
