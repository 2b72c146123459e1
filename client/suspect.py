"""A suspected infiltrator (issue 18): the Security Team pauses a member's sensitive memberships without cutting a
device (``org.suspect``, vault/chains/incidents.py), exactly as a lost-device cut's pause does (the one judge refuses
their new content in sensitive teams, on the server and in every reader), until ``mvault incident clear`` signs
``org.clear`` (``client.lost.clear_hook``). The reason goes only into the private incident record, never into the
organization chain every member reads."""

from __future__ import annotations

from typing import Any

from client.audit import incidents
from client.client import Client
from client.lost import reviews_due
from security.authority import paused_kinds
from vault.errors import VaultError


async def suspect(s: Client, member: str, reason: str = "") -> dict[str, Any]:
    """Sign ``org.suspect`` for ``member``, then open the incident record; the ``--json`` object of ``mvault
    incident suspect`` (``id`` None and ``record_problem`` when the record could not be written: the pause stands)."""
    view = await s.chains.view()
    ms = view.member_by_name(member)
    await s.chains.append_org("org.suspect", {"member": ms.member_id})
    view = await s.chains.view()
    pause = view.org.incidents.open_pause(ms.member_id)
    if pause is None or pause.kind != "suspect":
        raise VaultError("the server did not record the pause (refresh and check the organization chain)")
    now = s.session.now()
    kinds = paused_kinds(view.org, now)
    paused = sorted(t.name for t in view.teams.values() if t.kind in kinds and t.role_of(ms.member_id, now))
    report: dict[str, Any] = {"incident_kind": "suspect", "id": None, "member": ms.member_id, "pause_seq": pause.seq,
                              "paused_teams": paused, "reviews_due": reviews_due(now)}
    try:
        inc = await incidents.open_incident(s, "suspect", ms.member_id, ms.name, reason,
                                            {"pause_seq": pause.seq, "paused_teams": paused})
    except VaultError as e:
        return {**report, "record_problem": e.message}
    return {**report, "id": inc.data["id"]}
