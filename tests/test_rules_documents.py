"""Rule ``document-review`` (security/rules/documents.py) over ``doc.write`` events as the server records them (the
review month in ``detail.review``), and the month arithmetic of ``vault/review.py``."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from security.events import Event
from tests.helpers.chain_world import DAY, MWorld, Team
from tests.helpers.rules import audit, circle_of, event, ok, only, result
from vault.encoding import Value
from vault.envelope import DELETE, PUT, check_metadata
from vault.errors import EncodingError
from vault.review import check_review_month, default_review_by, month_end, parse_review_by

JUNE_2030 = int(datetime(2030, 6, 1, tzinfo=UTC).timestamp())


@pytest.fixture
def world() -> MWorld:
    return MWorld()


def wrote(team: Team, doc: str, t: int, review: str | None = None, action: str = "doc.write") -> Event:
    return event(t, action, "a", res={"team": team.team_id, "doc": doc, "vid": "v"},
                 detail={"review": review} if review is not None else {})


def test_an_overdue_sensitive_document_is_flagged_and_a_new_version_resets_it(world: MWorld) -> None:
    t = circle_of(world)
    now = JUNE_2030 + 3 * DAY
    old = [wrote(t, "d1", now - 200 * DAY, "2030-05")]  # due by the end of May 2030
    f = only(result(audit(world, [t], old, now=now), "document-review"), "violation")
    assert "d1" in f.message and "2030-05" in f.message and f.events == (0,)
    ok(result(audit(world, [t], old, now=JUNE_2030 - 1), "document-review"))  # the last second of May: not yet
    ok(result(audit(world, [t], [*old, wrote(t, "d1", now - DAY, "2030-12")], now=now), "document-review"))
    ok(result(audit(world, [t], [*old, wrote(t, "d1", now - DAY, action="doc.delete")], now=now), "document-review"))


def test_a_version_without_a_review_month_is_a_warning_and_other_teams_are_not_judged(world: MWorld) -> None:
    t = circle_of(world)
    program = world.create_team(world.founder, [(world.founder, "admin")], kind="program")
    now = JUNE_2030
    f = only(result(audit(world, [t], [wrote(t, "d2", now - DAY)], now=now), "document-review"), "warning")
    assert "without a review-by date" in f.message
    ok(result(audit(world, [program], [wrote(program, "d3", now - 400 * DAY, "2029-01")], now=now),
              "document-review"))


def test_review_dates_and_months() -> None:
    assert parse_review_by("2030-02-28") == date(2030, 2, 28)
    for bad in ("2030-02-30", "20300228", "2030-2-28", " 2030-02-28", "tomorrow"):
        with pytest.raises(EncodingError):
            parse_review_by(bad)
    assert check_review_month("2030-12") == "2030-12"
    for bad in ("2030-13", "2030-00", "1999-01", "2030-1", "2030-01-01"):
        with pytest.raises(EncodingError):
            check_review_month(bad)
    assert month_end("2030-05") == JUNE_2030
    assert month_end("2029-12") == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
    assert default_review_by(JUNE_2030, 180) == date(2030, 11, 28)


def test_a_reader_refuses_a_malformed_review_by_date_in_the_metadata() -> None:
    """The exact date is inside the signed, encrypted metadata; a version whose date is malformed, or a deletion that
    carries one, is refused by every reader (``check_metadata``), like any other malformed metadata."""
    base: dict[str, Value] = {"name": "a.md", "size": 1, "mime": "text/plain", "mtime": 0}
    assert check_metadata({**base, "review_by": "2030-02-28"}, PUT)["review_by"] == "2030-02-28"
    for bad, op in (("2030-02-30", PUT), ("2030-02-28T00:00", PUT), ("2030-02-28", DELETE)):
        with pytest.raises(EncodingError):
            check_metadata({**base, "size": 0 if op == DELETE else 1, "review_by": bad}, op)
