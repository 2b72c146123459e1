"""Incident acts of the organization chain: cutting off a lost or seized device, pausing a suspected member, and
clearing the pause either puts the member under (rule lost-device; SECURITY.md "A lost or seized device").

    org.device.cut  {member, device, last}
                                      the Security Team (NCC when it has no member) cuts off one device of a
                                      member: from the link's time the device is treated as revoked (no login,
                                      nothing it signs later is believed), the member's key (PUK) counts as
                                      compromised until the member's own chain revokes that device, and the
                                      member is paused (no new content in sensitive teams) until an org.clear.
                                      ``last``: [{chain, seq, hash}], for the member chain and every team chain
                                      the device had signed a link in, the last such link as the cutter saw it
                                      (the server takes the cut only if that is exactly what it holds): a link
                                      the device signed beyond it is after the cut whatever its date, and a
                                      device it added there is not believed (review round 9)
    org.suspect     {member}          the Security Team (NCC when it has no member) pauses a member it suspects
                                      (issue 18, "a suspected infiltrator") exactly as a cut's pause does, without
                                      cutting any device: no new content in sensitive teams until an org.clear;
                                      not oneself, not a member paused already
    org.clear       {member}          a Security Team member (NCC when it has none), not the paused member,
                                      lifts the pause (of a cut or of a suspicion)

Neither carries a reason or any free text: every member reads the organization chain; the notes of an
incident belong to the Security Team's encrypted incident record. Both are judged by the one judge as the
act of the same name (``security.authority``); this module checks what they name and records their effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from vault.chains.member import MemberState
from vault.encoding import Fields
from vault.errors import ChainError, EncodingError, PolicyDenied
from vault.links import Link


class SignedChain(Protocol):
    """What ``last_signed`` reads of a team chain's state (``vault.chains.team.TeamState``, which imports the org
    chain, which imports this module)."""

    @property
    def team_id(self) -> str: ...

    @property
    def last_signed(self) -> dict[str, tuple[int, bytes]]: ...

INCIDENT_TYPES = ("org.device.cut", "org.clear", "org.suspect")


@dataclass(frozen=True)
class Cut:
    """A device cut off: whose, which, by whom, when (the link's time) and at which org seq."""

    member: str
    device: str
    by: str
    time: int
    seq: int
    last: Mapping[str, tuple[int, bytes]] = field(default_factory=dict)  # chain -> (seq, hash), body ``last``

    def after(self, chain: str, seq: int) -> bool:
        """Is position ``seq`` of ``chain`` beyond the last link the cut device had signed there at the cut?"""
        return seq > self.last.get(chain, (0, b""))[0]

    def added_after(self, ms: MemberState) -> set[str]:
        """The devices of ``ms`` the cut device added beyond its last member link at the cut, and those they added
        (whatever the dates: the thief may date them before the cut)."""
        out: set[str] = set()
        for d in sorted(ms.devices.values(), key=lambda d: d.added_seq):
            if d.added_by in out or (d.added_by == self.device and self.after(ms.member_id, d.added_seq)):
                out.add(d.device_id)
        return out


@dataclass
class Pause:
    """A member's sensitive memberships refuse new content from ``since`` until ``cleared_at`` (None: not yet)."""

    member: str
    since: int
    seq: int
    by: str
    cleared_at: int | None = None
    cleared_by: str | None = None
    cleared_seq: int | None = None
    kind: str = "lost-device"  # what paused the member: "lost-device" (org.device.cut) or "suspect" (org.suspect)

    def active(self, t: int) -> bool:
        return self.since <= t and (self.cleared_at is None or t < self.cleared_at)


@dataclass
class Incidents:
    """The cuts and pauses of an organization chain, in chain order."""

    cuts: list[Cut] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
    # member -> their cuts / pauses: every act, box and rotation asks, and nearly every member has none
    by_member: dict[str, list[Cut]] = field(default_factory=dict)
    paused: dict[str, list[Pause]] = field(default_factory=dict)

    def cuts_of(self, member: str) -> list[Cut]:
        return self.by_member.get(member, [])

    def cut_of(self, member: str, device: str) -> Cut | None:
        return next((c for c in self.cuts_of(member) if c.device == device), None)

    def paused_at(self, member: str, t: int) -> Pause | None:
        """The pause in force on ``member`` at time ``t``, if any."""
        return next((p for p in self.paused.get(member, []) if p.active(t)), None)

    def open_pause(self, member: str) -> Pause | None:
        """The pause on ``member`` that no org.clear lifted yet."""
        return next((p for p in self.paused.get(member, []) if p.cleared_at is None), None)

    def compromised(self, ms: MemberState, t: int) -> Cut | None:
        """The cut that makes ``ms``'s current key (PUK) untrusted at ``t``: a device cut at or before ``t`` such
        that it, or a device it added after the cut (``Cut.added_after``), is not revoked by ``t``, or the last of
        them to be revoked was revoked by one of them (a revocation from a clean device rolls the PUK to a seed none
        of them had). A later PUK roll alone does not count, nor a revocation the cut device signed: the cut device
        could have signed either."""
        for c in self.cuts_of(ms.member_id):
            if c.time > t:
                continue
            lost = ms.devices.get(c.device)
            if lost is None:
                return c
            held = [lost, *(ms.devices[x] for x in c.added_after(ms))]  # what the thief holds
            ended = [d.revoked for d in held if d.revoked is not None and d.revoked <= t]
            if len(ended) < len(held):
                return c  # one of them is not revoked by t: it holds the PUK
            ids = {d.device_id for d in held}
            if any(d.revoked_by in ids for d in held if d.revoked == max(ended)):
                return c  # the last of them was revoked by one of them: the PUK rolled to a seed the thief made
        return None

    def refusal(self, ms: MemberState, device: str, t: int, position: tuple[str, int] | None = None) -> str | None:
        """Why an act of ``ms`` signed with ``device`` at ``t`` is not believed because of a cut (None: it is).

        The cut device itself from the cut on, and in a chain (``position``: a team link's chain and seq) beyond
        the last link it had signed there when the cut was made, whatever its date; any device it added beyond
        its last member link at the cut (``Cut.added_after``); and any device added at or after a cut while the
        cut device was still in the member's chain (the cut device may have added it: the member revokes the
        lost device first, from another of their devices, then adds new ones)."""
        for c in self.cuts_of(ms.member_id):
            if device == c.device and t >= c.time:
                return f"device {device} was cut off by the Security Team at {c.time}"
            if device == c.device and position is not None and c.after(*position):
                return (f"device {device} was cut off by the Security Team (org seq {c.seq}) and this link comes after "
                        "the last one it had signed in that chain then")
            d, lost = ms.devices.get(device), ms.devices.get(c.device)
            if d is not None and d.added >= c.time and (lost is None or lost.revoked is None
                                                         or lost.revoked > d.added):
                return (f"device {device} was added after device {c.device} was cut off at {c.time} and before "
                        "the member revoked it")
            if device in c.added_after(ms):
                return f"device {device} was added by device {c.device} after the Security Team cut it off"
        return None


def check_named(incidents: Incidents, chain: str, seq: int, link_hash: bytes) -> None:
    """A cut's ``last`` names a link by seq *and* hash: a chain whose link at that seq is another one is a fork (a
    colluding server showed the cutter one link and serves everyone else another: review round 10), refused."""
    for cut in incidents.cuts:
        named = cut.last.get(chain)
        if named is not None and named[0] == seq and named[1] != link_hash:
            raise ChainError(f"link {seq} of chain {chain} is not the link the org.device.cut at org seq {cut.seq} "
                             "names there (another hash: a fork of the chain)")


def last_signed(device: str, ms: MemberState, teams: Iterable[SignedChain]) -> dict[str, tuple[int, bytes]]:
    """What an ``org.device.cut`` of ``device`` records as ``last``: the last link it signed in the member chain
    ``ms`` and in each of ``teams`` (chain -> (seq, hash); chains it signed nothing in are left out)."""
    found = {ms.member_id: ms.last_signed.get(device)} | {t.team_id: t.last_signed.get(device) for t in teams}
    return {chain: found[chain] for chain in sorted(found) if found[chain] is not None}  # type: ignore[misc]


def last_body(last: Mapping[str, tuple[int, bytes]]) -> list[dict[str, str | int | bytes]]:
    """``last_signed`` as the body field ``last`` (docs/format.md)."""
    return [{"chain": chain, "seq": seq, "hash": h} for chain, (seq, h) in sorted(last.items())]


def cut_last(link: Link) -> dict[str, tuple[int, bytes]]:
    """The ``last`` field of an ``org.device.cut`` (``last_signed``); ChainError if malformed."""
    try:
        return _last(link)
    except EncodingError as e:
        raise ChainError(f"malformed org.device.cut: {e}") from e


def _last(link: Link) -> dict[str, tuple[int, bytes]]:
    """The ``last`` list of an ``org.device.cut``: chain -> (seq, hash), one entry per chain, in chain id order."""
    out: dict[str, tuple[int, bytes]] = {}
    for item in link.body.list_("last", 10000):
        f = Fields(item, "last link", {"chain", "seq", "hash"})
        chain = f.str_("chain", 64)
        if out and chain <= max(out):
            raise ChainError("org.device.cut: the last links must be in increasing chain id order, one per chain")
        out[chain] = (f.int_("seq", 1), f.bytes_("hash", 32))
    return out


def apply_incident(incidents: Incidents, link: Link, members: Mapping[str, MemberState], admitted: bool) -> None:
    """Check what an ``org.device.cut`` / ``org.clear`` names and record it (the signer was judged already).
    ``admitted``: the named member is a current (admitted or pending, not removed) member of the organization."""
    target = link.body.str_("member", 64)
    if not admitted:
        raise ChainError(f"{link.type}: member {target} is not a current member")
    if link.type == "org.device.cut":
        device = link.body.str_("device", 64)
        ms = members.get(target)
        d = ms.devices.get(device) if ms is not None else None
        # Judged on the member chain as it is now: a revocation appended after the cut may be dated before it
        # (a clock within the server's window, review round 9), so a device revoked since counts as well as an
        # active one; only a device added after the cut's time, or never, is refused.
        if d is None or d.added > link.time:
            raise ChainError(f"org.device.cut: {device} is not a device of member {target} at the cut's time")
        if incidents.cut_of(target, device) is not None:
            raise ChainError(f"org.device.cut: device {device} is already cut off")
        cut = Cut(target, device, link.signer, link.time, link.seq, _last(link))
        own = cut.last.get(target)
        if own is not None and own[0] > ms.seq:  # type: ignore[union-attr]
            raise ChainError(f"org.device.cut: names link {own[0]} of member {target}'s chain, which does not exist")
        if own is not None and ms.hashes[own[0] - 1] != own[1]:  # type: ignore[union-attr]
            raise ChainError(f"org.device.cut: names link {own[0]} of member {target}'s chain with another hash than "
                             "the link there (a fork of that chain)")
        incidents.cuts.append(cut)
        incidents.by_member.setdefault(target, []).append(cut)
        if incidents.open_pause(target) is None:
            new = Pause(target, link.time, link.seq, link.signer)
            incidents.pauses.append(new)
            incidents.paused.setdefault(target, []).append(new)
        return
    if link.type == "org.suspect":
        if target == link.signer:
            raise ChainError("org.suspect: a member cannot pause themselves")
        if incidents.open_pause(target) is not None:
            raise ChainError(f"org.suspect: member {target} is paused already")
        new = Pause(target, link.time, link.seq, link.signer, kind="suspect")
        incidents.pauses.append(new)
        incidents.paused.setdefault(target, []).append(new)
        return
    pause = incidents.open_pause(target)
    if pause is None:
        raise ChainError(f"org.clear: member {target} is not paused")
    if target == link.signer:
        raise PolicyDenied("a paused member cannot clear themselves: another Security Team member clears them")
    pause.cleared_at, pause.cleared_by, pause.cleared_seq = link.time, link.signer, link.seq
