"""The one rule of a coalition key to replace (issue 20, session 18; docs/lifecycle.md "Every NCC member holds the
coalition key"): a key is stale when someone the organization's chain says may hold its seed (``holders``: every
signer of an ``org.coalition`` naming it, proposal or recording, and every member filed a box of it)

- does not hold NCC now, whichever way they lost it (``org.role`` revoke, ``org.remove``, or the role's end by its
  term, which no link marks); or
- has a device revoked (the member's chain) or cut (``org.device.cut``) after they came to hold it (session 19,
  review round 20): the box is sealed to the member's key, the seed kept in the signing device's keystore, so any
  device of theirs active after their first signature or box could hold it, and a seized one still does.

The clients act on it (client/coalitionrekey.py ``when_stale``; ``coalition ls``/``show``); ``stale_since`` says when
the latest of those reasons came, so that the hook signs no proposal made before it (one answering another
question, or a thief's).
"""

from __future__ import annotations

from collections.abc import Mapping

from vault.chains.member import MemberState
from vault.chains.org import OrgState

_NEVER = 2**63


def holders(org: OrgState, name: str) -> frozenset[str]:
    """Who the chain says may hold the seed of the coalition key recorded for ``name``: each signer of an
    ``org.coalition`` naming it (its maker's device keeps the seed; the chain cannot tell which signer made it) and
    each member filed a box of it (a box of an earlier key of the name gives nothing of this one)."""
    return frozenset(_held_since(org, name))


def _held_since(org: OrgState, name: str) -> dict[str, int]:
    """Each holder (``holders``) -> the time of their first signature naming the key or of their first box of it."""
    entry = org.coalitions[name]
    since = dict(org.coalition_signers.get(entry.key, {entry.by: _time(org, entry.seq)}))
    for m, share in org.coalition_shares.get(name, {}).items():
        if share.key == entry.key:
            since[m] = min(since.get(m, _NEVER), _time(org, share.first or share.seq))
    return since


def _time(org: OrgState, seq: int) -> int:
    return org.times[seq - 1] if 0 < seq <= len(org.times) else 0


def _ncc_lost(org: OrgState, member: str, now: int) -> int:
    """When ``member``, holding no NCC at ``now``, last lost it: the link that revoked it or removed them, or the
    term's end (a caretaker's end is dated at the term's: earlier than the grant that ended it)."""
    om = org.members.get(member)
    lost, until = 0, None  # until: the end of the NCC term held (None: not held; _NEVER: no end)
    for e in om.log if om is not None else []:
        t = _time(org, e.seq)
        if until is not None and until <= t:
            lost, until = until, None  # the term ended before this entry
        has = e.status == "admitted" and "ncc" in e.roles
        if until is not None and not has:
            lost = t
        until = (e.roles["ncc"] or _NEVER) if has else None
    if until is not None and until <= now:
        lost = until
    return lost


def _device_lost(members: Mapping[str, MemberState], org: OrgState, member: str, since: int) -> int | None:
    """The latest time a device of ``member`` was revoked or cut after ``since`` (None: none was). A revocation the
    chain records counts whatever its date, one dated after the reader's clock too (session 20): it is dated after the
    device's last act (the server's ``not_before``), so the command that revoked it often reads the chain before that
    date, and the key it could open must be replaced from then on, not a few seconds later."""
    ms = members.get(member)
    found = None
    for d in ms.devices.values() if ms is not None else []:
        cut = org.incidents.cut_of(member, d.device_id)
        gone = min(d.revoked if d.revoked is not None else _NEVER, cut.time if cut is not None else _NEVER)
        if since < gone < _NEVER and (found is None or gone > found):
            found = gone
    return found


def _reasons(org: OrgState, now: int, members: Mapping[str, MemberState]) -> dict[str, dict[str, int]]:
    """name -> each holder who makes the key stale -> when (the latest of their reasons)."""
    found: dict[str, dict[str, int]] = {}
    for name in sorted(org.coalitions):
        gone: dict[str, int] = {}
        for m, since in _held_since(org, name).items():
            when = [t for t in (_device_lost(members, org, m, since),) if t is not None]
            if "ncc" not in org.roles_of(m, now):
                when.append(_ncc_lost(org, m, now))
            if when:
                gone[m] = max(when)
        if gone:
            found[name] = gone
    return found


def stale_keys(org: OrgState, now: int, members: Mapping[str, MemberState]) -> dict[str, tuple[str, ...]]:
    """Each coalition key to replace at time ``now`` (name -> the holders, sorted, who make it so: an NCC role
    revoked or ended by its term, a member removed, a device of theirs revoked or cut since they came to hold it). A
    member holding NCC again holds it: not stale for them unless a device of theirs was lost."""
    return {name: tuple(sorted(gone)) for name, gone in _reasons(org, now, members).items()}


def stale_since(org: OrgState, now: int, members: Mapping[str, MemberState]) -> dict[str, int]:
    """For each stale key (``stale_keys``), when the latest reason came: a rekey proposed before it answers another
    question (``client/coalitionrekey.py`` ``when_stale`` does not sign it)."""
    return {name: max(gone.values()) for name, gone in _reasons(org, now, members).items()}
