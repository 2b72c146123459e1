"""``mvault republish TEAM``: after following the Security Team's acceptance of a server restored from an
older backup (client/restore.py), put back what this device still holds and the server lost.

This device keeps no chain links (only their heads, in the pins) and no document content except the local
files ``get``/``put``/``sync`` recorded in the local copies index (client/localcopies.py). So: a document
that went back is put again, as a new version on top of the restored head, from a local copy whose version
the server no longer has; everything else that went back (chain links, documents without such a copy) is
listed as lost for good: what was signed in those links (roles, team changes, devices) must be done again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from client.client import Client
from client.putbase import Base
from vault.errors import NotFound


def lost_since_restores(pins_log: dict[str, Any]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(chains, documents) that went back in the restores this device followed: id -> [served, pinned]."""
    chains: dict[str, list[int]] = {}
    docs: dict[str, list[int]] = {}
    for r in pins_log.get("restored", []):
        lost = r.get("lost", {})
        chains.update({k: [int(v["served"]), int(v["pinned"])] for k, v in lost.get("chains", {}).items()})
        docs.update({k: [int(v["served"]), int(v["pinned"])] for k, v in lost.get("docs", {}).items()})
    return chains, docs


async def republish(c: Client, team_name: str) -> list[dict[str, Any]]:
    """Put back the team's documents this device holds newer local copies of; one row per thing that went back."""
    s = c.session
    pins = s.home.pins()
    if not pins.log.get("restored"):
        raise NotFound("this device never followed an acceptance of a restored server: nothing to re-publish")
    view = await c.chains.view()
    team = view.team_by_name(team_name)
    keys = await c.keys.keys_for(team)
    lost_chains, lost_docs = lost_since_restores(pins.log)
    rows: list[dict[str, Any]] = []
    if team.team_id in lost_chains:
        served, pinned = lost_chains[team.team_id]
        rows.append({"kind": "chain", "id": team.team_id, "name": team.name, "served": served, "pinned": pinned,
                     "result": "lost", "version": None,
                     "reason": "this device keeps no chain links: sign those team changes again"})
    index = c.docs.copies.load()
    items: list[tuple[Path, str]] = []
    waiting: list[dict[str, Any]] = []
    prefix = f"{team.team_id}/"
    for key, (served, pinned) in sorted(lost_docs.items()):
        if not key.startswith(prefix):
            continue
        doc = key[len(prefix):]
        records = await c.docs.versions(team, doc)
        name = c.docs.open_version(records[-1], keys).name if records else None
        row: dict[str, Any] = {"kind": "document", "id": doc, "name": name, "served": served, "pinned": pinned,
                               "result": "lost", "version": None, "reason": ""}
        rows.append(row)
        held = {r.version_id for r in records}
        newer = [(p, cp) for p, cp in index.docs.get(key, {}).items() if cp.vid not in held]
        if not newer:
            row["reason"] = "no local copy of a version the server lacks"
            continue
        path_text, _ = max(newer, key=lambda pc: pc[1].seq)
        path = Path(path_text)
        if not path.is_file():
            row["reason"] = f"the local copy {path} is gone"
            continue
        row["name"] = name or path.name
        row["path"] = str(path)
        items.append((path, row["name"]))
        waiting.append(row)
    if items:
        stored = await c.docs.put_many(team.name, items, base=Base(force_new_version=True))
        for row, (_, seq, _vid) in zip(waiting, stored, strict=True):
            row.update({"result": "republished", "version": seq, "reason": ""})
    return rows
