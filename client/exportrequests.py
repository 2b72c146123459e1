"""Export requests and their approvals (issues 18 and 20; ``vault/chains/exports.py``): ``mvault export request``,
``mvault export approve``, ``mvault export requests``, and the check ``mvault export TEAM --request ID`` makes.

Each is a team link signed by this device and checked locally against the verified chain before it is posted
(``Chains.append_team``); every client replays the approvals with the one judge, so an approval the server made up,
or one signed by someone without the Security Team role at its time, breaks the team chain's replay and nothing is
exported (the server is the attacker)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from client.audit.log import load
from client.client import Client
from client.docs import DocVersion
from vault.agefile import check_recipient
from vault.chains import TeamState
from vault.chains.exports import MAX_EXPORT_SECONDS, ExportRequest, find_request
from vault.errors import ChainError, NotFound, PolicyDenied, VaultError


@dataclass(frozen=True)
class Listed:
    """A request as ``mvault export requests`` shows it (names as this client knows them)."""

    team: TeamState
    request: ExportRequest
    requester: str
    approvers: tuple[str, ...]
    used: int | None = None  # the time of the export the audit log shows under it (None: none this device saw)
    used_known: bool = False  # could this device see it: the Security Team opens every event, the requester theirs

    def to_json(self, now: int) -> dict[str, Any]:
        r = self.request
        status = "used" if self.used is not None else r.status(now)
        return {"id": r.hash.hex(), "team": self.team.team_id, "team_name": self.team.name,
                "requester": r.requester, "requester_name": self.requester, "time": r.time, "expires": r.expires,
                "docs": None if r.docs is None else list(r.docs), "recipients": list(r.recipients),
                "approvals": [{"member": a.member, "name": n, "time": a.time} for a, n in zip(r.approvals,
                                                                                          self.approvers, strict=True)],
                "status": status, "used": self.used, "used_known": self.used_known}


def recipients_of(given: Sequence[str]) -> list[str]:
    """The age recipients of a request: each checked, sorted, without repeats."""
    if not given:
        raise VaultError("give the recipients' age keys: --age-recipient age1... (repeat for several)")
    return sorted({check_recipient(r) for r in given})


async def request_export(s: Client, team_name: str, heads: Sequence[DocVersion], recipients: Sequence[str],
                         ttl: int) -> tuple[TeamState, ExportRequest]:
    """Sign an ``export.request`` for ``heads`` (the documents chosen; none: every document) of ``team_name``."""
    if not 0 < ttl <= MAX_EXPORT_SECONDS:
        raise VaultError("an export request may be valid for 1 second to 30 days")
    view = await s.chains.view()
    team = view.team_by_name(team_name)
    docs = sorted({d.record.core.doc for d in heads}) or None
    link = await s.chains.append_team(team, "export.request", {"docs": docs, "recipients": recipients_of(recipients),
                                                               "expires": s.session.now() + ttl})
    view = await s.chains.view()
    return view.team_by_name(team.team_id), view.team_by_name(team.team_id).exports[link.hash]


def _all_requests(teams: Sequence[TeamState]) -> dict[bytes, tuple[TeamState, ExportRequest]]:
    return {h: (t, r) for t in teams for h, r in t.exports.items()}


async def approve_export(s: Client, ref: str) -> Listed:
    """Sign an ``export.approve`` of the request ``ref`` (its id, or 8+ hex characters of it), in whichever team
    this client sees it (the Security Team sees every team chain)."""
    view = await s.chains.view()
    found = _all_requests(list(view.teams.values()))
    req = find_request({h: r for h, (_, r) in found.items()}, ref)
    team = found[req.hash][0]
    me, now = s.session.me, s.session.now()
    if req.requester == me:
        raise PolicyDenied("you cannot approve your own export request: two other Security Team members approve it")
    if any(a.member == me for a in req.approvals):
        raise VaultError(f"you approved export request {req.hash.hex()[:16]} already")
    if now >= req.expires:
        raise VaultError(f"export request {req.hash.hex()[:16]} expired; the requester makes a new one")
    await s.chains.append_team(team, "export.approve", {"request": req.hash})
    return (await list_requests(s, team.team_id, ref=req.hash.hex()))[0]


async def list_requests(s: Client, team_name: str | None = None, ref: str | None = None,
                        uses: bool = False) -> list[Listed]:
    """The export requests of one team (by name or id) or of every team this client sees, oldest first. ``uses``:
    also whether each was used, from the verified audit log (the ``doc.export`` event naming it, which the server
    records once per request): the Security Team opens every event, a requester their own; for anyone else
    ``used_known`` is false."""
    view = await s.chains.view()
    teams = [view.team_by_name(team_name)] if team_name is not None else list(view.teams.values())
    used: dict[str, int] = {}
    security = False
    if uses:
        _, _, _, keys, events, _ = await load(s)
        security = keys.security
        for _, ev in events:
            request = ev.res.get("request")
            if ev.action == "doc.export" and ev.result == "ok" and request:
                used.setdefault(request, ev.time)
    me = s.session.me
    out = [Listed(t, r, view.name_of(r.requester), tuple(view.name_of(a.member) for a in r.approvals),
                  used.get(r.hash.hex()), uses and (security or r.requester == me))
           for t, r in _all_requests(teams).values() if ref is None or r.hash.hex() == ref]
    return sorted(out, key=lambda x: (x.request.time, x.request.hash))


def approved_request(team: TeamState, ref: str, me: str, now: int) -> ExportRequest:
    """The request ``ref`` of ``team`` if this member may export under it now (their own, not expired, approved by
    two Security Team members: the approvals were judged when this client replayed the chain); else an error that
    says why."""
    try:
        req = find_request(team.exports, ref)
    except ChainError as e:
        raise NotFound(f"team {team.name}: {e.message}") from None
    why = req.refusal(me, now)
    if why is not None:
        raise PolicyDenied(f"you may not export team {team.name} under this request: {why}")
    return req


def chosen_under(req: ExportRequest, picked: list[DocVersion], opened: list[DocVersion],
                 named: bool) -> list[DocVersion]:
    """The documents an export under ``req`` writes: those named (``picked``; each must be one of the request's),
    else the request's own (of the heads this member can open), else every document when the request says all."""
    if not named and req.docs is not None:
        picked = [d for d in opened if d.record.core.doc in req.docs]
    if not req.covers([d.record.core.doc for d in picked]):
        raise PolicyDenied("a document named is not one of the export request's")
    return picked
