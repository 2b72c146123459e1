"""``mvault audit timeline``: one member's events as a signed evidence bundle (docs/format.md, "Timeline bundle").

The bundle holds, for each event by or about the member that the Security Team's audit key opens and that
lies inside the newest checkpoint a listed outside witness cosigned: the sealed leaf, the key of its body
(it opens that one event only), the event as read, and the leaf's inclusion proof against that checkpoint.
The checkpoint travels as its C2SP note with the log's signature and the witnesses' cosignatures. The
exporting device signs the whole body. Anyone can check it without our code (tests/helpers/timeline_verifier.py
is such a second implementation, written from docs/format.md alone).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from client.audit.log import verify_log
from client.checkpoints import protocols_of
from client.client import Client
from security.events import DAY, Opener
from security.merkle import MerkleTree
from security.protocols import witness_keys
from vault.errors import LogInconsistent, PolicyDenied
from vault.logsign import sign_timeline
from vault.signednote import log_key

FORMAT = "mvault-timeline/v1"


def canonical_json(value: Any) -> bytes:
    """The one serialization the bundle uses (docs/format.md): sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Timeline:
    data: bytes  # the file's bytes
    member: str
    events: int
    left_out: int  # the member's events after the witnessed checkpoint (not provable yet)
    size: int  # the witnessed checkpoint's tree size


def _window(since: int | None, until: int | None, t: int) -> bool:
    return (since is None or t >= since) and (until is None or t <= until)


async def timeline(s: Client, member: str, since: int | None, until: int | None) -> Timeline:
    """The member's evidence bundle, over the log this device just verified in full."""
    verified, view, events, keys = await verify_log(s)
    if not keys.security:
        raise PolicyDenied("a timeline needs the Security Team's audit key (a key of a 'security' team)")
    if verified.problems:
        raise LogInconsistent("not exporting: " + "; ".join(verified.problems[:3]))
    witnessed, fetched = verified.outside, verified.fetched
    if witnessed is None or fetched is None:
        raise LogInconsistent("no listed outside witness has cosigned a checkpoint yet: a timeline's proofs need "
                              "one (`mvault audit note`, then `mvault audit witness-cosign`)")
    mid = view.member_by_name(member).member_id
    size = witnessed.checkpoint.size
    chosen = [(i, e) for i, e in events if mid in (e.actor, e.res.get("member")) and _window(since, until, e.time)
              and i in keys.sealed]
    provable = [(i, e) for i, e in chosen if i < size]
    tree = MerkleTree(fetched.hashes[:size])
    openers = {team_gen: Opener(*pair) for team_gen, pair in keys.audit.items()}
    rows = []
    for i, e in provable:
        leaf = fetched.leaves[i]
        opened, key = openers[keys.sealed[i], leaf.audit_gen].open_with_key(leaf, (0,))
        if opened != e or e.time // DAY != leaf.day:
            raise LogInconsistent(f"event {i} does not open to what was read")
        rows.append({"index": i, "leaf": _b64(leaf.raw), "key": _b64(key), "event": e.to_json(),
                     "proof": [_b64(h) for h in tree.inclusion_proof(i, size)]})
    org = view.org.org_id
    body = canonical_json({
        "v": 1, "org": org, "member": mid, "since": since, "until": until, "exported_at": s.session.now(),
        "exporter": {"member": s.session.me, "device": s.session.device.device_id},
        "log_key": log_key(org, witnessed.log_public).text,
        "witness_keys": [k.text for k in witness_keys(protocols_of(view.org))],
        "checkpoint": witnessed.note.serialized, "events": rows, "left_out": len(chosen) - len(provable)})
    outer = {"format": FORMAT, "body": _b64(body), "device_key": _b64(s.session.device.sign_public),
             "sig": _b64(sign_timeline(s.session.device, body))}
    return Timeline(canonical_json(outer) + b"\n", mid, len(rows), len(chosen) - len(provable), size)
