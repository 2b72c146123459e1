"""Roster exports (issue 18, rule ``no-master-lists``): the organization's member list sealed to a few named
members and the Security Team (``vault/roster.py``; docs/format.md "Roster export").

``export_roster`` takes the verified view (every member's name, roles and status from the organization chain),
seals it to the named members' and every current Security Team member's member keys (PUK), signs the record naming
them all, has the server log it (``roster-export`` attestation: the audit event ``roster.export``; the server refuses
more readers than the protocols allow) and only then writes the file, mode 0600, never over an existing one.
``open_roster`` checks the record against the chains (the one judge: the signer was entitled, with a device they
held), the file against its record, and the member list against the organization chain at the state it names
(``roster_at``) before it shows anything."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.client import Client
from client.view import View
from security.roster import judge_roster, outside_readers
from vault.encoding import Fields, Value
from vault.errors import EncodingError, IntegrityError, NotFound, VaultError
from vault.roster import RosterRecord, file_bytes, open_roster, record_bytes, seal, sign_record
from vault.wire.schemas import AttestRequest, Ok


class ExistingRoster(VaultError):
    """The roster export's output exists already: it is never written over something."""


@dataclass(frozen=True)
class Roster:
    record: RosterRecord
    outside: tuple[str, ...]  # readers outside the Security Team
    members: tuple[dict[str, Any], ...]  # {"member", "name", "roles", "status"}, as the file holds them

    def to_json(self) -> dict[str, Any]:
        return {"exported_by": self.record.member, "device": self.record.device, "time": self.record.time,
                "readers": list(self.record.readers), "outside_security_team": list(self.outside),
                "members": list(self.members)}


def roster_of(view: View) -> list[dict[str, Value]]:
    """Every member the organization chain names who is not removed: id, name, roles, status."""
    return roster_at(view, view.org.seq)


def roster_at(view: View, seq: int) -> list[dict[str, Value]]:
    """``roster_of`` as it was at organization state ``seq``: what an honest export made then holds (a reader
    checks the list against it: review round 12, the signer's device is not the last word on who is a member)."""
    out: list[dict[str, Value]] = []
    for mid, om in sorted(view.org.members.items()):
        e = om.entry_at(seq)
        if e is not None and e.status != "removed":
            out.append({"member": mid, "name": view.name_of(mid), "roles": sorted(e.roles), "status": e.status})
    return out


def readers_of(view: View, to: Sequence[str], now: int) -> list[str]:
    """The named members (by name or id) and every current Security Team member."""
    named = {view.member_by_name(name).member_id for name in to}
    security = {mid for mid in view.org.members if "security" in view.org.roles_of(mid, now)}
    return sorted(named | security)


async def export_roster(c: Client, out: Path, to: Sequence[str]) -> Roster:
    if os.path.lexists(out):
        raise ExistingRoster(f"{out} exists already: a roster export goes to a new file")
    view = await c.chains.view(refresh=True)
    s = c.session
    now = s.now()
    readers = readers_of(view, to, now)
    missing = [r for r in readers if r not in view.members]
    if missing:
        raise NotFound(f"no member chain for readers {', '.join(missing)}")
    members = roster_of(view)
    sealed = seal(view.org.org_id, {"org": view.org.org_id, "org_seq": view.org.seq, "members": list(members)},
                  {r: view.members[r].puk_box_public for r in readers})
    raw = record_bytes(view.org.org_id, s.me, s.device.device_id, now, readers, sealed.digest)
    sig = sign_record(s.device, raw)
    record = RosterRecord.parse(raw)
    await s.api.post("/api/v1/audit/attest", AttestRequest("roster-export", record=raw, sig=sig), Ok)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ExistingRoster(f"{out} exists already: a roster export goes to a new file") from None
    with os.fdopen(fd, "wb") as f:
        f.write(file_bytes(raw, sig, sealed))
    return Roster(record, tuple(outside_readers(record, view.org)), tuple(members))


async def read_roster(c: Client, path: Path) -> Roster:
    """The roster in ``path`` as this member reads it: ``IntegrityError`` for a file not made by an entitled member's
    device or changed since, ``DecryptionFailed`` for one not sealed to this member."""
    view = await c.chains.view(refresh=True)
    s = c.session
    mine = view.members[s.me]
    puks = [await c.keys.puk(mine.puk_gen)]
    for gen in sorted((g for g in mine.puks if g < mine.puk_gen), reverse=True):  # a roster sealed before a key change
        try:
            puks.append(await c.keys.puk(gen))
        except VaultError:
            break

    def check(record: RosterRecord, sig: bytes) -> None:
        try:
            judge_roster(record, sig, view.org, view.members)
        except VaultError as e:
            raise IntegrityError(f"the roster export's record does not hold: {e}") from e

    try:
        data = path.read_bytes()
    except OSError as e:
        raise NotFound(f"cannot read {path}: {e.strerror}") from None
    record, body = open_roster(data, s.me, puks, check)
    try:
        f = Fields(body, "roster", {"org", "org_seq", "members"})
        rows = [Fields(m, "roster member", {"member", "name", "roles", "status"}) for m in f.list_("members")]
        members = tuple({"member": r.str_("member", 64), "name": r.str_("name"),
                         "roles": [str(x) for x in r.list_("roles", 8)], "status": r.str_("status", 32)}
                        for r in rows)
        org, org_seq = f.str_("org", 64), f.int_("org_seq", 1)
    except EncodingError as e:
        raise IntegrityError(f"the roster export's body is malformed: {e}") from e
    if org != view.org.org_id or org_seq > view.org.seq or list(members) != roster_at(view, org_seq):
        raise IntegrityError("the roster export's member list is not the organization chain's at the state it names: "
                             "made up by whoever signed it")
    return Roster(record, tuple(outside_readers(record, view.org)), members)
