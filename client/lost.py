"""The lost-device incident, the Security Team's side (rule lost-device): cut a device off, rotate what this
device may rotate, report what stays pending and when the weekly reviews fall; and lift the pause.

``cut_device`` signs ``org.device.cut`` (vault/chains/incidents.py), which also pauses the member's sensitive
memberships; ``clear_pause`` signs ``org.clear`` (what ``mvault incident clear`` calls). No reason or note
goes into the organization chain: every member reads it (the incident record holds the notes).
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from typing import Any

from client.audit import incidents
from client.client import Client
from client.maintenance import maintain
from client.sanitize import escape
from client.view import DatedAhead, ending_retry
from security.authority import paused_kinds
from vault.chains import MemberState, TeamState
from vault.chains.incidents import last_body, last_signed
from vault.errors import ChainError, Conflict, NotFound, VaultError

DAY = 86400
REVIEW_WEEKS = 4  # rule lost-device: weekly activity review for 4 weeks
CUT_ATTEMPTS = 3  # a 409 (the device signed, or a team moved, since we looked): look again and sign again


@dataclass(frozen=True)
class LostDeviceReport:
    """What ``cut_device`` did (the ``--json`` object of ``mvault incident lost-device``)."""

    member: str
    device: str
    cut_seq: int
    paused_teams: list[str]
    rotated_teams: list[str]
    pending_rotation_teams: list[str]
    reviews_due: list[str]  # ISO dates
    incident_id: str | None = None  # the private record (client/audit/incidents.py); None: not opened
    record_problem: str = ""  # why the record could not be opened (the cut stands all the same)

    def as_json(self) -> dict[str, object]:
        return {"incident_kind": "lost-device", "id": self.incident_id, "member": self.member, "device": self.device,
                "cut_seq": self.cut_seq, "paused_teams": self.paused_teams, "rotated_teams": self.rotated_teams,
                "pending_rotation_teams": self.pending_rotation_teams, "reviews_due": self.reviews_due}


def reviews_due(now: int) -> list[str]:
    """The weekly review dates (UTC, ISO) for the 4 weeks after ``now``."""
    return [datetime.datetime.fromtimestamp(now + week * 7 * DAY, datetime.UTC).date().isoformat()
            for week in range(1, REVIEW_WEEKS + 1)]


def _device_of(ms: MemberState, name: str) -> str:
    found = [d.device_id for d in ms.active_devices() if name in (d.device_id, d.name)]
    if len(found) != 1:
        raise NotFound(f"member {ms.name} has no active device {name!r}" if not found
                       else f"member {ms.name} has several devices named {name!r}; use the device id")
    return found[0]


def _teams_of(teams: dict[str, TeamState], member: str) -> list[TeamState]:
    """The teams whose current key ``member`` holds a box of (what the cut device could read)."""
    return [t for t in teams.values() if (t.generation, member) in t.boxes]


async def cut_device(s: Client, member: str, device: str, reason: str = "") -> LostDeviceReport:
    """Cut ``device`` of ``member`` off (``org.device.cut``), then do the rotations this device may do now, then
    open the private incident record (``reason`` goes only there). The cut comes first and stands even when the
    record cannot be written (e.g. no Security Team is designated yet): the report says why."""
    view = await s.chains.view()
    ms = view.member_by_name(member)
    device_id = _device_of(ms, device)
    exposed = {t.team_id: t.generation for t in _teams_of(view.teams, ms.member_id)}
    after = 0  # the time the server said the cut must be dated from (the device signed something dated ahead)
    for attempt in range(CUT_ATTEMPTS):
        # Dated after every team link this member sees (the server refuses a cut dated before a team link) and what
        # the server said; names the last link the device signed in each chain (refused if it signed more since)
        last = last_body(last_signed(device_id, ms, view.teams.values()))
        newest = max(view.teams.values(), key=lambda t: t.time, default=None)
        head = (newest.time, f"team {escape(newest.name)}'s link {newest.seq}") if newest is not None else (0, "")
        since, which = max((after - 1, "the date the server named"), head)  # bounded in append_org (ending_time)
        try:
            await s.chains.append_org("org.device.cut", {"member": ms.member_id, "device": device_id, "last": last},
                                      not_before=since + 1, after=which)
            break
        except Conflict as e:
            if attempt == CUT_ATTEMPTS - 1 or isinstance(e, DatedAhead):  # looking again does not help
                raise
            if e.not_before:  # within the bounds of any link ending rights (a lying server's date far ahead: raised)
                after = max(after, ending_retry(e, s.session.now(), "org.device.cut"))
            view = await s.chains.view(refresh=True)  # the device (or a team) moved on meanwhile: look again
            ms = view.members[ms.member_id]
    view = await s.chains.view()
    cut = view.org.incidents.cut_of(ms.member_id, device_id)
    if cut is None:
        raise VaultError("the server did not record the cut (refresh and check the organization chain)")
    try:
        await maintain(s)  # rotates every team whose key this device holds
    except ChainError as e:  # the cut stands; what is left is reported pending, and a key holder's next command does it
        # (a cut dated a second beyond the server's window, after an act of the device at its edge: the rotations
        # are dated after the cut, and the server takes none in that second, review 37)
        s.session.warnings.append(f"the cut is stored; the rotations it made due were not all done: {e.message}")
    view = await s.chains.view()
    now = s.session.now()
    rotated = sorted(view.teams[t].name for t, gen in exposed.items() if view.teams[t].generation > gen)
    pending = sorted(view.teams[t].name for t, gen in exposed.items() if view.teams[t].generation == gen)
    kinds = paused_kinds(view.org, now)
    paused = sorted(t.name for t in view.teams.values() if t.kind in kinds and t.role_of(ms.member_id, now))
    report = LostDeviceReport(ms.member_id, device_id, cut.seq, paused, rotated, pending, reviews_due(now))
    try:
        inc = await incidents.open_incident(s, "lost-device", ms.member_id, ms.name, reason, {
            "device": device_id, "cut_seq": cut.seq, "paused_teams": paused, "rotated_teams": rotated,
            "pending_rotation_teams": pending})
    except VaultError as e:
        return dataclasses.replace(report, record_problem=e.message)
    return dataclasses.replace(report, incident_id=inc.data["id"])


async def clear_pause(s: Client, member: str) -> int:
    """Lift the pause on ``member``'s sensitive memberships (``org.clear``); the seq of the link."""
    view = await s.chains.view()
    ms = view.member_by_name(member)
    await s.chains.append_org("org.clear", {"member": ms.member_id})
    view = await s.chains.view()
    return view.org.seq


async def clear_hook(s: Client, record: dict[str, Any]) -> dict[str, Any]:
    """What ``mvault incident clear`` of a lost-device incident does first: lift the pause (``org.clear``)."""
    view = await s.chains.view()
    if view.org.incidents.open_pause(record["member"]) is None:
        return {"clear_seq": None}  # already lifted (another Security Team member's clear)
    return {"clear_seq": await clear_pause(s, record["member"])}
