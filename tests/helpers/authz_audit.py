"""The authorization matrix's audit cells (``tests/helpers/authz_matrix.py``): the statements an actor signs for
``audit.key`` and ``audit.cosign`` sent without the client's checks, and a valid protocols proposal."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from client.audit import notes
from security.events import audit_key_statement, audit_keypair, cosign_statement
from security.protocols import default_text
from tests.helpers.c2sp_witness import OutsideWitness
from tests.helpers.http import b64
from vault.crypto import labels

if TYPE_CHECKING:
    from tests.helpers.authz_matrix import Actor, World

AUDIT_TEAM = "mx-audit"  # a security team every matrix actor holds the key of (audit.key, org.audit_team)


async def forged_audit_requests(w: World, actor: Actor, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    """An audit-key statement for the actor's generation of AUDIT_TEAM, or a cosignature of the current
    checkpoint signed by the actor's device and an outside witness's cosignature of its note handed in by the
    actor."""
    t = int(w.server.clock())
    async with w.session(actor.name) as s:
        view = await s.chains.view()
        if action == "audit.key":
            team = view.team_by_name(AUDIT_TEAM)
            pub = audit_keypair((await s.keys.team_key(team, team.generation)).seed)[0]
            raw = audit_key_statement(view.org.org_id, team.team_id, team.generation, pub, t, actor.member_id,
                                      actor.device.device_id)
            return [("POST", "/api/v1/audit/key",
                     {"js": {"statement": b64(raw), "sig": b64(actor.device.sign(labels.SIG_AUDIT_KEY, raw))}})]
        cp = base64.b64decode((await s.session.api.get("/api/v1/audit/checkpoint"))["checkpoint"])
        note, log_vkey = await notes.current_note(s)
    sig = actor.device.sign(labels.SIG_COSIGN, cosign_statement(cp, actor.member_id, actor.device.device_id, t))
    witnessed = OutsideWitness("witness.example/matrix", log_vkey).cosign(note, t)  # handing it in: audit.cosign
    return [("POST", "/api/v1/audit/cosign", {"js": {"checkpoint": b64(cp), "sig": b64(sig), "time": t}}),
            ("POST", "/api/v1/audit/witness", {"js": {"note": witnessed}})]


def protocols_text(org: Any, serial: int) -> str:
    """The shipped protocols with the version raised past the one in force (a valid proposal)."""
    current = org.protocols.version if org.protocols else 1
    text = default_text()
    assert "\nversion = 1\n" in text
    return text.replace("\nversion = 1\n", f"\nversion = {current + 1}\n# authz {serial}\n", 1)
