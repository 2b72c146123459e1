"""Rule ``no-master-lists``: a full roster export is readable by at most ``max_readers`` named members plus the
Security Team (``vault/roster.py``, ``security/roster.py``).

It judges the ``roster.export`` events the server logs when a member records a roster export (``mvault org roster
export``): each carries the exporter's device-signed record naming every reader. Reported (violation): an export
whose record is missing, malformed, not signed by the event's member with a device they held, or by a member not
entitled to export the roster (the server made or altered it); one naming more than ``max_readers`` readers outside
the Security Team (the server refuses those, so one in the log means a server that did not, or protocols changed
meanwhile). What it cannot see: a roster written without the record. Every member's client reads the organization
chain, which names every member (SECURITY.md "Roster exports")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from security.protocols import Rule
from security.roster import judge_roster, outside_readers
from security.rules.base import VIOLATION, Check, Context, Finding, finding, ok_events, signed_record
from vault.errors import EncodingError, VaultError
from vault.roster import RosterRecord


def _record(detail: Mapping[str, int | str]) -> tuple[RosterRecord, bytes]:
    raw, sig = signed_record(detail)
    return RosterRecord.parse(raw), sig


def _no_master_lists(ctx: Context, rule: Rule) -> list[Finding]:
    limit = rule.int_("max_readers")
    out = []
    for idx, ev in ok_events(ctx.actions("roster.export")):
        if ev.time > ctx.now:
            continue
        try:
            record, sig = _record(ev.detail)
            if record.member != ev.actor:
                raise EncodingError(f"the record is signed by member {record.member}, not by the exporter")
            judge_roster(record, sig, ctx.inp.org, ctx.inp.members)
        except VaultError as e:
            out.append(finding(rule, VIOLATION, f"member {ev.actor or '?'} exported the roster without a valid "
                                f"signed record of its readers: {e}", ev.actor, [idx]))
            continue
        outside = outside_readers(record, ctx.inp.org)
        if len(outside) > limit:
            out.append(finding(rule, VIOLATION, f"member {ev.actor} exported the roster to {len(outside)} members "
                                f"outside the Security Team ({', '.join(outside)}); at most {limit} may read it",
                                ev.actor, [idx]))
    return out


CHECKS: Final[Mapping[str, Check]] = {"no-master-lists": _no_master_lists}
