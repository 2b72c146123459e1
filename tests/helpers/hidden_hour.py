"""The ending the audit reviews' malicious-server tests share (reviews 28 to 30): an hour passes (the server's clock
and the members' clocks), the organization acts as usual, and the Security Team member's `audit verify` and `audit
witness` give their verdict on the log the server kept meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import server.recorder
from tests.conftest import Member, Org, Result

LATER = 3600


def an_hour_later(org: Org, *members: Member) -> None:
    """The server's clock and each member's command clock an hour ahead."""
    org.server.advance(LATER)
    for m in members:
        m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(LATER)


def hour_of_acts(org: Org, auditor: Member, team: str = "hidden") -> tuple[Result, Result]:
    """An hour later (no departure, no rotation: the honest rule seals these events to the designated team's key in
    force), alice creates program team ``team`` and three members run a command; then ``auditor``'s `audit verify`
    and `audit witness`, in that order."""
    an_hour_later(org, auditor, org.alice, org.bob)
    org.alice.ok("team", "create", team, "--kind", "program")
    org.bob.ok("whoami")
    auditor.ok("whoami")
    org.alice.ok("whoami")
    return auditor.run("audit", "verify"), auditor.run("audit", "witness")


def assert_caught(verify: Result, witness: Result) -> None:
    """The secure verdict: `audit verify` lists a PROBLEM and `audit witness` refuses to cosign (exit 3)."""
    assert "PROBLEM" in verify.out, verify.out
    assert witness.code == 3 and "not cosigning" in witness.err, (witness.code, witness.err, verify.out)


@contextmanager
def dated_at(monkeypatch: pytest.MonkeyPatch, when: int | None) -> Iterator[None]:
    """A malicious server: every event it records meanwhile is dated ``when`` (None: honest dates), whatever its
    clock says (the server writes an event's time)."""
    real = server.recorder.record

    async def backdated(app: Any, n: Any, result: str, session: Any, at: int | None = None) -> int:
        return await real(app, n, result, session, when if when is not None else at)

    with monkeypatch.context() as m:
        m.setattr(server.recorder, "record", backdated)
        yield


def logins_dated_back(org: Org, monkeypatch: pytest.MonkeyPatch, auditor: Member, when: int) -> None:
    """An hour passes (the server's clock and the members'), then alice and bob run `whoami` three times each, every
    event dated ``when`` by the server (``dated_at``): an hour of logins with no chain link, dated back."""
    org.server.advance(LATER)
    for member in (auditor, org.alice, org.bob):
        member.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(2 * LATER)
    with dated_at(monkeypatch, when):
        for _ in range(3):
            org.alice.ok("whoami")
            org.bob.ok("whoami")
