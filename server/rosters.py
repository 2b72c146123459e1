"""The ``roster-export`` attestation (``POST /api/v1/audit/attest``): a member is about to write a roster export
(``vault/roster.py``; rule ``no-master-lists``). The server logs it as the audit event ``roster.export``, carrying the
device-signed record (sealed to the Security Team like every event), only when the record names this organization,
the logged-in member and device, a time within the clock window, is judged an act ``org.roster`` (NCC or Security
Team; ``security/roster.py``), names only admitted members, and at most ``max_readers`` of them outside the Security
Team while the rule is enabled. Refused: 400 (malformed), 403 (not entitled, too many readers); nothing is logged as
done and the client writes nothing."""

from __future__ import annotations

from aiohttp import web
from msgspec import UnsetType

from security.roster import judge_roster, outside_readers
from server.access import own_record, protocols_of
from server.context import CONFIG, DIRECTORY, now_of
from server.notes import note
from vault.errors import EncodingError, PolicyDenied
from vault.roster import RosterRecord
from vault.wire import schemas


async def roster_export(request: web.Request, f: schemas.AttestRequest) -> None:
    if isinstance(f.record, UnsetType) or isinstance(f.sig, UnsetType):
        raise EncodingError("request: a roster-export needs 'record' and 'sig'")
    record = RosterRecord.parse(f.record)
    org = own_record(request, "roster export record", record.org, record.member, record.device, record.time)
    if record.time < now_of(request) - request.app[CONFIG].clock_skew:
        raise EncodingError("the roster export record's time is too far from the server's")
    judge_roster(record, f.sig, org, request.app[DIRECTORY].members, stored=True)
    rule = protocols_of(request.app).rule("no-master-lists")
    outside = outside_readers(record, org)
    if rule.enabled and len(outside) > rule.int_("max_readers"):
        raise PolicyDenied(f"a roster export may name at most {rule.int_('max_readers')} readers outside the "
                           f"Security Team (rule no-master-lists); this one names {len(outside)}")
    note(request, "roster.export", detail={"readers": len(record.readers), "outside": len(outside),
                                           "record": record.raw.hex(), "sig": f.sig.hex()})
