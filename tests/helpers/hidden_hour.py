"""The ending the audit reviews' malicious-server tests share (reviews 28 to 30): an hour passes (the server's clock
and the members' clocks), the organization acts as usual, and the Security Team member's `audit verify` and `audit
witness` give their verdict on the log the server kept meanwhile."""

from __future__ import annotations

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
