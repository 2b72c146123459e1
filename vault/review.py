"""A sensitive document's review-by date (rule ``document-review``), and the coarse month the server learns of it.

The exact date lives in the version's encrypted metadata (``review_by``: ``YYYY-MM-DD``); the server learns only its
month, signed in the version's header (``core.review``, ``vault/envelope.py``; the upload's ``?review=YYYY-MM`` must
match it), which it records in the ``doc.write`` event so that the Security Team's
rule can flag overdue documents without the server learning more. A new version carries a new date (by default
``days`` after it is stored, in teams of the rule's ``sensitive_kinds``). Dates are UTC."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from vault.errors import EncodingError

REVIEW_KEY = "review_by"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def parse_review_by(text: str) -> date:
    """A review-by date written ``YYYY-MM-DD``; anything else is refused."""
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as e:
        raise EncodingError(f"review-by date {text!r} is not a date written YYYY-MM-DD") from e


def review_month(d: date) -> str:
    """The month the server is told: ``YYYY-MM``."""
    return f"{d.year:04d}-{d.month:02d}"


def check_review_month(text: str) -> str:
    """A month written ``YYYY-MM`` (months 01 to 12, years 2000 to 9999), returned as given; anything else refused."""
    m = _MONTH.fullmatch(text)
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 2000:
        raise EncodingError(f"review month {text[:16]!r} is not a month written YYYY-MM")
    return text


def default_review_by(now: int, days: int) -> date:
    """``days`` after ``now`` (UTC)."""
    return (datetime.fromtimestamp(now, UTC) + timedelta(days=days)).date()


def month_end(month: str) -> int:
    """The first second after the month ``YYYY-MM`` (UTC): a document reviewed by then is overdue from it."""
    year, mon = (int(x) for x in check_review_month(month).split("-"))
    year, mon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    return int(datetime(year, mon, 1, tzinfo=UTC).timestamp())
