"""The ``coalition-act`` attestation (``POST /api/v1/audit/attest``): a member of this organization records what it
did in a coalition space on another organization's server (``vault/coalitionact.py``; docs/lifecycle.md section 2
"Audit"). The server logs it as the audit event ``coalition.act`` (sealed to this organization's Security Team like
every event; rules ``need-to-know``, ``offboarding``, ``bulk-access``), carrying the device-signed record, only when
the record names this organization and the logged-in member and device, is dated no later than the clock window
ahead and at most ``MAX_AGE`` back (the member reports at its next contact), and is judged an act ``coalition.act``
for a space this organization recorded a coalition key for (``security/coalitionact.py``). Refused: 400 (malformed,
dated outside the window), 403 (not entitled), 404 (no such coalition space); nothing is logged."""

from __future__ import annotations

from aiohttp import web
from msgspec import UnsetType

from security.coalitionact import judge_act
from server.access import own_record
from server.context import DIRECTORY, now_of
from server.notes import note
from vault.coalitionact import MAX_AGE, CoalitionAct
from vault.errors import EncodingError
from vault.wire import schemas


async def coalition_act(request: web.Request, f: schemas.AttestRequest) -> None:
    if isinstance(f.record, UnsetType) or isinstance(f.sig, UnsetType):
        raise EncodingError("request: a coalition-act needs 'record' and 'sig'")
    record = CoalitionAct.parse(f.record)
    org = own_record(request, "coalition act record", record.org, record.member, record.device, record.time)
    if record.time < now_of(request) - MAX_AGE:
        raise EncodingError(f"the coalition act record is older than {MAX_AGE // 86400} days")
    judge_act(record, f.sig, org, request.app[DIRECTORY].members, stored=True)
    res = {"coalition": record.coalition, "space": record.space}
    note(request, "coalition.act", res if record.subject is None else {**res, "member": record.subject},
         record.subject, detail={"act": record.act, "count": record.count, "at": record.time,
                                 "record": record.raw.hex(), "sig": f.sig.hex()})
