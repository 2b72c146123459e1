"""Closing the organization from a member's client (issue 20, docs/lifecycle.md section 3): the hand-over plan
read from TOML, the proposal, the approvals, and the run (the plan's age exports, ``org.close.exported`` for each,
then ``org.closed``). What a client does on its next contact with a closed organization: client/closed.py.

The plan file (``mvault org close --hand-over PLAN.toml``)::

    [[hand-over]]
    team = "campaign"                 # a team's name (or id)
    documents = ["plan.md", "notes/"] # optional: names, or folders ending in /; absent: every live document
    to = ["age1..."]                  # the successors' age recipients, given out of band

Names never reach the chain (the server reads it): the proposer's client turns them into document ids, and every
approver's client shows the names it can open beside the ids."""

from __future__ import annotations

import contextlib
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from client.client import Client
from client.closingexports import Awaiting, requests_for, sensitive_kinds
from client.export import export_team
from client.view import View
from security.authority import POLICY
from vault.agefile import check_recipient
from vault.chains import PlanEntry, Proposal, Quorum, TeamState, plan_hash
from vault.errors import EncodingError, NotFound, PolicyDenied, VaultError

MAX_PLAN = 64 * 1024


@dataclass(frozen=True)
class Shown:
    """A proposal as an approver's client shows it: the plan with the names this client can open."""

    proposal: Proposal
    teams: tuple[str, ...]  # per entry: the team's name (its id when this client cannot see it)
    documents: tuple[tuple[str, ...], ...]  # per entry: the documents' names (ids for those it cannot open)
    met: bool
    problems: tuple[str, ...] = ()  # what the plan names that is not there, as this client sees it

    def to_json(self) -> dict[str, object]:
        p = self.proposal
        return {"proposal": p.hash.hex(), "plan_hash": p.plan_hash.hex(), "proposer": p.proposer, "time": p.time,
                "not_before": p.not_before, "quorum": {"ncc": p.quorum.ncc, "security": p.quorum.security,
                                                       "ncc_members": p.ncc_members},
                "approvers": sorted(p.approvals), "met": self.met, "problems": list(self.problems),
                "plan": [{"team": e.team, "team_name": name, "documents": list(docs) if e.documents else "all",
                          "to": list(e.recipients)}
                         for e, name, docs in zip(p.plan, self.teams, self.documents, strict=True)]}


def read_plan(path: Path) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(team, document names or folders, recipients) per hand-over of a plan file; refused when malformed."""
    raw = path.read_bytes()
    if len(raw) > MAX_PLAN:
        raise EncodingError(f"{path}: a hand-over plan is at most {MAX_PLAN} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise EncodingError(f"{path} is not valid TOML: {e}") from e
    if set(data) != {"hand-over"} or not isinstance(data["hand-over"], list) or not data["hand-over"]:
        raise EncodingError(f"{path}: a plan is one or more [[hand-over]] tables, and nothing else")
    out = []
    for i, item in enumerate(data["hand-over"]):
        where = f"{path}: hand-over {i + 1}"
        if not isinstance(item, dict) or not {"team", "to"} <= set(item) <= {"team", "documents", "to"}:
            raise EncodingError(f"{where}: takes team, to and (optionally) documents")
        team, docs, to = item["team"], item.get("documents", []), item["to"]
        if not isinstance(team, str) or not _strings(docs) or not _strings(to) or not to:
            raise EncodingError(f"{where}: team is a name, documents and to are lists of strings (to not empty)")
        out.append((team, tuple(docs), tuple(check_recipient(r) for r in to)))
    return out


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


async def resolve_plan(c: Client, plan: list[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> list[PlanEntry]:
    """The plan as the chain records it: team ids, and the ids of the named documents (a folder: every live
    document under it), opened by this client (a name it cannot find is an error)."""
    view = await c.chains.view()
    entries = []
    for team_name, names, recipients in plan:
        team = view.team_by_name(team_name)
        docs: list[str] = []
        if names:
            opened = await _opened(c, team.name)
            for name in names:
                hits = [doc for doc, n in opened.items() if n == name or (name.endswith("/") and n.startswith(name))]
                if not hits:
                    raise NotFound(f"no document named {name!r} in team {team.name}")
                docs.extend(h for h in hits if h not in docs)
        entries.append(PlanEntry(team.team_id, tuple(docs), recipients))
    return entries


async def _opened(c: Client, team_name: str) -> dict[str, str]:
    """Document id -> name of every live document of the team this client opens."""
    return {d.record.core.doc: d.opened.name for d in await c.docs.ls(team_name) if d.opened is not None}


async def propose(c: Client, plan: list[PlanEntry], delay: int) -> Proposal:
    """Sign ``org.close.propose`` with the ``[closing]`` parameters in force; the proposal as the chain holds it."""
    problems = (await resolved(c, plan))[2]
    if problems:
        raise NotFound("the hand-over plan names what is not there: " + "; ".join(problems))
    view = await c.chains.view()
    quorum = _in_force(view)
    now = max(c.session.now(), view.org.time)
    await c.chains.append_org("org.close.propose", {"plan": [e.body() for e in plan], "plan_hash": plan_hash(plan),
                                                    "quorum": quorum.body(), "not_before": now + delay},
                              not_before=now)
    after = await c.chains.view()
    return after.org.closing.proposals[after.org.head]


def _in_force(view: View) -> Quorum:
    return POLICY.closing_quorum(view.org.protocols.text if view.org.protocols else None)


def pending(view: View) -> Proposal:
    """The newest closing proposal of the chain (the one ``approve-close`` and ``close --run`` act on)."""
    if not view.org.closing.proposals:
        raise NotFound("no closing of the organization was proposed")
    return max(view.org.closing.proposals.values(), key=lambda p: p.seq)


async def resolved(c: Client, plan: list[PlanEntry]) -> tuple[list[str], list[tuple[str, ...]], list[str]]:
    """Per entry the team's name and the documents' names as this client sees them (ids where it cannot), and what
    the plan names that is not there: a team this client does not see (NCC and the Security Team see every team),
    documents the team does not hold (checked where this client may list the team's documents)."""
    view = await c.chains.view()
    teams, documents, problems = [], [], []
    for i, e in enumerate(plan):
        team = view.teams.get(e.team)
        teams.append(team.name if team is not None else e.team)
        if team is None:
            problems.append(f"plan entry {i + 1} names {e.team}, which is no team of this organization you see")
        names: dict[str, str] = {}
        if team is not None and e.documents:
            with contextlib.suppress(PolicyDenied):  # a team seen without its key (Security Team): ids only
                heads = await c.docs.ls(team.name)
                names = {d.record.core.doc: d.opened.name for d in heads if d.opened is not None}
                missing = sorted(set(e.documents) - {d.record.core.doc for d in heads})
                if missing:
                    problems.append(f"plan entry {i + 1} names documents team {team.name} does not hold: "
                                    + ", ".join(missing))
        documents.append(tuple(names.get(d, d) for d in e.documents))
    return teams, documents, problems


async def show(c: Client, proposal: Proposal) -> Shown:
    teams, documents, problems = await resolved(c, proposal.plan)
    met = (await c.chains.view()).org.closing_met(proposal, c.session.now())
    return Shown(proposal, tuple(teams), tuple(documents), met, tuple(problems))


async def approve(c: Client) -> Shown:
    """Sign ``org.close.approve`` of the pending proposal, once its plan names only teams and documents there are
    (what a server, or a proposer's client, let through is refused here)."""
    view = await c.chains.view()
    proposal = pending(view)
    if c.session.me in proposal.approvals:
        raise PolicyDenied("you approved this closing already (or proposed it: the proposer counts as one)")
    shown = await show(c, proposal)
    if shown.problems:
        raise PolicyDenied("you may not approve this closing: " + "; ".join(shown.problems)
                           + " (a new proposal is needed)")
    await c.chains.append_org("org.close.approve", {"proposal": proposal.hash})
    return await show(c, (await c.chains.view()).org.closing.proposals[proposal.hash])


@dataclass(frozen=True)
class Run:
    proposal: Proposal
    files: tuple[Path, ...]  # the age exports written, one per plan entry: to hand to the successors
    manifests: tuple[str, ...]  # SHA-256 of each export's manifest.json, as org.close.exported records it
    awaiting: tuple[Awaiting, ...] = ()  # sensitive entries waiting for approvals: nothing was written or closed


async def run(c: Client, out: Path) -> Run:
    """Export each plan entry not exported yet as an age file in the new folder ``out``, record each with
    ``org.close.exported``, then sign ``org.closed`` (the server then shreds everything it holds). An entry of a
    sensitive team goes under an export request two Security Team members approved (client/closingexports.py):
    while one of them waits for its approvals, nothing is written and the chain is not closed."""
    view = await c.chains.view()
    proposal = pending(view)
    if not view.org.closing_met(proposal, c.session.now()):
        raise PolicyDenied("the closing has not reached its quorum: more approvals are needed "
                           "(`mvault org approve-close`)")
    if c.session.now() < proposal.not_before:
        raise PolicyDenied(f"the closing may not be made before {proposal.not_before}")
    todo: list[tuple[int, PlanEntry, TeamState, list[str]]] = []
    for i, entry in enumerate(proposal.plan):
        if i not in proposal.exported:
            team = view.teams.get(entry.team)
            if team is None:
                raise NotFound(f"plan entry {i + 1}: team {entry.team} is not visible to you: a member of it runs "
                               "the closing")
            todo.append((i, entry, team, await _names(c, i, entry, team)))
    kinds = sensitive_kinds(view)
    ready, awaiting = await requests_for(c, [(i, e, t) for i, e, t, _ in todo if t.kind in kinds])
    if awaiting:
        return Run(proposal, (), (), tuple(awaiting))
    out.mkdir(mode=0o700)
    files, manifests = [], {i: h.hex() for i, h in proposal.exported.items()}
    for i, entry, team, names in todo:
        target = out / f"{i + 1}-{team.name}.age"
        req = ready.get(i)
        exported = await export_team(c, team.name, names, target, entry.recipients,
                                     request=None if req is None else req.hash.hex())
        digest = hashlib.sha256(exported.manifest.to_bytes()).digest()
        await c.chains.append_org("org.close.exported", {"proposal": proposal.hash, "entry": i, "manifest": digest})
        files.append(target)
        manifests[i] = digest.hex()
    await c.chains.append_org("org.closed", {"proposal": proposal.hash})
    return Run(proposal, tuple(files), tuple(manifests[i] for i in sorted(manifests)))


async def _names(c: Client, i: int, entry: PlanEntry, team: TeamState) -> list[str]:
    """The names of the entry's documents as this client opens them (none: every document); refused when one of
    them is not there any more."""
    if not entry.documents:
        return []
    opened = await _opened(c, team.name)
    missing = [d for d in entry.documents if d not in opened]
    if missing:
        raise VaultError(f"plan entry {i + 1}: documents {missing} of team {team.name} are not there any more "
                         "(deleted since the proposal?): a new proposal is needed")
    return [opened[d] for d in entry.documents]
