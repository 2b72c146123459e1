"""``document-review`` end to end (issue 18): the real server and CLI. A version stored in a sensitive team carries a
review-by date sealed in its metadata, and the server learns only its month (the ``doc.write`` event's ``review``);
the Security Team's report flags a document whose month has ended; a new version (default: 180 days on) resets it.
A bad ``--review-by`` or ``?review=`` is refused and stores nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from server.context import DIRECTORY
from tests.conftest import Member, Org, security_team
from tests.helpers.http import Http, login_as, refused
from tests.helpers.worlds import World, Worlds


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    """carol in the Security Team, admin of team "sec" (kind security: sensitive), as in tests/test_audit.py."""
    return worlds.org_then("org-security", security_team)


@pytest.fixture
def carol(org: Org, make_member: Any) -> Member:
    return make_member("carol") if org.server.restored else security_team(org, make_member)


def _rule(m: Member) -> dict[str, Any]:
    r = m.run("audit", "report", "--json")
    assert r.code in (0, 1), r.err
    return dict(next(x for x in r.json()["rules"] if x["rule"] == "document-review"))


def _writes(m: Member) -> list[dict[str, Any]]:
    return list(m.json("audit", "log", "--action", "doc.write"))


def test_a_sensitive_document_past_its_review_month_is_flagged_until_a_new_version(org: Org, carol: Member,
                                                                                  tmp_path: Path) -> None:
    doc = tmp_path / "threats.md"
    doc.write_text("assessment v1")
    carol.ok("put", "sec", str(doc), "--review-by", "2020-03-15")
    assert _writes(carol)[-1]["detail"].get("review") == "2020-03"  # the month, nothing finer
    rule = _rule(carol)
    assert rule["status"] == "violated" and "2020-03" in rule["findings"][0]["message"], rule
    doc.write_text("assessment v2, reviewed")
    carol.ok("put", "sec", str(doc))  # default: 180 days from now
    month = _writes(carol)[-1]["detail"].get("review")
    assert isinstance(month, str) and month > "2020-03"
    assert _rule(carol)["status"] == "ok", _rule(carol)
    # bob's document in the program team "drafting" carries no date and is not judged.
    other = tmp_path / "notes.md"
    other.write_text("notes")
    org.bob.ok("put", "drafting", str(other))
    assert "review" not in _writes(carol)[-1]["detail"]
    assert _rule(carol)["status"] == "ok"


def test_a_bad_review_date_or_month_is_refused_and_stores_nothing(org: Org, carol: Member, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("x")
    r = carol.run("put", "sec", str(doc), "--review-by", "2030-02-30")
    assert r.code == 2 and r.err.startswith("error: ") and "--review-by" in r.err and "YYYY-MM-DD" in r.err, r.err
    d = org.server.app[DIRECTORY]
    sec = d.team_by_name("sec")
    assert sec is not None
    carol_id = next(mid for mid, ms in d.members.items() if ms.name == "carol")
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    keys = Home(carol.home).unlock()

    async def post() -> None:
        async with Http(org.server) as h:
            token = await login_as(h, carol_id, keys.device)
            await refused(h, "POST", f"/api/v1/teams/{sec.team_id}/docs/{'0' * 32}?review=2030-13", 400,
                          token=token, data=b"MVDOC", contains="YYYY-MM", what="a month that is none")

    asyncio.run(post())
