"""Incidents as private records of the Security Team (rule ``lost-device``, and departures).

An incident is one encrypted document of the Security Team's team (the team whose key seals the audit
log: ``org.audit_team``), named ``incidents/ID.json``: JSON that says what happened (kind, subject member
and device, who opened it and when, the reason), what was done (the removal or cut, teams rotated), what
the member could reach and whom to notify, the weekly reviews due and done, and the closing. Each change
is a new signed version of that document, so the incident's history is the document's history: every
version is signed by a writer of the team, judged, chained to its parent and pinned like any document,
and a change goes on top of the version it was made from (a concurrent edit is a conflict, never a
silent overwrite). Free text (the reason, review notes) lives only here: never in the organization chain
nor in anything the server reads. docs/format.md "Incident records" gives the fields.

This module is the records and the pure schedule; client/departure.py opens a departure incident.
``CLEAR_HOOKS`` holds, per kind, what ``clear`` must also do (a lost-device incident lifts the pause of
the member's sensitive memberships): a kind with no hook cannot be cleared by this client.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client import download
from client.audit.keys import security_team
from client.audit.log import load
from client.client import Client
from client.putbase import Base
from client.view import View
from security.authority import POLICY
from security.events import Event
from vault.acts import Act
from vault.chains import TeamState
from vault.envelope import DELETE, PUT
from vault.errors import Conflict, IntegrityError, NotFound, PolicyDenied, VaultError

FORMAT = "mvault/v1/incident"
KINDS = ("lost-device", "departure", "suspect")
PREFIX = "incidents/"
REVIEW_EVERY = 7 * 86400  # weekly (SECURITY-PROTOCOLS.md: "review activity weekly for a month")
REVIEWS = 4
ID_CHARS = frozenset("0123456789abcdef")
ID_LENGTH = 10

#: kind -> what ``clear`` must also do before the record is closed (its result is kept in the closing).
#: The lost-device command's module registers its pause-lifting function here.
ClearHook = Callable[[Client, dict[str, Any]], Awaitable[dict[str, Any]]]
CLEAR_HOOKS: dict[str, ClearHook] = {}


@dataclass
class Incident:
    """One incident record as its newest version holds it; ``version``: that version's number."""

    data: dict[str, Any]
    version: int

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def open(self) -> bool:
        return self.data.get("closed") is None


def check_id(incident_id: str) -> str:
    """An incident id as typed: ``ID_LENGTH`` lowercase hex characters (anything else names no record)."""
    if len(incident_id) != ID_LENGTH or not set(incident_id) <= ID_CHARS:
        raise ValueError(f"an incident id is {ID_LENGTH} hex characters (as `mvault incident ls` shows)")
    return incident_id


def new_id() -> str:
    return secrets.token_hex(ID_LENGTH // 2)


def doc_name(incident_id: str) -> str:
    return f"{PREFIX}{incident_id}.json"


def iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# -- the schedule (pure) ---------------------------------------------------------------------------------


def reviews_due(opened: int) -> list[int]:
    """The weekly reviews of an incident opened at ``opened``: one a week for ``REVIEWS`` weeks."""
    return [opened + REVIEW_EVERY * k for k in range(1, REVIEWS + 1)]


def next_review(data: dict[str, Any]) -> int | None:
    """When the next review is due: the first scheduled date not yet covered by a review (the n-th review
    covers the n-th date, whenever it was done); None when all were done or the incident is closed."""
    if data.get("closed") is not None:
        return None
    due = list(data["reviews_due"])
    done = len(data["reviews"])
    return due[done] if done < len(due) else None


def row(data: dict[str, Any], now: int) -> dict[str, Any]:
    """An incident for ``incident ls`` and the report: its next review, overdue or not."""
    nxt = next_review(data)
    return {"id": data["id"], "kind": data["kind"], "member": data["member"], "member_name": data["member_name"],
            "opened": data["opened"], "status": "open" if data.get("closed") is None else "closed",
            "reviews_done": len(data["reviews"]), "reviews_planned": len(data["reviews_due"]),
            "next_review": nxt, "overdue": nxt is not None and nxt <= now}


def parse(raw: bytes, incident_id: str) -> dict[str, Any]:
    """The record's JSON, refused unless it has the fields every command reads, of the right types."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(f"incident record {incident_id} is not JSON: {e}") from e
    shape = {"format": str, "id": str, "kind": str, "member": str, "member_name": str, "opened": int,
             "opened_by": str, "reason": str, "reviews_due": list, "reviews": list}
    if not isinstance(data, dict) or not _typed(data, shape):
        raise IntegrityError(f"incident record {incident_id} lacks a field or has one of the wrong type")
    if data["format"] != FORMAT or data["id"] != incident_id or data["kind"] not in KINDS:
        raise IntegrityError(f"incident record {incident_id} is not an incident of this format, or not this one")
    if not all(isinstance(t, int) for t in data["reviews_due"]):
        raise IntegrityError(f"incident record {incident_id} has a review date that is not a time")
    entry = {"by": str, "time": int, "note": str}
    reviews_ok = all(isinstance(r, dict) and _typed(r, entry | {"until": int, "events": list}) for r in data["reviews"])
    closed = data.get("closed")
    if not reviews_ok or not (closed is None or (isinstance(closed, dict) and _typed(closed, entry))):
        raise IntegrityError(f"incident record {incident_id} has a review or a closing of the wrong shape")
    return data


def _typed(value: dict[str, Any], shape: dict[str, type]) -> bool:
    return all(isinstance(value.get(k), t) and not (t is int and isinstance(value.get(k), bool))
               for k, t in shape.items())


# -- the records -----------------------------------------------------------------------------------------


def records_team(s: Client, view: View, write: bool = False) -> TeamState:
    """The Security Team's team that keeps the records, refused unless this member holds its key (and, to
    ``write``, may write documents in it now)."""
    me, now = s.session.me, s.session.now()
    team = security_team(view, me, now)
    if team is None:
        raise PolicyDenied("incident records are private to the Security Team: you hold no key of its team")
    if write and not POLICY.entitled(Act(me, s.session.device.device_id, now, "doc.write"), view.org, view.members,
                                     team):
        raise PolicyDenied(f"you may not write in team {team.name}, which keeps the incident records")
    return team


async def _content(s: Client, team: TeamState, name: str) -> tuple[bytes, int] | None:
    """The newest version of document ``name`` (checked, pinned, decrypted) and its number; None: no such
    document, or its newest version is a deletion."""
    _, versions = await s.docs.find_doc(team, name)
    if not versions:
        return None
    rec = versions[-1]
    opened = s.docs.open_version(rec, await s.keys.keys_for(team))
    if rec.core.op == DELETE:
        return None
    if opened.name != name:
        raise IntegrityError("the document's encrypted name does not match the requested name")
    with tempfile.TemporaryDirectory(prefix=".mvault-incident-", dir=s.session.home.path) as tmp:
        part, _ = await download.receive_beside(s.session.api, rec, opened, Path(tmp) / "record", None)
        return part.read_bytes(), len(versions)


async def get(s: Client, incident_id: str) -> Incident:
    view = await s.chains.view()
    found = await _content(s, records_team(s, view), doc_name(check_id(incident_id)))
    if found is None:
        raise NotFound(f"no incident {incident_id} (`mvault incident ls --all` lists them)")
    return Incident(parse(found[0], incident_id), found[1])


async def every(s: Client) -> list[Incident]:
    """Every incident record, oldest first."""
    view = await s.chains.view()
    team = records_team(s, view)
    ids = sorted(d.opened.name[len(PREFIX):-len(".json")] for d in await s.docs.ls(team.team_id)
                 if d.opened is not None and d.opened.name.startswith(PREFIX) and d.opened.name.endswith(".json"))
    found = []
    for incident_id in ids:
        try:
            check_id(incident_id)
        except ValueError:
            continue  # not a record this client wrote: an ordinary document of the team
        content = await _content(s, team, doc_name(incident_id))
        if content is not None:
            found.append(Incident(parse(content[0], incident_id), content[1]))
    return sorted(found, key=lambda i: (i.data["opened"], i.id))


async def save(s: Client, data: dict[str, Any], version: int) -> int:
    """Store ``data`` as version ``version + 1`` of its record (0: a new record), only on top of version
    ``version``: if someone changed it meanwhile, a ``Conflict`` and nothing stored. Returns the new number."""
    view = await s.chains.view()
    team = records_team(s, view, write=True)
    name = doc_name(data["id"])
    with tempfile.TemporaryDirectory(prefix=".mvault-incident-", dir=s.session.home.path) as tmp:
        source = Path(tmp) / "record.json"
        source.write_text(json.dumps(data, sort_keys=True, ensure_ascii=True, indent=1) + "\n")
        try:
            seq, _ = await s.docs.write_op(team.team_id, name, PUT, source=source, base=Base(if_version=version),
                                           index=False)
        except Conflict as e:
            raise Conflict(f"incident {data['id']} was changed meanwhile by another member of the Security Team; "
                           "nothing stored: run the command again") from e
    return seq


async def open_incident(s: Client, kind: str, member: str, member_name: str, reason: str,
                        details: dict[str, Any]) -> Incident:
    """A new incident of ``kind`` about ``member``, opened now by this member: its first version stored."""
    if kind not in KINDS:
        raise VaultError(f"an incident is one of {', '.join(KINDS)}")
    now = s.session.now()
    data = {"format": FORMAT, "id": new_id(), "kind": kind, "member": member, "member_name": member_name,
            "device": details.pop("device", None), "opened": now, "opened_by": s.session.me, "reason": reason,
            **details, "reviews_due": reviews_due(now), "reviews": [], "closed": None}
    return Incident(data, await save(s, data, 0))


def about_member(events: list[tuple[int, Event]], member: str, since: int) -> list[tuple[int, Event]]:
    """The events by or about ``member`` after ``since`` (what a review looks at)."""
    return [(i, e) for i, e in events if e.time > since and member in (e.actor, e.res.get("member"))]


async def member_events(s: Client, data: dict[str, Any], since: int) -> tuple[View, list[tuple[int, Event]]]:
    """The verified view and the subject's events after ``since`` in the verified log."""
    view, _, _, keys, events, _ = await load(s)
    if not keys.security:
        raise PolicyDenied("reading an incident's events needs the Security Team's audit key")
    return view, about_member(events, data["member"], since)


def _covered(data: dict[str, Any]) -> int:
    """Where the next review starts: the end of the last review, or the opening."""
    return int(data["reviews"][-1]["until"]) if data["reviews"] else int(data["opened"])


async def review(s: Client, incident_id: str, note: str) -> tuple[Incident, list[tuple[int, Event]]]:
    """Record a review: who, when, the note, and which of the member's events it looked at (those since
    the last review). Returns the record and those events."""
    inc = await get(s, incident_id)
    if not inc.open:
        raise Conflict(f"incident {incident_id} is closed; nothing to review")
    now = s.session.now()
    _, seen = await member_events(s, inc.data, _covered(inc.data))
    actions: dict[str, int] = {}
    for _, e in seen:
        actions[e.action] = actions.get(e.action, 0) + 1
    inc.data["reviews"].append({"by": s.session.me, "time": now, "note": note, "since": _covered(inc.data),
                                "until": now, "events": [i for i, _ in seen], "actions": actions})
    inc.version = await save(s, inc.data, inc.version)
    return inc, seen


async def clear(s: Client, incident_id: str, note: str) -> Incident:
    """Close an incident (after what its kind's ``CLEAR_HOOKS`` entry must do, e.g. lift a pause)."""
    inc = await get(s, incident_id)
    if not inc.open:
        raise Conflict(f"incident {incident_id} is already closed")
    kind = inc.data["kind"]
    effect: dict[str, Any] = {}
    if kind in CLEAR_HOOKS:
        effect = await CLEAR_HOOKS[kind](s, inc.data)
    elif kind == "lost-device":
        raise VaultError("clearing a lost-device incident must also lift the member's pause, which this client "
                         "cannot do yet; nothing changed")
    inc.data["closed"] = {"by": s.session.me, "time": s.session.now(), "note": note, "effect": effect}
    inc.version = await save(s, inc.data, inc.version)
    return inc


@dataclass(frozen=True)
class Overview:
    """The incidents as the audit report shows them: ``readable`` False when this member cannot read them."""

    readable: bool
    rows: list[dict[str, Any]]
    why: str = ""


async def overview(s: Client) -> Overview:
    """The open incidents and their reviews due, or why they cannot be read (not in the Security Team's
    team)."""
    try:
        found = await every(s)
    except PolicyDenied as e:
        return Overview(False, [], str(e))
    now = s.session.now()
    return Overview(True, [row(i.data, now) for i in found if i.open])
