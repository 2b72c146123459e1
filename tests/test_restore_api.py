"""The restore acceptance endpoints (``/api/v1/restore/acceptances``, server/routes/restore.py), error by
error, against the real server: only a Security Team member's device may store one, naming itself, a time
within the clock window, a checkpoint this server issued for its current log (with its log key and
signature) and an organization head it has, signed under the acceptance's own tag; every refusal is a 4xx
that stores nothing. The shared organization of the audit API tests (``aw``): carol is the Security Team.
"""

from __future__ import annotations

from typing import Any

from security.events import Checkpoint
from security.restore import Acceptance, Lost, acceptance_statement, sign_acceptance
from server.context import DIRECTORY
from tests.helpers.api_world import Actor, now
from tests.helpers.audit_world import AuditWorld, checkpoint_of, denied, org_links, rejected, unb64
from tests.helpers.db import audit_db
from tests.helpers.http import Http, b64, bad_json_cases, login
from vault.crypto import labels
from vault.encoding import Value, decode, encode
from vault.logsign import log_keypair

ACCEPT = "/api/v1/restore/acceptances"


def decoded(raw: bytes) -> dict[str, Value]:
    value = decode(raw)
    assert isinstance(value, dict)
    return dict(value)


def stored(aw: AuditWorld) -> list[tuple[bytes, bytes]]:
    db = audit_db(aw.server)
    try:
        return [(bytes(r[0]), bytes(r[1])) for r in
                db.execute("SELECT raw, sig FROM restore_acceptances ORDER BY id").fetchall()]
    finally:
        db.close()


async def test_restore_acceptance_endpoints(aw: AuditWorld) -> None:
    """Only the Security Team stores an acceptance of this server's state; every member reads them."""
    async with Http(aw.server) as h:
        bob, carol = await login(h, aw.bob), await login(h, aw.carol)
        served = await checkpoint_of(h, carol)
        cp = served.checkpoint
        links = await org_links(h, carol)
        carol_root = aw.server.app[DIRECTORY].member_links[aw.carol.member_id][0].hash
        t = now(aw)

        def statement(who: Actor = aw.carol, **change: Any) -> bytes:
            fields: dict[str, Any] = {
                "org": cp.org, "checkpoint_raw": cp.raw, "cp_sig": served.sig, "log_key": served.log_key,
                "org_seq": len(links), "org_head": links[-1].hash, "time": t, "member": who.member_id,
                "device": who.device.device_id, "lost": Lost((cp.size, cp.size + 3), {"org": (2, 3)}, {}),
                "heads": {aw.carol.member_id: (1, carol_root)}}
            fields.update(change)
            return acceptance_statement(**fields)

        def body(raw: bytes, who: Actor = aw.carol) -> dict[str, str]:
            return {"statement": b64(raw), "sig": b64(sign_acceptance(who.device, raw))}

        before = stored(aw)
        # Not the Security Team: refused by the one judge, whatever it signs.
        await denied(h, aw.bob, "POST", ACCEPT, token=bob, contains="may not", js=body(statement(aw.bob), aw.bob))
        await denied(h, aw.alice, "POST", ACCEPT, token=await login(h, aw.alice),
                     js=body(statement(aw.alice), aw.alice), what="NCC")
        valid = body(statement())
        for label, kw in bad_json_cases(valid, ("statement", "sig"), ("statement",)):
            await rejected(h, "POST", ACCEPT, 400, token=carol, what=label, **kw)
        raw = statement()
        sig = unb64(valid["sig"])
        bad_bodies = {
            "one bit of the signature flipped": {**valid, "sig": b64(bytes([sig[0] ^ 1]) + sig[1:])},
            "signed under the cosignature tag": {**valid, "sig": b64(aw.carol.device.sign(labels.SIG_COSIGN, raw))},
            "not a statement": {**valid, "statement": b64(b"junk")},
            "an hour ago": body(statement(time=t - 3600)),
            "an hour ahead": body(statement(time=t + 3600)),
            "another log key": body(statement(log_key=bytes(32))),
            "a checkpoint signature that does not verify": body(statement(cp_sig=bytes(64))),
            "naming bob": body(statement(member=aw.bob.member_id)),
            "format 1 (no chain heads)": body(encode({k: v for k, v in decoded(statement()).items()
                                                      if k != "heads"} | {"v": 1})),
        }
        for label, bad in bad_bodies.items():
            status = 403 if label == "naming bob" else 400
            await rejected(h, "POST", ACCEPT, status, token=carol, js=bad, what=label)
        # Signed with the server's own log key (read from its disk, as a seized disk would give it), but for a
        # root its log never had.
        forged = Checkpoint.build(cp.org, cp.size, bytes(32), cp.time)
        forged_sig = forged.sign(log_keypair((aw.server.data_dir / "log.key").read_bytes())[1])
        for label, bad in (("a checkpoint this server never issued",
                            body(statement(checkpoint_raw=forged.raw, cp_sig=forged_sig))),
                           ("an organization head it does not have", body(statement(org_head=bytes(32)))),
                           ("an organization link beyond its chain", body(statement(org_seq=len(links) + 1))),
                           ("a chain head it does not have",
                            body(statement(heads={aw.bob.member_id: (1, bytes(32))}))),
                           ("a chain link beyond its chain",
                            body(statement(heads={aw.carol.member_id: (99, carol_root)})))):
            await denied(h, aw.carol, "POST", ACCEPT, token=carol, status=404, code="not_found", js=bad, what=label)
        assert stored(aw) == before

        status, res = await h.call("POST", ACCEPT, token=carol, js=valid)
        assert status == 201 and res == {"size": cp.size}, res
        assert stored(aw)[-1] == (raw, sig)
        for token in (bob, carol):  # every member reads them, newest first
            status, res = await h.call("GET", ACCEPT, token=token)
            assert status == 200 and set(res) == {"acceptances"}
            first = res["acceptances"][0]
            assert (unb64(first["statement"]), unb64(first["sig"])) == (raw, sig)
            assert Acceptance.parse(raw).lost.chains == {"org": (2, 3)}
