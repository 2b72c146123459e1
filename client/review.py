"""Which review-by date a new version carries (rule ``document-review``, ``vault/review.py``): the one the member
gave (``mvault put --review-by``), else, in a team of the rule's ``sensitive_kinds``, ``days`` after now (the
shipped protocol defaults); none elsewhere."""

from __future__ import annotations

from datetime import date

from security.protocols import defaults
from vault.review import default_review_by


def review_for(team_kind: str, given: date | None, now: int) -> date | None:
    if given is not None:
        return given
    rule = defaults().rules.get("document-review")
    if rule is None or not rule.enabled or team_kind not in rule.strs("sensitive_kinds"):
        return None
    return default_review_by(now, rule.int_("days"))
