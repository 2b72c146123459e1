"""Rule two-person on the organization chain (docs/format.md ``org.role``): an act that takes two NCC members waits
in ``OrgState.role_proposals`` for its second signature (``second_person``).

A proposal is its signing DEVICE's, not only its member's (review round 20, session 19): it is void once that device
is revoked (the member's chain: a ``device.revoke`` dated at or before the time asked) or cut (``org.device.cut``):
a thief's proposal made on a seized device is never put in force by the honest second signature that follows the
device's revocation. The judge drops void proposals before each link (``OrgState.apply``) and answers ``pending``
for a time between links: the clients (``client/coalitionrekey.py``, ``client/coalition.py``) read that, never the
raw dict. A revocation is dated by its signer: the server refuses one dated before a second signature it already took
for a proposal of that device (``OrgState.cosigned_on``; ``server.directory`` ``check_not_before``), or every replay
would void what the server put in force.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from vault.chains.incidents import Incidents
from vault.chains.member import MemberState
from vault.errors import PolicyDenied
from vault.links import Link

# Two people: the subject never signs its own grant of these, and granting, revoking (other than stepping
# down) or removing a holder takes two NCC members when there is one besides the signer and the subject.
TWO_PERSON_ROLES = ("ncc", "security")

Act = tuple[str, ...]


def role_act(member: str, role: str, grant: bool, until: int | None) -> Act:
    """How a two-person ``org.role`` waits in ``OrgState.role_proposals``.

    An ``org.remove`` waits there as ("org.remove", member), an ``org.audit_team`` as ("org.audit_team", team), an
    ``org.server`` as ("org.server", url, pin), an ``org.coalition`` as ``vault.chains.coalition.coalition_act``."""
    return ("org.role", member, role, "grant", str(until)) if grant else ("org.role", member, role, "revoke")


class Text(Protocol):
    """A proposed security-protocols text (``OrgState.proposals``): who proposed it, on which device."""

    @property
    def proposer(self) -> str: ...

    @property
    def device(self) -> str: ...


class Proposals(Protocol):
    """What rule two-person reads and writes of ``OrgState`` (which imports this module)."""

    role_proposals: dict[Act, tuple[str, int]]  # act -> (proposer, time)
    proposed_on: dict[Act, str]  # act -> the device that signed the proposal
    cosigned: dict[int, str | None]
    cosigned_on: dict[int, str]  # seq of a second signature -> the device that signed the proposal it put in force
    incidents: Incidents

    @property
    def proposals(self) -> Mapping[bytes, Text]: ...  # the protocols texts waiting for approval

    @property
    def members(self) -> Mapping[str, object]: ...

    def roles_of(self, member_id: str, now: int | None = None, seq: int | None = None) -> frozenset[str]: ...


def gone_since(members: Mapping[str, MemberState], incidents: Incidents, member: str, device: str) -> int | None:
    """From when ``device`` of ``member`` is revoked (by its member chain) or cut (``org.device.cut``), whichever is
    first, at any date (None: neither); a device the member states do not know is gone from 0."""
    ms = members.get(member)
    d = ms.devices.get(device) if ms is not None else None
    if d is None:
        return 0
    cut = incidents.cut_of(member, device)
    times = [t for t in (d.revoked, cut.time if cut is not None else None) if t is not None]
    return min(times, default=None)


def device_gone(members: Mapping[str, MemberState], incidents: Incidents, member: str, device: str, t: int) -> bool:
    """Was ``device`` of ``member`` revoked (by its member chain) or cut (``org.device.cut``) at or before ``t``? A
    device the member states do not know is gone too."""
    since = gone_since(members, incidents, member, device)
    return since is not None and since <= t


def void_ever(state: Proposals, members: Mapping[str, MemberState]) -> dict[Act, int]:
    """The pending acts whose proposal's device is revoked or cut at ANY date (review round 22): act -> from when. The
    judge voids by times (``drop_void``), and a revocation's time is its signer's (a thief forward-dates the member
    chain, so an honest revocation lands dated ahead): where the order of arrival is known (the server, a client's
    view) such a proposal is never put in force nor listed."""
    out: dict[Act, int] = {}
    for act, (by, _) in state.role_proposals.items():
        since = gone_since(members, state.incidents, by, state.proposed_on.get(act, ""))
        if since is not None:
            out[act] = since
    return out


def void(state: Proposals, members: Mapping[str, MemberState], t: int) -> list[Act]:
    """The pending acts whose proposal's device is gone at ``t`` (``device_gone``)."""
    return [act for act, (by, _) in state.role_proposals.items()
            if device_gone(members, state.incidents, by, state.proposed_on.get(act, ""), t)]


def void_devices(state: Proposals, members: Mapping[str, MemberState]) -> dict[str, int]:
    """The devices of pending proposals (two-person acts, protocols texts) revoked or cut at ANY date: device -> from
    when (review 22). The server takes (``Directory``) and a client signs (``client/view.py``) no link that puts one in
    force."""
    gone = {state.proposed_on.get(act, ""): since for act, since in void_ever(state, members).items()}
    for c in state.proposals.values():
        if (since := gone_since(members, state.incidents, c.proposer, c.device)) is not None:
            gone[c.device] = since
    return gone


def drop_void(state: Proposals, members: Mapping[str, MemberState], t: int) -> None:
    """Before a link at time ``t`` (the judge): a proposal whose device is gone waits no more."""
    for act in void(state, members, t):
        del state.role_proposals[act]
        state.proposed_on.pop(act, None)


def pending(state: Proposals, members: Mapping[str, MemberState], t: int) -> dict[Act, tuple[str, str, int]]:
    """The acts waiting for a second signature at time ``t``, as a client lists and signs them: act -> (proposer, its
    device, time); a proposal of a device revoked or cut at ANY date the view holds is not among them (review round
    22: not only by ``t``, or a revocation the thief got dated ahead of ``t`` leaves its proposal to be signed)."""
    gone = set(void_ever(state, members))  # at any date: so by ``t`` too
    return {act: (by, state.proposed_on.get(act, ""), when) for act, (by, when) in state.role_proposals.items()
            if act not in gone}


def second_person(state: Proposals, link: Link, act: Act, subject: str | None,
                  ncc_at: Callable[[str], bool]) -> bool:
    """Two people for the strongest acts: does ``act`` take effect with this link?

    When an NCC member other than the signer and the subject exists at the link's time (``ncc_at``), the first
    link only proposes the act (False) and the same act signed by a second NCC member, neither the proposer nor the
    subject, puts it in force (True) while the proposer holds NCC and the proposing device is neither revoked nor
    cut (``drop_void`` ran before this link: a void proposal is gone, so this link proposes again). With no such
    member, one signature does (the ``two-person`` rule reports it)."""
    if not any(m not in (link.signer, subject) and ncc_at(m) for m in state.members):
        return True
    proposed = state.role_proposals.get(act)
    if proposed is not None and proposed[0] == link.signer:
        raise PolicyDenied("this needs a second NCC member (neither you nor its subject): you proposed it already")
    if proposed is None or proposed[0] == subject or not ncc_at(proposed[0]):
        state.role_proposals[act] = (link.signer, link.time)
        state.proposed_on[act] = link.device
        state.cosigned[link.seq] = None
        return False
    del state.role_proposals[act]
    state.cosigned_on[link.seq] = state.proposed_on.pop(act, "")
    state.cosigned[link.seq] = proposed[0]
    return True
