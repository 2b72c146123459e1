"""``mvault incident ...``: the Security Team's incidents, as private records (client/incidents.py).

``departure MEMBER`` removes, rotates, reports and records; ``ls``, ``show ID``, ``review ID`` and ``clear ID``
follow an incident through its weekly reviews to its closing. Everything an incident names that came from
another member (names, reasons, notes) is escaped before it is printed. Exit codes: 0 done; 1 refused (not
in the Security Team, no such member or incident, a conflict); 2 a malformed incident id.

``lost-device`` is written apart (client/cli/incident_lost.py, ``lost_device``) and joins this group below; its
pause-lifting function (``client.lost.clear_hook``) is what ``clear`` of a lost-device incident does first
(``CLEAR_HOOKS["lost-device"]`` in client/audit/incidents.py, set here).
"""

from __future__ import annotations

from typing import Any

import click

from client import departure as departures
from client import lost
from client.audit import incidents
from client.audit.log import event_json
from client.cli._common import Column, Ctx, Time, emit_one, emit_rows, json_flag, out, when, with_session
from client.cli.incident_lost import lost_device
from client.cli.incident_suspect import suspect
from client.client import Client
from client.names import Names
from client.sanitize import escape


@click.group()
def incident() -> None:
    """Incidents: a departure or a lost device, from the removal to the last weekly review."""


incident.add_command(lost_device, "lost-device")
incidents.CLEAR_HOOKS["lost-device"] = lost.clear_hook
incident.add_command(suspect, "suspect")
incidents.CLEAR_HOOKS["suspect"] = lost.clear_hook  # lifts the pause, whichever act made it


def _id(_c: click.Context, _p: click.Parameter, value: str) -> str:
    try:
        return incidents.check_id(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


_ID = click.argument("incident_id", metavar="ID", callback=_id)
_NOTE = click.option("--note", default="", help="a private note for the record (only the Security Team reads it)")


def _removal(r: dict[str, Any], member: str) -> str:
    """The removal as people read it (``r`` as client/departure.py records it; another client's record may lack
    a key: what is missing is shown as unknown, never a crash)."""
    status, seq = r.get("status"), r.get("seq")
    if status == "removed":
        return "removed from the organization and every team" + (
            " (before this incident)" if r.get("already") else f" (organization link {seq})")
    needs = ", ".join(escape(str(n)) for n in r.get("needs_names") or []) or "another NCC member"
    if status == "proposed":
        return f"proposed (organization link {seq}), needs NCC {needs}: `mvault remove {member}`"
    if status == "needs_ncc":
        return f"NOT removed: not signed by an NCC member; ask NCC {needs} to run `mvault remove {member}`"
    return f"unknown ({escape(str(status))})"


def _print_departure(info: dict[str, Any], names: Names) -> None:
    who = names.member(info["member"])
    out.print(f"incident {info['id']}: departure of {who}")
    out.print(f"  removal: {_removal(info['removal'], who)}")
    out.print(f"  rotated: {', '.join(map(escape, info['rotated_teams'])) or 'none'}")
    if info["pending_rotation_teams"]:
        out.print(f"  rotation waits for a key holder's next command: "
                  f"{', '.join(map(escape, info['pending_rotation_teams']))}")
    for t in info["exposure"]["teams"]:
        gens = ",".join(map(str, t["generations"])) or "none"
        out.print(f"  exposed: team {escape(t['name'])} generations {gens} of {t['current_generation']}; "
                  f"{len(t['versions'])} versions readable, {sum(v['fetched'] for v in t['versions'])} fetched; "
                  f"{sum(x['messages'] for x in t['threads'])} messages readable")
    told = [f"{names.member(n['member'])} ({', '.join(map(escape, n['teams']))})" for n in info["notify"]]
    out.print(f"  notify: {', '.join(told) or 'nobody'}")
    _print_graph(info["trust_graph"], names)
    out.print(f"  reviews due: {', '.join(info['reviews_due'])}")
    out.print(f"  copies may remain on their devices for anything fetched; audit detail kept "
              f"{info['exposure']['retention_days']} days")


def _print_graph(graph: dict[str, list[dict[str, Any]]], names: Names) -> None:
    out.print(f"  invited: {', '.join(names.member(x['member']) for x in graph['invited']) or 'nobody'}")
    out.print(f"  vouched for: {', '.join(names.member(x['member']) for x in graph['vouched']) or 'nobody'}")
    out.print("  added to teams: " + (", ".join(f"{names.member(x['member'])} to {escape(x['team_name'])}"
                                                for x in graph["added"]) or "nobody"))


@incident.command("departure")
@click.argument("member")
@click.option("--reason", default="", help="why (kept only in the private incident record, never in the chains)")
@json_flag
@click.pass_obj
def departure_cmd(ctx: Ctx, member: str, reason: str) -> None:
    """Security Team: MEMBER leaves or is expelled: remove them (NCC), rotate every team they could read,
    print what they could decrypt and fetched, whom to notify and their trust graph, and open the incident."""

    async def go(s: Client) -> tuple[dict[str, Any], Names]:
        info = await departures.departure(s, member, reason)
        return info, Names(await s.chains.view(), s.session.me)

    info, names = with_session(ctx, go)
    emit_one(ctx, info, lambda: _print_departure(info, names))


_ROWS = (Column("id", lambda r: r["id"]), Column("kind", lambda r: r["kind"]),
         Column("member", lambda r: r["member_name"]), Column("opened", lambda r: Time(r["opened"])),
         Column("status", lambda r: r["status"]),
         Column("reviews", lambda r: f"{r['reviews_done']}/{r['reviews_planned']}"),
         Column("next review", lambda r: None if r["next_review"] is None else Time(r["next_review"])),
         Column("overdue", lambda r: "OVERDUE" if r["overdue"] else ""))


@incident.command("ls")
@click.option("--all", "every", is_flag=True, help="closed incidents too")
@json_flag
@click.pass_obj
def ls_cmd(ctx: Ctx, every: bool) -> None:
    """Security Team: open incidents and their next weekly review (overdue ones flagged)."""

    async def go(s: Client) -> list[dict[str, Any]]:
        now = s.session.now()
        return [incidents.row(i.data, now) for i in await incidents.every(s) if every or i.open]

    emit_rows(ctx, with_session(ctx, go), _ROWS)


def _print_record(info: dict[str, Any], names: Names) -> None:
    d, r = info["incident"], info["summary"]
    device = f", device {names.device(d['device'])}" if d.get("device") else ""
    out.print(f"incident {d['id']}: {d['kind']} of {names.member(d['member'])}{device}, opened {when(d['opened'])} "
              f"by {names.member(d['opened_by'])} [{r['status']}] (record version {info['version']})")
    if d["reason"]:
        out.print(f"  reason: {escape(d['reason'])}")
    if "removal" in d:
        out.print(f"  removal: {_removal(d['removal'], names.member(d['member']))}")
    for key, label in (("rotated_teams", "rotated"), ("pending_rotation_teams", "rotation pending")):
        if d.get(key):
            out.print(f"  {label}: {', '.join(map(escape, d[key]))}")
    if d.get("notify"):
        out.print(f"  notify: {', '.join(names.member(n['member']) for n in d['notify'])}")
    if "trust_graph" in d:
        _print_graph(d["trust_graph"], names)
    nxt = r["next_review"]
    out.print(f"  reviews: {r['reviews_done']} of {r['reviews_planned']} done" + (
        "" if nxt is None else f"; next due {when(nxt)}" + (" (OVERDUE)" if r["overdue"] else "")))
    for rv in d["reviews"]:
        out.print(f"    {when(rv['time'])} by {names.member(rv['by'])}: {len(rv['events'])} events reviewed"
                  + (f"; {escape(rv['note'])}" if rv["note"] else ""))
    if d.get("closed"):
        c = d["closed"]
        out.print(f"  closed {when(c['time'])} by {names.member(c['by'])}" + (
            f": {escape(c['note'])}" if c["note"] else ""))
    out.print(f"  events of the member since the opening: {len(info['events'])}")
    for e in info["events"]:
        out.print(f"    #{e['index']} {when(e['time'])} {escape(e['action'])} {escape(e['result'])}")


@incident.command("show")
@_ID
@json_flag
@click.pass_obj
def show_cmd(ctx: Ctx, incident_id: str) -> None:
    """Security Team: everything the record holds, and the member's audit events since the opening."""

    async def go(s: Client) -> tuple[dict[str, Any], Names]:
        inc = await incidents.get(s, incident_id)
        view, seen = await incidents.member_events(s, inc.data, inc.data["opened"])
        names = Names(view, s.session.me)
        return {"incident": inc.data, "version": inc.version, "summary": incidents.row(inc.data, s.session.now()),
                "events": [event_json(i, e, view, names) for i, e in seen]}, names

    info, names = with_session(ctx, go)
    emit_one(ctx, info, lambda: _print_record(info, names))


@incident.command("review")
@_ID
@_NOTE
@json_flag
@click.pass_obj
def review_cmd(ctx: Ctx, incident_id: str, note: str) -> None:
    """Security Team: record this week's review: the member's events since the last review, and a note."""

    async def go(s: Client) -> dict[str, Any]:
        inc, seen = await incidents.review(s, incident_id, note)
        return {"id": inc.id, "version": inc.version, "review": inc.data["reviews"][-1],
                "summary": incidents.row(inc.data, s.session.now())}

    info = with_session(ctx, go)
    nxt = info["summary"]["next_review"]
    emit_one(ctx, info, f"recorded review {info['summary']['reviews_done']} of incident {info['id']} "
                        f"({len(info['review']['events'])} events looked at); "
                        + ("no review left" if nxt is None else f"next due {when(nxt)}"))


@incident.command("clear")
@_ID
@_NOTE
@json_flag
@click.pass_obj
def clear_cmd(ctx: Ctx, incident_id: str, note: str) -> None:
    """Security Team: close the incident (a lost-device incident also lifts the member's pause)."""

    async def go(s: Client) -> dict[str, Any]:
        inc = await incidents.clear(s, incident_id, note)
        return {"id": inc.id, "version": inc.version, "closed": inc.data["closed"]}

    info = with_session(ctx, go)
    emit_one(ctx, info, f"closed incident {info['id']}")


COMMANDS: tuple[click.Command, ...] = (incident,)
