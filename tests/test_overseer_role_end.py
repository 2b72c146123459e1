"""Review 32, finding 5 (tests/test_review32_exploits.py): NCC and Security Team members see every team chain
(``server/access.py`` ``is_overseer``); when that role ends an honest server hides the teams they are not in, and
their client must not take that for a rollback: a chain pinned as seen only as an overseer (``OVERSEEN`` in its pin)
may disappear once the verified organization chain gives this member neither role (``client.view.no_longer_overseen``).
A server hiding a chain the member still may see (its role goes on, or it is in that team) is still caught (exit 3),
and a chain shown again once the role is granted anew must extend its pin."""

from __future__ import annotations

from typing import Any

import pytest

from server.directory import Directory
from tests.conftest import Member, Org, security_team
from tests.helpers.restored import pins_of


def _hiding(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A malicious server: it no longer shows the team ``name`` to anyone."""
    honest = Directory.served_length

    def served_length(self: Directory, team_id: str, member_id: str, now: int,
                      overseer: bool) -> tuple[int, bool] | None:
        if self.teams[team_id].name == name:
            return None
        return honest(self, team_id, member_id, now, overseer)

    monkeypatch.setattr(Directory, "served_length", served_length)


def _overseeing(org: Org, make_member: Any) -> tuple[Member, dict[str, str]]:
    """carol (Security Team, on sec) has seen program1 (a team she is not in) and team1 (which she is in)."""
    carol = security_team(org, make_member)
    org.alice.ok("team", "create", "program1", "--kind", "program")
    org.alice.ok("team", "create", "team1", "--kind", "program")
    org.alice.ok("team", "add", "team1", "carol", "--role", "writer")
    carol.ok("whoami")
    ids = {t["name"]: t["team"] for t in org.alice.json("team", "ls")}
    pins = pins_of(carol).chains
    assert pins[ids["program1"]][2:] == ["overseen"], pins
    assert pins[ids["team1"]][2:] == [] and pins[ids["sec"]][2:] == [], pins
    return carol, ids


def test_a_chain_seen_as_an_overseer_hidden_after_the_role_ends_and_shown_again_when_granted_anew(
        org: Org, make_member: Any) -> None:
    carol, _ = _overseeing(org, make_member)
    org.alice.ok("role", "revoke", "carol", "security")
    r = carol.run("whoami")
    assert r.code == 0, (r.code, r.err)
    org.alice.ok("team", "add", "program1", "bob", "--role", "writer")  # program1 moves on, hidden from carol
    org.alice.ok("role", "grant", "carol", "security", "--until", "2099-01-01")
    r = carol.run("whoami")  # program1 shown again: it extends her pin
    assert r.code == 0, (r.code, r.err)


def test_a_chain_hidden_while_the_overseer_role_goes_on_is_a_rollback(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    carol, ids = _overseeing(org, make_member)
    _hiding(monkeypatch, "program1")
    r = carol.run("whoami")
    assert r.code == 3 and f"no longer shows chain {ids['program1'][:12]}" in r.err, (r.code, r.err)


def test_a_team_the_former_overseer_is_in_hidden_after_the_role_ends_is_a_rollback(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    carol, ids = _overseeing(org, make_member)
    org.alice.ok("role", "revoke", "carol", "security")
    carol.ok("whoami")
    _hiding(monkeypatch, "team1")
    r = carol.run("whoami")
    assert r.code == 3 and f"no longer shows chain {ids['team1'][:12]}" in r.err, (r.code, r.err)
