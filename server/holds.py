"""Holds on a re-acting subject: room for the retry of a link ending someone's rights (issue 20, session 25).

A link ending rights (``POLICY.rights_ended``: a cut, a device's revocation, a role's revocation, a removal, a compa
grant) must be dated after everything its subject signed: the server refuses an earlier one (409 with
``not_before``, ``Directory.check_not_before``) and the revoker's client signs it again dated then. A subject who
signed something dated at the server's skew in every second made each ``not_before`` the server's own bound, and her
next act, stored before the retry arrived, refused the retry again (SECURITY.md, "A subject re-acting every second").

So when the server refuses such a link only because of its subject's own acts, after the link passed every other
check (its signer is entitled to make it), it holds the subject (each member and device the link's ended fields
name) for ``HOLD`` seconds of its clock: a new act of the subject dated at or after the 409's ``not_before`` is
refused (409, "a link ending your rights is being stored; retry in N s"); acts dated before it are taken (they
cannot refuse the retry again). The hold ends when a link ending the subject's rights is stored, or when ``HOLD``
passes. A link ending a held subject's rights is never held itself (the retry when the revoker is the subject, or a
member revoking her own device while a cut holds her), nor one ending the rights of the refused link's signer (review
38: a seized device's too-early revocation of its owner's device must not hold the owner's revocation of it). A link
its signer may only propose (a two-person act's first signature, which ends nobody's rights) places no hold (review
38: one infiltrated NCC member froze another NCC or Security Team member that way).

Plain values in and out (the server's clock is passed in); the holds live in one server process's memory: over
PostgreSQL with several processes, a subject's acts through another process are not held (SECURITY.md)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from vault.errors import Conflict

HOLD: Final = 30  # seconds of the server's clock a refused link ending someone's rights holds its subject for

Subject = tuple[str, str]  # ("member" or "device", its id): a field of a link's body ``POLICY.rights_ended`` names


@dataclass(frozen=True)
class Hold:
    since: int  # the refused link's ``not_before``: acts dated at or after it are held
    until: float  # the server's clock when the hold ends unless the link is stored first
    link_type: str  # the refused link's type, for the refusal's message
    by: tuple[Subject, ...] = ()  # the refused link's signer (member, device): a link ending their rights passes


@dataclass
class Holds:
    held: dict[Subject, Hold] = field(default_factory=dict)
    suspended: bool = False  # ``placing(False)``: a refused link that fails another check too places none

    @contextlib.contextmanager
    def placing(self, allowed: bool) -> Iterator[None]:
        """While inside, ``place`` holds nobody unless ``allowed`` (a check of the route comes after the date's)."""
        before, self.suspended = self.suspended, not allowed
        try:
            yield
        finally:
            self.suspended = before

    def place(self, subjects: Iterable[Subject], since: int, now: float, link_type: str,
              by: tuple[Subject, ...] = ()) -> None:
        """Hold each of ``subjects`` from ``since`` (the 409's ``not_before``) for ``HOLD`` s from ``now``; ``by``: the
        refused link's signer, whose rights a held subject may still end (review 38: a seized device's too-early
        revocation of its owner's device held the owner's revocation of it). A hold in force is extended and keeps
        its earlier ``since`` and the signers of both."""
        if self.suspended:
            return
        for subject in subjects:
            old = self._in_force(subject, now)
            self.held[subject] = Hold(since, now + HOLD, link_type, by) if old is None else Hold(
                min(old.since, since), now + HOLD, link_type, old.by + tuple(x for x in by if x not in old.by))

    def end(self, subjects: Iterable[Subject]) -> None:
        """A link ending the rights of ``subjects`` was stored: their holds end."""
        for subject in subjects:
            self.held.pop(subject, None)

    def refusal(self, member: str, device: str, t: int, now: float, ending: Iterable[Subject] = ()
                ) -> Conflict | None:
        """The refusal of an act of ``member`` with ``device`` dated ``t`` (None: it is taken). ``ending``: the
        subjects the act ends the rights of, if it is such a link (never held while one of them is held)."""
        if not self.held:
            return None  # the common case
        if any(self._in_force(s, now) is not None for s in ending):
            return None
        for subject in (("device", device), ("member", member)):
            hold = self._in_force(subject, now)
            if hold is not None and t >= hold.since and not any(s in hold.by for s in ending):
                whose = "this device's" if subject[0] == "device" else "your"
                wait = max(1, math.ceil(hold.until - now))
                return Conflict(f"a link ending {whose} rights ({hold.link_type}) is being stored; retry in {wait} s "
                                f"(until then acts dated {hold.since} or later are refused)")
        return None

    def _in_force(self, subject: Subject, now: float) -> Hold | None:
        hold = self.held.get(subject)
        if hold is not None and hold.until <= now:
            del self.held[subject]
            return None
        return hold
