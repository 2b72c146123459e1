"""Builders for the security-protocol rule tests (``tests/test_rules_*.py``): audit events as the server
records them, the audit input of a world, and the results of one rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from security.authority import POLICY
from security.events import Event
from security.policy import TEAM_KINDS
from security.protocols import Protocols, defaults, parse
from security.rules import AuditInput, Finding, RuleResult, evaluate
from tests.helpers.chain_world import MWorld, Person, Team
from vault.chains import clone, replay_team
from vault.errors import ChainError, PolicyDenied
from vault.keys import key_fingerprint
from vault.links import Link
from vault.roster import record_bytes, sign_record

HOUR = 3600
MINUTE = 60
DEFAULTS = defaults()
STRONG = {"time_cost": 3, "memory_kib": 65536, "parallelism": 1}


def event(t: int, action: str, actor: str = "", device: str = "", result: str = "ok",
          res: Mapping[str, str] | None = None, detail: Mapping[str, int | str] | None = None) -> Event:
    return Event(t, actor, device, action, result, res or {}, (), detail or {})


def fingerprint_at(world: MWorld, member_id: str, t: int) -> str:
    """The key fingerprint ``mvault verify`` showed for ``member_id`` at time ``t``."""
    ms = world.members()[member_id]
    devices = [(d.device_id, d.sign_public) for d in ms.devices.values() if d.active_at(t)]
    puk = max(g for g, k in ms.puks.items() if k.since <= t)
    return key_fingerprint(member_id, devices, ms.puks[puk].sign_public).hex()


def verify_event(world: MWorld, t: int, who: Any, subject: str, fingerprint: str | None = None) -> Event:
    """``who`` signs an ``org.verify`` link at ``t`` (the world's clock moves on to it); the event that records it."""
    fp = fingerprint if fingerprint is not None else fingerprint_at(world, subject, t)
    world.time = max(world.time, t)
    return link_event(world.org_link(who, "org.verify", {"member": subject, "fingerprint": bytes.fromhex(fp)}, time=t),
                      member=subject)


def refused_org_link(world: MWorld, signer: Person, type_: str, body: dict[str, Any]) -> str:
    """Why the replayed organization chain refuses ``signer``'s link (it is not appended)."""
    link = world.org_link(signer, type_, body, append=False)
    with pytest.raises((ChainError, PolicyDenied)) as refused:
        clone(world.org()).apply(link, world.members(), POLICY)
    return str(refused.value)


def approve_event(world: MWorld, link: Link, by: Person, t: int) -> Event:
    """``by`` signs an ``org.approve`` of ``link`` at ``t`` (the world's clock moves on to it); its event."""
    world.time = max(world.time, t)
    return link_event(world.org_link(by, "org.approve", {"link": link.hash}, time=t))


def link_event(link: Link, **extra: str) -> Event:
    """The event the server records when it appends ``link`` to a chain."""
    res = {"chain": link.chain or "", "seq": str(link.seq), "link": link.hash.hex(), **extra}
    return event(link.time, link.type, link.signer, link.device, res=res)


def audit(world: MWorld, teams: list[Team], events: list[Event] | None = None, *, now: int | None = None,
          **kw: Any) -> AuditInput:
    members = world.members()
    org = world.org()
    states = {t.team_id: replay_team(t.links, org, members, POLICY, TEAM_KINDS) for t in teams}
    kw.setdefault("last_witness", now if now is not None else world.time)
    return AuditInput(now=world.time if now is None else now, org=org, members=members, teams=states,
                      org_links=list(world.org_links), team_links={t.team_id: list(t.links) for t in teams},
                      member_links={pid: list(p.chain) for pid, p in world.people.items()},
                      events=list(enumerate(events or [])), **kw)


def result(inp: AuditInput, rule_id: str, protocols: Protocols = DEFAULTS) -> RuleResult:
    found = [r for r in evaluate(inp, protocols) if r.rule == rule_id]
    assert len(found) == 1
    return found[0]


def only(res: RuleResult, level: str | None = None) -> Finding:
    assert len(res.findings) == 1, res.findings
    f = res.findings[0]
    assert f.rule == res.rule
    if level is not None:
        assert f.level == level
    return f


def ok(res: RuleResult) -> None:
    assert res.enabled and res.status == "ok" and res.findings == (), res.findings


def with_params(text: str) -> Protocols:
    return parse("version = 2\n" + text)


def circle_of(world: MWorld, *people: tuple[Person, str], **kw: Any) -> Team:
    return world.create_team(world.founder, [(world.founder, "admin"), *people], **kw)


def ncc(world: MWorld, name: str) -> Person:
    """An NCC member outside every team (holds no team key)."""
    person = world.admit(name)
    world.role(world.founder, person, "ncc")
    return person


def thread_created(team: Team, t: int, thread: str, expire: int, actor: str = "") -> Event:
    return event(t, "thread.create", actor, res={"team": team.team_id, "thread": thread}, detail={"expire": expire})


def roster_event(world: MWorld, by: Person, readers: list[Person], t: int, *, signer: Person | None = None,
                 record: bytes | None = None) -> Event:
    """The ``roster.export`` event the server logs for ``by``'s roster export to ``readers`` at ``t`` (the record
    signed by ``signer``'s device, ``by``'s by default; ``record``: other bytes in its place)."""
    sign_by = signer or by
    raw = record if record is not None else record_bytes(world.org_id, sign_by.id, sign_by.device.device_id, t,
                                                         [r.id for r in readers], bytes(32))
    sig = sign_record(sign_by.device, raw)
    return event(t, "roster.export", by.id, by.device.device_id,
                 detail={"readers": len(readers), "record": raw.hex(), "sig": sig.hex()})
