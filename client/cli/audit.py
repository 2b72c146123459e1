"""``mvault audit ...``: the audit log from the command line.

Exit codes: 0 fine; 1 an error, a log that does not verify, or (``audit report``) a
violated rule. Alerts and warnings are printed but do not fail the report.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from client import records
from client.audit import html, incidents, keys, log, notes, report, timeline
from client.checkpoints import protocols_of
from client.cli._common import (
    Column,
    Ctx,
    Time,
    emit_one,
    emit_rows,
    err,
    json_flag,
    out,
    print_rows,
    when,
    with_session,
)
from client.client import Client
from client.names import Names
from client.sanitize import escape, neutralize
from vault.chains import protocols_digest
from vault.errors import ChainError, NotFound, VaultError, WouldOverwrite
from vault.fileio import atomic_write, write_all
from vault.links import Link, check_sequence
from vault.wire.schemas import AttestRequest, Ok


@click.group()
def audit() -> None:
    """The audit log: read, export, verify, witness, report, exposure."""


_EVENTS = (Column("#", lambda r: r["index"]), Column("time", lambda r: Time(r["time"])),
           Column("actor", lambda r: r["actor_name"] or r["actor"][:12], lambda r: r["actor_name"] or r["actor"]),
           Column("action", lambda r: r["action"]), Column("result", lambda r: r["result"]),
           Column("resources", lambda r: " ".join(f"{k}={_resource(r, k, v)}" for k, v in sorted(r["res"].items())),
                  lambda r: " ".join(_piped_resource(r, k, v) for k, v in sorted(r["res"].items()))),
           Column("rules", lambda r: ",".join(r["rules"])))
_MARK: dict[str, str] = {"ok": "ok", "violated": "VIOLATED", "alert": "ALERT", "warning": "warning",
                         "disabled": "disabled"}
_RULES = (Column("rule", lambda r: r["rule"]), Column("severity", lambda r: r["severity"]),
          Column("status", lambda r: _MARK.get(r["status"], r["status"])),
          Column("findings", lambda r: len(r["findings"])))


def _resource(row: dict[str, Any], key: str, value: str) -> str:
    """A resource of an event for people: a member, team or device by its name, anything else by its id's start."""
    name = row.get(f"{key}_name") if key in log.NAMED_RESOURCES else None
    return name if isinstance(name, str) else value[:12]


def _piped_resource(row: dict[str, Any], key: str, value: str) -> str:
    """In a pipe: the whole id (``key=ID``), and for a member, team or device its name beside it (``key_name=``)."""
    name = row.get(f"{key}_name") if key in log.NAMED_RESOURCES else None
    return f"{key}={value}" + (f" {key}_name={name}" if isinstance(name, str) else "")


@audit.command("log")
@click.option("--member", default=None, help="events by or about this member")
@click.option("--team", "team_name", default=None, help="events about this team")
@click.option("--action", default=None, help="an action (doc.read) or a prefix (doc)")
@click.option("--since", default=None, help="a duration (7d, 12h, 30m) or a unix time")
@json_flag
@click.pass_obj
def audit_log(ctx: Ctx, member: str | None, team_name: str | None, action: str | None, since: str | None) -> None:
    """Events you may read: all of them for the Security Team, your own for everyone else."""
    start = log.parse_since(since, ctx.clock.now())

    async def go(s: Client) -> list[dict[str, Any]]:
        view, _, _, _, events, _ = await log.load(s)
        found = log.filter_events(events, view, member, team_name, action, start)
        names = Names(view)
        return [log.event_json(i, e, view, names) for i, e in found]

    emit_rows(ctx, with_session(ctx, go), _EVENTS)  # under --json a list (it was {"events": [...]})


@audit.command("export")
@click.option("--since", default=None, help="a duration (30d) or a unix time")
@json_flag
@click.pass_obj
def audit_export(ctx: Ctx, since: str | None) -> None:
    """Events as JSON lines on stdout (for a SIEM or an archive); with --json one JSON list. The export is
    itself audited."""
    start = log.parse_since(since, ctx.clock.now())

    async def go(s: Client) -> list[dict[str, Any]]:
        view, lv, fetched, _, events, _ = await log.load(s)
        names = Names(view)
        rows = [log.event_json(i, e, view, names) | {"leaf_hash": fetched.hashes[i].hex()}
                for i, e in log.filter_events(events, view, None, None, None, start)]
        await s.session.api.post("/api/v1/audit/attest", AttestRequest("export", count=len(rows)), Ok)
        return rows

    rows = with_session(ctx, go)
    if ctx.as_json:
        emit_rows(ctx, rows, ())
    else:
        sys.stdout.write("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def _print_verified(v: log.Verified) -> None:
    out.print(f"log verified: {v.checkpoint.size} events, root {v.checkpoint.root.hex()[:32]}…")
    out.print(f"  events you can read: {v.events_read}; pruned by retention: {v.pruned}")
    if v.unheld:
        out.print(f"  sealed to a former security team's key you never held: {v.unheld}")
    out.print(f"  last witnessed: {when(v.last_witness) if v.last_witness else 'never'}")
    if v.outside_witness:
        out.print(f"  last cosigned by an outside witness: {when(v.outside_witness)}")
    for p in v.problems:
        out.print_line(f"  PROBLEM: {p}")


@audit.command("verify")
@json_flag
@click.pass_obj
def audit_verify(ctx: Ctx) -> None:
    """Replay the whole log against the checkpoints you accepted; exit 1 on any problem."""

    async def go(s: Client) -> log.Verified:
        v, _, _, _ = await log.verify_log(s)
        return v

    v = with_session(ctx, go)
    emit_one(ctx, v.to_json(), lambda: _print_verified(v))
    if v.problems:
        sys.exit(1)


@audit.command("witness")
@json_flag
@click.pass_obj
def audit_witness(ctx: Ctx) -> None:
    """Security Team: verify the log, then cosign its checkpoint."""
    v, size = with_session(ctx, log.witness)

    def human() -> None:
        _print_verified(v)
        out.print(f"cosigned the checkpoint at {size} events")

    emit_one(ctx, v.to_json() | {"cosigned": size}, human)


@audit.command("report")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the report as one self-contained HTML file (mode 0600)")
@click.option("--since", default=None, help="with --html: the charts' window, a duration (90d) or a unix time")
@click.option("--force", is_flag=True, help="with --html: replace an existing file")
@json_flag
@click.pass_obj
def audit_report(ctx: Ctx, html_path: Path | None, since: str | None, force: bool) -> None:
    """Security Team: evaluate every security protocol; exit 1 if any is violated."""
    if html_path is None and (since is not None or force):
        raise click.UsageError("--since and --force go with --html FILE")
    if html_path is not None and not force and os.path.lexists(html_path):
        raise VaultError(f"{html_path} exists; add --force to replace it")
    start = log.parse_since(since or HTML_WINDOW, ctx.clock.now()) or 0  # (a bad --since stops here, first)
    rep = with_session(ctx, report.report)
    results, v, names = rep.results, rep.verified, rep.names
    if html_path is not None:
        _write_private(html_path, html.render(rep, start).encode(), force)

    def human() -> None:
        print_rows([r.to_json() for r in results], _RULES)
        for r in results:
            for f in r.findings:
                events = f" (events {', '.join(map(str, f.events))})" if f.events else ""
                out.print_line(f"{r.rule} [{f.level}]: {names.text(f.message)}{events}")
                if f.next_command and f.next_command not in f.message:  # (a message may say it already)
                    out.print_line(f"  next: {names.command(f.next_command)}")
        _print_incidents(rep.incidents)
        if html_path is not None:
            out.print_line(f"wrote {escape(str(html_path))} (mode 0600): it maps the organization; keep it on an "
                           "encrypted disk and delete it when done")

    emit_one(ctx, {"rules": [report.rule_json(r, names) for r in results], "log": v.to_json(),
                   "violated": [r.rule for r in results if r.status == "violated"],
                   "html": None if html_path is None else str(html_path),
                   "incidents": {"readable": rep.incidents.readable, "open": rep.incidents.rows,
                                 "why": rep.incidents.why}}, human)
    if any(r.status == "violated" for r in results):
        sys.exit(1)


def _print_incidents(seen: incidents.Overview) -> None:
    """The report's Incidents section: each open incident and its next weekly review (overdue flagged)."""
    if not seen.readable:
        out.print_line(f"incidents: not shown ({escape(seen.why)})")
        return
    out.print_line(f"incidents: {len(seen.rows)} open")
    for r in seen.rows:
        due = "all reviews done" if r["next_review"] is None else (
            f"review {r['reviews_done'] + 1} of {r['reviews_planned']} due {when(r['next_review'])}"
            + (" (OVERDUE)" if r["overdue"] else ""))
        out.print_line(f"  {r['id']} {r['kind']} of {escape(r['member_name'])}, opened {when(r['opened'])}: {due}")


HTML_WINDOW = "90d"  # the charts' window without --since


def _write_private(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to a new file created with mode 0600 (never chmod'ed after): without ``force`` only if
    nothing is at ``path`` (O_EXCL, so a file made meanwhile is not replaced either); with ``force`` through
    a 0600 temporary file renamed over the old one."""
    try:
        if force:
            atomic_write(path, data, 0o600)
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError as e:
        raise VaultError(f"{path} exists; add --force to replace it") from e
    except OSError as e:
        raise VaultError(f"cannot write {path}: {e.strerror}") from e
    try:
        write_all(fd, data)
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise VaultError(f"cannot write {path}: {e.strerror}") from e
    os.close(fd)


@audit.command("exposure")
@click.argument("member")
@json_flag
@click.pass_obj
def audit_exposure(ctx: Ctx, member: str) -> None:
    """Security Team: what MEMBER could decrypt, and what it actually fetched."""
    info, names = with_session(ctx, lambda s: report.exposure(s, member))

    def human() -> None:
        out.print(f"{names.member(info['member'])}: {escape(info['status'])}; verified in person: {info['verified']}")
        for d in info["devices"]:
            seen = when(d["last_seen"]) if d["last_seen"] else "never"
            revoked = f", revoked {when(d['revoked'])}" if d["revoked"] else ""
            out.print(f"  device {escape(d['name'])} ({escape(d['kind'])}): last seen {seen}{revoked}")
        for t in info["teams"]:
            gens = ",".join(map(str, t["generations"])) or "none"
            state = "member" if t["member"] else "former member"
            out.print(f"  team {escape(t['name'])} ({escape(t['kind'])}, {state}): "
                      f"key generations {gens} of {t['current_generation']}"
                      f"; {len(t['versions'])} versions readable, {sum(v['fetched'] for v in t['versions'])} fetched")
            if t["rotation_needed"]:
                out.print_line(f"    ROTATION NEEDED: {names.text(t['rotation_needed'][0])}")
            if t["co_members"]:
                out.print(f"    notify: {', '.join(map(names.member, t['co_member_ids']))}")
        if info["invited"]:
            out.print(f"  invited: {', '.join(map(names.member, info['invited_ids']))}")
        out.print(f"  copies may remain on their devices for anything fetched; audit detail kept "
                  f"{info['retention_days']} days")

    emit_one(ctx, info, human)


@audit.command("approve")
@click.argument("link")
@json_flag
@click.pass_obj
def audit_approve(ctx: Ctx, link: str) -> None:
    """NCC: approve an organization link (e.g. a role grant) as the second person (rule two-person).

    LINK is what the finding of `mvault audit report` prints: the start of the link's hash (at least 8 hex
    characters), or its organization sequence number (up to 7 digits)."""

    async def go(s: Client) -> tuple[Link, Names]:
        view = await s.chains.view()  # replayed and pinned: the links below must lead to its head
        found = _org_link(_leading_to(await s.chains.links("/api/v1/chains/org"), view.org.org_id, view.org.head), link)
        await records.approve(s, found)  # an org.approve link: signed, replayed by every client
        return found, Names(view, s.session.me)

    found, names = with_session(ctx, go)
    h = found.hash.hex()
    signer = names.raw.get(found.signer)
    emit_one(ctx, {"approved": h, "seq": found.seq, "type": found.type, "signer": found.signer,
                   "signer_name": signer},
             lambda: out.print(f"approved link {h[:16]} (org seq {found.seq}, {escape(found.type)} "
                               f"signed by {names.member(found.signer)})"))


def _leading_to(links: list[Link], org_id: str, head: bytes) -> list[Link]:
    """``links`` if they are the chain whose verified head is ``head``: each appended by the structural rules
    (``check_sequence``) and the last is the head. A server that swaps a link (to have the approval name a hash
    of its choosing) is caught here (review round 5)."""
    seq, prev, time = 0, None, 0
    for x in links:
        check_sequence(x, None if x.seq == 1 else org_id, seq, prev, time)
        seq, prev, time = x.seq, x.hash, x.time
    if prev != head:
        raise ChainError("the server's organization chain does not lead to the head this client verified")
    return links


def _org_link(org_links: list[Link], given: str) -> Link:
    """The one organization link ``given`` names: a sequence number (all digits, at most 7) or a hash prefix."""
    if given.isdigit() and len(given) < 8:
        by_seq = [x for x in org_links if x.seq == int(given)]
        if not by_seq:
            raise NotFound(f"the organization chain has no link {given} (it has {len(org_links)})")
        return by_seq[0]
    found = [x for x in org_links if x.hash.hex().startswith(given.lower())] if len(given) >= 8 else []
    if len(found) != 1:
        raise NotFound("give the organization link's sequence number, or at least 8 hex characters of exactly "
                       "one organization link's hash")
    return found[0]


@audit.command("key")
@click.option("--team", "team_name", default=None, help="this security team's key (default: the designated one)")
@json_flag
@click.pass_obj
def audit_key(ctx: Ctx, team_name: str | None) -> None:
    """Security Team: have the server seal the log to your team's current audit key (every command of
    yours does this; this one says what is in force)."""

    async def go(s: Client) -> str:
        return await keys.publish_audit_key(s, await s.chains.view(), team_name, explicit=True) or ""

    said = with_session(ctx, go)
    emit_one(ctx, {"audit_key": said}, lambda: out.print(escape(said)))


@audit.command("designate")
@click.argument("team_name", metavar="TEAM")
@json_flag
@click.pass_obj
def audit_designate(ctx: Ctx, team_name: str) -> None:
    """NCC: designate TEAM (of kind security) as the one whose key seals the audit log. With another
    NCC member, a second NCC member must designate the same team for it to take effect."""
    in_force = with_session(ctx, lambda s: keys.designate(s, team_name))
    emit_one(ctx, {"team": team_name, "in_force": in_force},
             lambda: out.print(f"team {escape(team_name)} is the audit log's security team" if in_force else
                               f"proposed team {escape(team_name)}; another NCC member confirms with "
                               f"`mvault audit designate {escape(team_name)}`"))


@audit.command("lost")
@click.argument("member")
@click.argument("device_name", metavar="DEVICE")
@json_flag
@click.pass_obj
def audit_lost(ctx: Ctx, member: str, device_name: str) -> None:
    """Report MEMBER's DEVICE lost or seized (rule lost-device); then revoke it from another device."""

    async def go(s: Client) -> str:
        view = await s.chains.view()
        ms = view.member_by_name(member)
        devices = [d for d in ms.devices.values() if d.name == device_name or d.device_id == device_name]
        if len(devices) != 1:
            raise NotFound(f"{member} has no device named {device_name}")
        await s.session.api.post("/api/v1/audit/attest", AttestRequest("lost", member=ms.member_id,
                                                                       device=devices[0].device_id), Ok)
        return devices[0].device_id

    d = with_session(ctx, go)
    emit_one(ctx, {"device": d, "reported": True},
             lambda: out.print(f"reported device {escape(device_name)} lost; revoke it now (`mvault device revoke`)"))


@audit.group("protocols")
def protocols() -> None:
    """The organization's security protocols (security-protocols.toml)."""


@protocols.command("show")
@json_flag
@click.pass_obj
def protocols_show(ctx: Ctx) -> None:
    """Print the protocols in force (and pending proposals)."""

    async def go(s: Client) -> dict[str, Any]:
        view = await s.chains.view()
        p = protocols_of(view.org)
        current = view.org.protocols
        return {"version": p.version, "text": p.text,
                "approved_by": [current.proposer, current.approver] if current else [],
                "pending": [{"digest": c.digest.hex(), "version": c.version, "proposer": view.name_of(c.proposer)}
                            for c in view.org.proposals.values()]}

    info = with_session(ctx, go)

    def human() -> None:
        sys.stdout.write(neutralize(info["text"], keep="\n\t"))  # the layout of the file, nothing else
        for pending in info["pending"]:
            err.print(f"pending: version {pending['version']} proposed by {escape(pending['proposer'])} "
                      f"(approve with `mvault audit protocols approve {pending['digest'][:16]}`)")

    emit_one(ctx, info, human)


_FILE = click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))


def _utf8_file(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError as e:
        raise VaultError(f"{path} is not UTF-8 text") from e


@protocols.command("propose")
@_FILE
@json_flag
@click.pass_obj
def protocols_propose(ctx: Ctx, path: Path) -> None:
    """NCC: propose a new version; a second NCC member must approve it."""
    text = _utf8_file(path)

    async def go(s: Client) -> str:
        await s.chains.append_org("org.protocols.propose", {"text": text})
        return protocols_digest(text).hex()

    digest = with_session(ctx, go)
    emit_one(ctx, {"digest": digest}, lambda: out.print(
        f"proposed; another NCC member approves with `mvault audit protocols approve {digest[:16]}`"))


@protocols.command("approve")
@click.argument("digest")
@json_flag
@click.pass_obj
def protocols_approve(ctx: Ctx, digest: str) -> None:
    """NCC: approve a proposed protocols version (you may not approve your own)."""

    async def go(s: Client) -> int:
        view = await s.chains.view()
        matches = [c for d, c in view.org.proposals.items() if d.hex().startswith(digest.lower())]
        if len(digest) < 8 or len(matches) != 1:
            raise NotFound("give at least 8 hex characters of exactly one pending proposal")
        await s.chains.append_org("org.protocols.approve", {"digest": matches[0].digest})
        return matches[0].version

    version = with_session(ctx, go)
    emit_one(ctx, {"version": version}, lambda: out.print(f"security protocols version {version} are in force"))


@audit.command("note")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the note to this file (mode 0600) instead of stdout")
@click.option("--old", type=click.IntRange(0), default=None,
              help="the size the witness cosigned last: print its C2SP add-checkpoint request body instead, with the "
                   "consistency proof from that size")
@json_flag
@click.pass_obj
def audit_note(ctx: Ctx, out_path: Path | None, old: int | None) -> None:
    """The newest checkpoint as a C2SP tlog-checkpoint note, for an outside witness to cosign (checked
    against the checkpoint this device verified); the log's verifier key goes to stderr."""
    text, vkey = with_session(ctx, lambda c: notes.current_note(c, old))
    if out_path is not None:
        _write_private(out_path, text.encode(), force=True)
    if ctx.as_json:
        emit_one(ctx, {"note": text, "log_key": vkey}, "")
        return
    if out_path is None:
        sys.stdout.write(neutralize(text, keep="\n"))
    err.print(f"log key: {escape(vkey)}")


@audit.command("witness-cosign")
@_FILE
@json_flag
@click.pass_obj
def audit_witness_cosign(ctx: Ctx, path: Path) -> None:
    """Security Team: hand in PATH, a checkpoint note an outside witness cosigned (C2SP cosignature/v1)."""
    size = with_session(ctx, lambda s: notes.hand_in(s, _utf8_file(path)))
    emit_one(ctx, {"cosigned": size}, f"stored the outside witness's cosignature of the checkpoint at {size} events")


@audit.command("timeline")
@click.argument("member")
@click.option("--since", default=None, help="a duration (30d) or a unix time")
@click.option("--until", default=None, help="a duration (7d: until 7 days ago) or a unix time")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="the bundle's file (mode 0600)")
@click.option("--force", is_flag=True, help="replace an existing file")
@json_flag
@click.pass_obj
def audit_timeline(ctx: Ctx, member: str, since: str | None, until: str | None, out_path: Path, force: bool) -> None:
    """Security Team: MEMBER's events as a signed evidence bundle, each with its inclusion proof against the
    newest checkpoint a listed outside witness cosigned (docs/format.md, "Timeline bundle")."""
    now = ctx.clock.now()
    start, end = log.parse_since(since, now), log.parse_since(until, now)
    if os.path.lexists(out_path) and not force:
        raise WouldOverwrite(f"{out_path} exists; add --force to replace it")
    t = with_session(ctx, lambda s: timeline.timeline(s, member, start, end))
    _write_private(out_path, t.data, force)
    emit_one(ctx, {"member": t.member, "events": t.events, "left_out": t.left_out, "size": t.size,
                   "out": str(out_path)},
             lambda: out.print(f"wrote {t.events} events of {escape(member)} to {escape(str(out_path))} "
                               f"(proofs against the witnessed checkpoint at {t.size} events; {t.left_out} later "
                               "events wait for the next witness cosignature)"))


COMMANDS: tuple[click.Command, ...] = (audit,)
