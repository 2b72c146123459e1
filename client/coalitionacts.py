"""A member's acts in a coalition space, recorded in its **own** organization's audit log (docs/lifecycle.md section
2 "Audit"; ``vault/coalitionact.py``). The member's client is the only party that knows both sides: what it did on
the host's server, and its own organization. It signs a ``coalition.act`` record with its device and sends it to its
own server (``POST /api/v1/audit/attest {"kind": "coalition-act"}``), which judges it and logs it for its own
Security Team. The host's server never sees the record and holds no key that could sign one.

``record_act`` is what the guest's client calls after each act in a space (a put, a read, a post, its join and its
leave), with a session on its own organization's server; the ally's NCC's ``coalition approve`` records ``approve``
naming the member. A client that skips it leaves no record (SECURITY.md "Coalition acts": an accepted residue)."""

from __future__ import annotations

from client import coalitionkeys, guests
from client.client import Client
from client.guests import GuestCode
from vault.chains.coalition import statement_hash
from vault.coalitionact import CoalitionAct, act_record, sign_act
from vault.errors import NotFound
from vault.wire.schemas import AttestRequest, Ok


async def record_act(c: Client, coalition: str, space: str, act: str, *, count: int = 1, subject: str | None = None,
                     ref: bytes | None = None, at: int | None = None) -> CoalitionAct:
    """Sign and send the record of ``act`` (``count`` times, at ``at``, default now) in the host's space ``space``
    (its team id), which this organization knows as ``coalition`` (the name of its ``org.coalition``)."""
    view = await c.chains.view()
    if coalition not in view.org.coalitions:
        raise NotFound(f"this organization recorded no coalition key for a space named {coalition!r} (`mvault "
                       "coalition pairing-code` records it)")
    s = c.session
    raw = act_record(view.org.org_id, s.me, s.device.device_id, s.now() if at is None else at, coalition, space, act,
                     count=count, subject=subject, ref=ref)
    record = CoalitionAct.parse(raw)  # the same checks the server makes on its shape, before anything is sent
    await s.api.post("/api/v1/audit/attest", AttestRequest("coalition-act", record=raw, sig=sign_act(s.device, raw)),
                     Ok)
    return record


async def approve(c: Client, name: str, who: str, space: str, role: str, until: int | None) -> GuestCode:
    """``coalition approve`` (the ally's NCC): the guest code, once its ``approve`` record naming the member is in this
    organization's audit log (refused there: no code)."""
    code = await guests.approve(c, name, who, space, role, until)
    await record_act(c, name, space, "approve", subject=code.member.member_id, ref=statement_hash(code.statement))
    await coalitionkeys.share_missing(c)  # an NCC member without a box of the key gets one
    return code
