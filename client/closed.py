"""A closed organization, on a member's next contact (issue 20, docs/lifecycle.md "Running it", step 4).

The server refuses the login with ``org_closed`` (``OrgClosed``). That is only its word, so the client fetches
the organization chain and every member chain (``GET /api/v1/closing``, no session) and wipes nothing until the
closing verifies **against what this device pinned**: the same organization root; member and organization chains
that extend the pinned heads; every link replayed with the one judge (each approval judged at its time, the quorum
met with the ``[closing]`` parameters in force at the proposal: ``vault.chains.closing``); the chain ending in
``org.closed``. Then, and only then, the home of that organization is wiped (``Home.wipe``: keys, caches, local
copies index, synced folders' indexes, unlock agent). Anything short of that raises ``ClosingRefused``, a security
error: a forged, below-quorum or replayed closing never makes a client wipe anything."""

from __future__ import annotations

from dataclasses import dataclass

from client.api import Api
from client.clock import Clock
from client.home import Config, Home, Pins
from client.sanitize import escape
from client.view import check_chain_pin
from security.authority import POLICY
from vault.acts import ALLOWANCE
from vault.chains import Closed, MemberState, OrgState, replay_member, replay_org
from vault.errors import ClosingRefused, VaultError
from vault.links import parse_link
from vault.wire.schemas import ClosingChains


@dataclass(frozen=True)
class Wiped:
    """What happened: the verified closing, and what was wiped."""

    org: OrgState
    closed: Closed
    names: dict[str, str]  # member id -> the name in its verified member chain
    home: str
    files: int

    def to_json(self) -> dict[str, object]:
        p = self.closed.proposal
        return {"org": self.org.name, "org_id": self.org.org_id, "closed_at": self.closed.time,
                "closed_by": self.closed.by, "proposed_by": p.proposer, "approvers": sorted(p.approvals),
                "quorum": {"ncc": p.quorum.ncc, "security": p.quorum.security, "ncc_members": p.ncc_members},
                "handed_over": [{"team": e.team, "documents": len(e.documents) or "all", "to": list(e.recipients),
                                 "manifest": p.exported[i].hex()} for i, e in enumerate(p.plan)],
                "wiped": self.home, "files": self.files}


def verify_closing(cfg: Config, pins: Pins, served: ClosingChains,
                   now: int) -> tuple[OrgState, Closed, dict[str, str]]:
    """The closing the server served, verified against this device's pins and its clock (``now``: an ``org.closed``
    dated ahead of it, beyond the judge's allowance, is one its signer dated past the ``not_before`` the quorum set
    and a colluding server stored early: review round 11); ``ClosingRefused`` otherwise."""
    try:
        members: dict[str, MemberState] = {}
        for mid, wires in served.members.items():
            links = [parse_link(w) for w in wires]
            state = replay_member(links)
            if state.member_id != mid:
                raise ClosingRefused("the server served a member chain under another member's id")
            check_chain_pin(pins, mid, links)
            members[mid] = state
        org_links = [parse_link(w) for w in served.org]
        if not org_links or org_links[0].hash.hex() != cfg.org_root:
            raise ClosingRefused("the closing served is of another organization (its chain does not start at the "
                                 "organization root this device pinned)")
        check_chain_pin(pins, "org", org_links)
        org = replay_org(org_links, members, POLICY)
    except ClosingRefused:
        raise
    except VaultError as e:
        raise ClosingRefused(f"the closing served does not verify: {e.message}") from e
    if org.closing.closed is None:
        raise ClosingRefused("the server says the organization was closed, but its chain holds no org.closed")
    closed = org.closing.closed
    if closed.time > now + ALLOWANCE // 2:
        raise ClosingRefused(f"the closing served is dated {closed.time}, ahead of this device's clock ({now}): "
                             f"its not_before ({closed.proposal.not_before}) has not passed; nothing is wiped")
    if cfg.member_id not in org.members:
        raise ClosingRefused("the closed organization's chain does not know this member")
    return org, closed, {m: ms.name for m, ms in members.items()}


async def follow(home: Home, cfg: Config, api: Api, clock: Clock) -> Wiped:
    """Fetch the closing, verify it against the pins and the clock (``ClosingRefused``: nothing is wiped), then wipe
    the home."""
    served = await api.get("/api/v1/closing", ClosingChains)
    org, closed, names = verify_closing(cfg, home.pins(), served, clock.now())
    files = home.wipe()
    return Wiped(org, closed, names, str(home.path), files)


def report(w: Wiped) -> str:
    """What happened, for people (names as the members chose them, escaped)."""
    p = w.closed.proposal

    def name(m: str) -> str:
        return escape(w.names.get(m, m[:8]))

    return (f"the organization {escape(w.org.name)} was closed at {w.closed.time} by {name(w.closed.by)}: proposed by "
            f"{name(p.proposer)}, approved by {', '.join(name(m) for m in sorted(p.approvals))} (quorum: "
            f"{p.quorum.ncc} of {p.ncc_members} NCC, {p.quorum.security} Security Team), verified against the chain "
            f"this device pinned; {len(p.plan)} hand-over export(s) recorded. This device's keys, caches, local "
            f"copies index and unlock session for it were wiped ({w.files} files, {w.home} removed)")
