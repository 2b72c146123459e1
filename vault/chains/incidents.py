"""Incident acts of the organization chain: cutting off a lost or seized device, and clearing the pause it puts
the member under (rule lost-device; SECURITY.md "A lost or seized device").

    org.device.cut  {member, device}  the Security Team (NCC when it has no member) cuts off one device of a
                                      member: from the link's time the device is treated as revoked (no login,
                                      nothing it signs later is believed), the member's key (PUK) counts as
                                      compromised until the member's own chain revokes that device, and the
                                      member is paused (no new content in sensitive teams) until an org.clear
    org.clear       {member}          a Security Team member (NCC when it has none), not the paused member,
                                      lifts the pause

Neither carries a reason or any free text: every member reads the organization chain; the notes of an
incident belong to the Security Team's encrypted incident record. Both are judged by the one judge as the
act of the same name (``security.authority``); this module checks what they name and records their effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vault.chains.member import MemberState
from vault.errors import ChainError, PolicyDenied
from vault.links import Link

INCIDENT_TYPES = ("org.device.cut", "org.clear")


@dataclass(frozen=True)
class Cut:
    """A device cut off: whose, which, by whom, when (the link's time) and at which org seq."""

    member: str
    device: str
    by: str
    time: int
    seq: int


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
        """The cut that makes ``ms``'s current key (PUK) untrusted at ``t``: a device cut at or before ``t`` that
        the member's own chain had not revoked by ``t`` from another device (its revocation rolls the PUK to a seed
        the cut device never had). A later PUK roll alone does not count, nor a revocation the cut device signed:
        the cut device could have signed either."""
        for c in self.cuts_of(ms.member_id):
            d = ms.devices.get(c.device)
            if c.time <= t and (d is None or d.revoked is None or d.revoked > t or d.revoked_by == c.device):
                return c  # a revocation the cut device signed itself rolled the PUK to a seed it made
        return None

    def refusal(self, ms: MemberState, device: str, t: int) -> str | None:
        """Why an act of ``ms`` signed with ``device`` at ``t`` is not believed because of a cut (None: it is).

        The cut device itself from the cut on; and any device added at or after a cut while the cut device was
        still in the member's chain (the cut device may have added it: the member revokes the lost device
        first, from another of their devices, then adds new ones)."""
        for c in self.cuts_of(ms.member_id):
            if device == c.device and t >= c.time:
                return f"device {device} was cut off by the Security Team at {c.time}"
            d, lost = ms.devices.get(device), ms.devices.get(c.device)
            if d is not None and d.added >= c.time and (lost is None or lost.revoked is None
                                                         or lost.revoked > d.added):
                return (f"device {device} was added after device {c.device} was cut off at {c.time} and before "
                        "the member revoked it")
        return None


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
        cut = Cut(target, device, link.signer, link.time, link.seq)
        incidents.cuts.append(cut)
        incidents.by_member.setdefault(target, []).append(cut)
        if incidents.open_pause(target) is None:
            new = Pause(target, link.time, link.seq, link.signer)
            incidents.pauses.append(new)
            incidents.paused.setdefault(target, []).append(new)
        return
    pause = incidents.open_pause(target)
    if pause is None:
        raise ChainError(f"org.clear: member {target} is not paused")
    if target == link.signer:
        raise PolicyDenied("a paused member cannot clear themselves: another Security Team member clears them")
    pause.cleared_at, pause.cleared_by, pause.cleared_seq = link.time, link.signer, link.seq
