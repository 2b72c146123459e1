"""The audit key belongs to the one security team designated in the organization chain (real server).

``security_team`` (conftest) has alice, the only NCC member, create team "sec": her client
designates it at once (``org.audit_team``, one signature in a young organization). A second
security team then gets no say over the audit key: the server refuses its statement, and a
Security Team client served one (a colluding server) refuses to believe it. Cosignatures are
judged at their signed time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from client import admin
from client.client import Client
from client.home import Home
from security.auditkey import AuditKeyClaim
from security.events import audit_key_statement, audit_keypair, cosign_statement
from server.context import STATE, AuditKey
from tests.conftest import Member, Org, ServerThread, on_two_security_teams, security_team
from tests.helpers.members import in_session
from vault.crypto import labels
from vault.errors import VaultError
from vault.wire64 import b64, unb64_answer


def served_key(server: ServerThread) -> AuditKeyClaim:
    key = server.app[STATE].key
    return AuditKeyClaim.parse(key.statement)


@pytest.fixture
def two_teams(org: Org, make_member: Any) -> tuple[Org, Member]:
    """carol on the designated team "sec" and, as admin with the key, on a second security team "sec2"."""
    return org, on_two_security_teams(org, make_member)


def test_the_first_security_team_of_a_lone_ncc_member_is_designated(org: Org, make_member: Any) -> None:
    m = make_member("carol")
    m.ok("join", org.alice.json("invite")["invite"], "--name", "carol")
    r = org.alice.ok("team", "create", "sec", "--kind", "security")
    assert "designated team sec as the audit log's security team" in r.err, r.err
    # A second one is not: changing the designation is an explicit act.
    r = org.alice.ok("team", "create", "sec2", "--kind", "security")
    assert "designated" not in r.err, r.err
    org.alice.fails("audit", "designate", "drafting", contains="kind 'security'")
    assert org.alice.json("audit", "designate", "sec2")["in_force"] is True


def test_the_server_refuses_the_audit_key_of_a_team_that_is_not_designated(
        two_teams: tuple[Org, Member], monkeypatch: pytest.MonkeyPatch) -> None:
    org, carol = two_teams
    before = served_key(org.server)
    # Through the CLI: the server's refusal, one line.
    carol.fails("audit", "key", "--team", "sec2", contains="designated security team")
    assert served_key(org.server) == before

    async def post_sec2(s: Client) -> str:  # the same without the client: 403, nothing changes
        view = await s.chains.view()
        team = view.team_by_name("sec2")
        pub = audit_keypair((await s.keys.team_key(team, team.generation)).seed)[0]
        raw = audit_key_statement(view.org.org_id, team.team_id, team.generation, pub, int(time.time()), s.session.me,
                                  s.session.device.device_id)
        try:
            await s.session.api.post("/api/v1/audit/key", {"statement": b64(raw),
                                                   "sig": b64(s.session.device.sign(labels.SIG_AUDIT_KEY, raw))})
        except VaultError as e:
            return f"{e.status} {e.message}"
        return "accepted"

    refused = in_session(org.server, carol, post_sec2, monkeypatch)
    assert refused.startswith("403 ") and "designated security team" in refused, refused
    assert served_key(org.server) == before
    assert carol.ok("audit", "key").out.strip().endswith("is in force")
    # Once NCC designates sec2, its key is published on carol's next command.
    org.alice.ok("audit", "designate", "sec2")
    assert "published the audit key of team sec2" in carol.ok("whoami").err
    assert served_key(org.server).team != before.team


def test_a_client_refuses_a_served_audit_key_of_a_team_that_is_not_designated(
        two_teams: tuple[Org, Member], monkeypatch: pytest.MonkeyPatch) -> None:
    org, carol = two_teams
    # The server holds carol's seized device and serves a statement it made for sec2.
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    home = Home(carol.home)
    device, me = home.unlock().device, home.config().member_id
    sec = served_key(org.server)
    sec2 = next(t["team"] for t in carol.json("team", "ls") if t["name"] == "sec2")
    raw = audit_key_statement(sec.org, sec2, 1, audit_keypair(os.urandom(32))[0], int(time.time()), me,
                              device.device_id)
    org.server.app[STATE].key = AuditKey(1, AuditKeyClaim.parse(raw).pub, sec2, raw,
                                         device.sign(labels.SIG_AUDIT_KEY, raw))
    carol.fails("whoami", contains="designated security team")
    carol.fails("audit", "key", contains="do not trust this server")


def test_a_cosignature_dated_after_the_security_term_is_refused(org: Org, make_member: Any, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    carol = security_team(org, make_member)
    end = int(time.time()) + 120

    async def shorten(s: Client) -> None:  # carol's term now ends in two minutes
        await admin.set_org_role(s, "carol", "security", False, None)
        await admin.set_org_role(s, "carol", "security", True, end)

    in_session(org.server, org.alice, shorten, monkeypatch)

    def cosign_at(t: int) -> Callable[[Client], Awaitable[str]]:
        async def go(s: Client) -> str:
            res = await s.session.api.get("/api/v1/audit/checkpoint")
            cp = unb64_answer(res["checkpoint"])
            sig = s.session.device.sign(labels.SIG_COSIGN, cosign_statement(cp, s.session.me,
                                                                            s.session.device.device_id, t))
            try:
                await s.session.api.post("/api/v1/audit/cosign", {"checkpoint": b64(cp), "sig": b64(sig), "time": t})
            except VaultError as e:
                return f"{e.status} {e.message}"
            return "accepted"
        return go

    # Signed for a time after the term, while it still lasts on the server's clock: judged at the signed time.
    refused = in_session(org.server, carol, cosign_at(end + 60), monkeypatch)
    assert refused.startswith("403 ") and "may not cosign" in refused, refused
    assert in_session(org.server, carol, cosign_at(int(time.time())), monkeypatch) == "accepted"
