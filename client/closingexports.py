"""The hand-over of a sensitive team in a closing (issue 20, docs/lifecycle.md section 3 "Running it"): the
Security Team's two-person export approval, as for any export of such a team.

A plan entry naming a team of the ``exports`` rule's ``sensitive_kinds`` is exported only under an export request
(``vault/chains/exports.py``) that names exactly the entry's documents (or every document) and recipients, by the
member running the closing, approved by two Security Team members, not expired. ``org close --run`` finds such a
request in the team chain it replayed, or signs one (``export.request``, valid a week) and stops before writing
anything until both approvals are there; the server checks the export against the request as for any other
(``server/exports.py``: the member's own, approved, not expired, these documents, once).

Why not count the closing's approvals instead: the closing quorum needs one Security Team member by default, the
export approval two, neither the requester; and the approvals of a request are judged and reported by the rules
``exports`` and ``two-person`` like every other export, with no second path to keep in step."""

from __future__ import annotations

from dataclasses import dataclass

from client.client import Client
from client.exportrequests import request_export
from client.view import View
from security.protocols import defaults, parse
from vault.chains import PlanEntry, TeamState
from vault.chains.exports import ExportRequest
from vault.errors import VaultError

REQUEST_SECONDS = 7 * 86400


@dataclass(frozen=True)
class Awaiting:
    """A sensitive plan entry waiting for its export request's approvals."""

    entry: int
    team: TeamState
    request: ExportRequest
    made: bool  # signed by this run (else found in the team chain, signed by an earlier run)

    def to_json(self) -> dict[str, object]:
        return {"entry": self.entry, "team": self.team.team_id, "team_name": self.team.name,
                "request": self.request.hash.hex(), "approvals": len(self.request.approvals), "made": self.made}


def sensitive_kinds(view: View) -> frozenset[str]:
    """The ``exports`` rule's sensitive kinds in the protocols in force (none when the rule is disabled)."""
    protocols = parse(view.org.protocols.text) if view.org.protocols is not None else defaults()
    rule = protocols.rules.get("exports")
    return frozenset(rule.strs("sensitive_kinds")) if rule is not None and rule.enabled else frozenset()


def matches(req: ExportRequest, entry: PlanEntry, me: str, now: int) -> bool:
    """Is ``req`` a request of ``me``, in force at ``now``, for exactly the entry's documents and recipients?"""
    return (req.requester == me and now < req.expires and req.recipients == tuple(sorted(set(entry.recipients)))
            and req.docs == (tuple(sorted(entry.documents)) or None))


async def requests_for(c: Client, entries: list[tuple[int, PlanEntry, TeamState]]
                       ) -> tuple[dict[int, ExportRequest], list[Awaiting]]:
    """Per sensitive entry (index, entry, its team), the approved request it is exported under; the entries still
    waiting for approvals, with the request made for each that had none."""
    ready: dict[int, ExportRequest] = {}
    awaiting = []
    me, now = c.session.me, c.session.now()
    for i, entry, team in entries:
        found = sorted((r for r in team.exports.values() if matches(r, entry, me, now)),
                       key=lambda r: (r.approved, r.seq))
        if found and found[-1].approved:
            ready[i] = found[-1]
            continue
        if found:
            awaiting.append(Awaiting(i, team, found[-1], False))
            continue
        heads = [d for d in await c.docs.ls(team.name) if d.record.core.doc in entry.documents]
        if len(heads) != len(entry.documents):  # never a request for every document in place of some
            raise VaultError(f"plan entry {i + 1}: documents of team {team.name} are not there any more (deleted "
                             "since the proposal?): a new proposal is needed")
        _, made = await request_export(c, team.team_id, heads, entry.recipients, REQUEST_SECONDS)
        awaiting.append(Awaiting(i, team, made, True))
    return ready, awaiting
