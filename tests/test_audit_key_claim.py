"""Session 23 (helper "claim"): an ``audit.key`` event carries the member's signed audit-key statement and its
signature in its leaf, in clear (docs/format.md, "Audit log"), and the Security Team's `audit verify` judges them
itself: a publication's team, generation, key and time are the member's, not the server's. Each malicious-server
test below (the server's code monkeypatched in the test process) failed on the code before this change: the
server's own words about a publication were taken as one."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, cast

import pytest

import server.notes
import server.recorder
import server.routes.audit
from security.auditkey import AuditKeyClaim, designated_around
from security.auditwindow import designated_near
from security.events import Leaf, audit_key_statement
from server.context import AUDIT, STATE
from server.notes import Note
from tests.conftest import Member, Org, on_two_security_teams, security_team
from tests.helpers.hidden_hour import an_hour_later, assert_caught, hour_of_acts
from vault.chains import OrgState


@contextmanager
def claim_logged(monkeypatch: pytest.MonkeyPatch, raw: bytes, sig: bytes) -> Iterator[None]:
    """A malicious server: at the next event it records, it first logs an ``audit.key`` event of the statement
    ``raw`` with signature ``sig`` (its team, generation, member and device), carrying both in its leaf as an honest
    server does, dated now; every event is sealed as the honest rule says."""
    real_record = server.recorder.record
    logged: list[int] = []
    claim = AuditKeyClaim.parse(raw)

    async def record(app: Any, n: Note, result: str, session: Any, when: int | None = None) -> int:
        if not logged:
            forged = Note("audit.key", {"team": claim.team}, None, {"gen": claim.gen}, claim.member, claim.device)
            forged.claim = (raw, sig)
            logged.append(await real_record(app, forged, "ok", session))
        return await real_record(app, n, result, session, when)

    with monkeypatch.context() as m:
        m.setattr(server.recorder, "record", record)
        yield
    assert logged, "the statement was never logged"


def _leaves(org: Org) -> list[Leaf]:
    """Every kept leaf of the server's log, read on the server's loop."""
    async def read() -> list[tuple[int, bytes, bytes | None]]:
        return await org.server.app[AUDIT].leaves(0, 100_000)
    assert org.server._loop is not None
    rows = asyncio.run_coroutine_threadsafe(read(), org.server._loop).result(20)
    return [Leaf.parse(leaf) for _, _, leaf in rows if leaf is not None]


def test_each_publication_leaf_carries_the_statement_the_server_judged_and_an_honest_log_verifies(
        org: Org, make_member: Any) -> None:
    carol = security_team(org, make_member)
    stored = org.server.app[STATE].key
    claims = [leaf.claim for leaf in _leaves(org) if leaf.claim is not None]
    assert claims == [(stored.statement, stored.sig)], claims  # one publication: the statement in force, in clear
    assert AuditKeyClaim.parse(claims[0][0]).gen == 2
    verify = carol.run("audit", "verify")
    assert verify.code == 0 and "PROBLEM" not in verify.out, verify.out


def test_a_publication_logged_without_its_statement_is_no_publication(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A downgrade: the server logs carol's next publication (sec's generation 3, after a rotation) as an old server
    did, without the statement. Every ``audit.key`` event carries it (pre-release: no older logs to read), so the
    event is reported, not taken as the server's word."""
    carol = security_team(org, make_member)

    def note(request: Any, action: str, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("claim", None)
        return server.notes.note(request, action, *args, **kwargs)

    org.alice.ok("team", "add", "sec", "bob", "--role", "reader")
    org.alice.ok("team", "remove", "sec", "bob")
    with monkeypatch.context() as m:
        m.setattr(server.routes.audit, "note", note)
        assert "published the audit key of team sec (generation 3)" in carol.ok("whoami").err
    org.bob.ok("whoami")
    verify, witness = carol.run("audit", "verify"), carol.run("audit", "witness")
    assert "is an audit.key event without its signed statement: no publication" in verify.out, verify.out
    assert_caught(verify, witness)


def test_a_genuine_statement_logged_again_an_hour_later_is_a_problem(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server keeps carol's genuine statement (sec's generation 2, the one in force) and logs it again an hour
    later: a publication the member made an hour before its place in the log."""
    carol = security_team(org, make_member)
    stored = org.server.app[STATE].key
    an_hour_later(org, carol, org.alice, org.bob)
    with claim_logged(monkeypatch, stored.statement, stored.sig):
        org.bob.ok("whoami")
    org.alice.ok("whoami")
    verify, witness = carol.run("audit", "verify"), carol.run("audit", "witness")
    assert "more than 1200 s from its signed time" in verify.out, verify.out
    assert_caught(verify, witness)


def test_a_statement_that_does_not_verify_is_no_publication(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server writes a statement of its own in carol's name (sec's generation 2, its key, dated now) with a
    signature it cannot make."""
    carol = security_team(org, make_member)
    claim = AuditKeyClaim.parse(org.server.app[STATE].key.statement)
    raw = audit_key_statement(claim.org, claim.team, claim.gen, claim.pub, int(org.server.clock()), claim.member,
                              claim.device)
    with claim_logged(monkeypatch, raw, os.urandom(64)):
        org.bob.ok("whoami")
    verify, witness = carol.run("audit", "verify"), carol.run("audit", "witness")
    assert "carries an audit-key statement that is no publication: it does not check" in verify.out, verify.out
    assert_caught(verify, witness)


def test_a_statement_of_a_team_not_designated_at_its_signed_time_is_no_publication(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """carol asks the server to seal to sec2's key while sec is designated (`audit key --team sec2`): the honest
    `put_key` refuses it, the malicious server keeps the signed statement. 900 s later alice designates sec2, and the
    server logs the kept statement dated after the designation (the server's time would make it one), before carol's
    real publication of sec2. All 900 s after sec's designation: within ``SKEW`` (600 s) of the first designation a
    statement of any security team may be one made before it (the time before any designation)."""
    carol = on_two_security_teams(org, make_member)
    _later(org, 900, carol, org.alice, org.bob)
    kept: list[tuple[bytes, bytes]] = []
    real_judge = server.routes.audit.judge_audit_key

    def judge(claim: AuditKeyClaim, sig: bytes, *args: Any) -> None:
        kept.append((claim.raw, sig))
        real_judge(claim, sig, *args)

    with monkeypatch.context() as m:
        m.setattr(server.routes.audit, "judge_audit_key", judge)
        refused = carol.run("audit", "key", "--team", "sec2")
    assert refused.code != 0 and kept, refused.err
    _later(org, 900, carol, org.alice, org.bob)
    org.alice.ok("audit", "designate", "sec2")
    with claim_logged(monkeypatch, *kept[-1]):
        assert "published the audit key of team sec2 (generation 1)" in carol.ok("whoami").err
    org.bob.ok("whoami")
    verify, witness = carol.run("audit", "verify"), carol.run("audit", "witness")
    assert "no publication: team sec is designated at its place in the log" in verify.out, verify.out
    assert_caught(verify, witness)


def _later(org: Org, seconds: int, *members: Member) -> None:
    org.server.advance(seconds)
    for member in members:
        member.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(int(org.server.offset))


def test_an_honest_designation_change_with_statements_verifies_and_an_hour_later_too(
        org: Org, make_member: Any) -> None:
    """Honest control of the rules above: a change of designation and its publication, then an hour of acts."""
    carol = on_two_security_teams(org, make_member)
    org.alice.ok("audit", "designate", "sec2")
    assert "published the audit key of team sec2 (generation 1)" in carol.ok("whoami").err
    verify, witness = hour_of_acts(org, carol, "later")
    assert verify.code == 0 and "PROBLEM" not in verify.out, verify.out
    assert witness.code == 0, witness.err


def _org(times: list[int], log: list[tuple[int, str]]) -> OrgState:
    """The two fields ``designations`` reads: link times (seq k at ``times[k - 1]``) and the designation links."""
    return cast(OrgState, SimpleNamespace(times=times, audit_team_log=log))


@pytest.mark.parametrize(("lo", "hi", "near", "around"), [
    (200, 300, [2], {"b"}),  # a ended at b's link (200): not in force at 200
    (199, 199, [1], {"a"}),
    (100, 100, [1], {"a"}),  # a's link at 100: in force from then (no longer "none")
    (99, 99, [0], set()),
    (150, 250, [1, 2], {"a", "b"}),
    (300, 300, [2], {"b"}),
])
def test_the_teams_designated_between_two_times_is_one_rule(lo: int, hi: int, near: list[int],
                                                            around: set[str]) -> None:
    """``designated_around`` (served and stored keys) and ``designated_near`` (the verifier) were twins that differed
    by a second at the lower edge; now one function: a designation is in force from its link's time up to, not
    including, the next one's (``OrgState.seq_at``: "dated at or before")."""
    org = _org([50, 100, 200], [(2, "a"), (3, "b")])
    marks = [(0, None), (100, "a"), (200, "b")]
    assert [k for k, _ in designated_near(marks, lo, hi)] == near
    assert designated_around(org, (lo + hi) // 2, (hi - lo) // 2) == around


def test_a_designation_dated_in_the_second_of_the_next_is_counted_within_its_range() -> None:
    """Two designations in one second: the first is in force at no time by ``seq_at``, but its link is in the
    range, so it counts (a publication may have been made under it)."""
    org = _org([50, 100, 100], [(2, "a"), (3, "b")])
    assert designated_around(org, 100, 0) == {"a", "b"}
    assert designated_around(org, 150, 10) == {"b"}


@pytest.mark.parametrize("behind", [30, 0])
def test_a_removal_its_rotation_and_a_publication_dated_before_it_leave_no_unlogged_link(
        org: Org, make_member: Any, behind: int) -> None:
    """Review 31's false alarm "chain link team.remove ... has no audit event", made deterministic: an hour after the
    first publication, carol's clock is ``behind`` seconds behind alice's and the server's. alice (no longer on sec)
    adds bob to sec and removes him; carol's next command rotates sec (the rotation link is dated at the removal's
    time: a link is never dated before the chain's head) and publishes generation 3 with her own time, before the
    removal's. The removal's event is sealed to no audit key (the rotation was pending) and only alice and bob read
    it. (``behind`` 0: the same acts with the clocks together, the publication a second or so after the removal.)
    Failed with ``behind`` 30 before the fix (the false alarm), passed with 0."""
    carol = security_team(org, make_member)
    _later(org, 3600, org.alice, org.bob)  # the first publication more than SKEW before all this
    carol.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(3600 - behind)
    org.alice.ok("team", "add", "sec", "bob", "--role", "reader")
    org.alice.ok("team", "remove", "sec", "bob")
    assert "published the audit key of team sec (generation 3)" in carol.ok("whoami").err
    org.bob.ok("whoami")
    verify = carol.run("audit", "verify")
    assert verify.code == 0 and "PROBLEM" not in verify.out, verify.out
    assert carol.run("audit", "witness").code == 0
