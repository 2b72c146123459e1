"""The coalition key's rotation when a member leaves the NCC (issue 20; docs/lifecycle.md "Every NCC member holds the
coalition key", steps 1-3), the clients' side. The chain side is ``vault.chains.coalitionshare.record_coalition`` (the
organization's own chain) and ``vault.chains.coalition.apply_rekey`` / ``vault.chains.coalitionspace.rekey`` (the
host's space).

- ``rekey`` (``mvault coalition rekey NAME``, and in the same command as ``role revoke MEMBER ncc`` or ``remove`` of an
  NCC member, ``after_ncc_loss``): an NCC member's device holding the key recorded for ``NAME`` makes a new key (its
  seed kept in the keystore, beside the current one, before anything is posted), signs the ``coalition.rekey``
  statement with the current key and posts ``org.coalition {name, key, host, replaces, rekey}``. With another NCC
  member this only proposes it (rule two-person); the same command by a second NCC member signs the proposed new key
  with the old key (its own statement) and records it. Session 21 (review 27): the proposal carries the new seed
  sealed to every NCC member now (``boxes``, ``coalitionkeys.offer_boxes``), filed as the key's shares when it is
  recorded; a second NCC member signs only a proposal boxed to every NCC member now (``coalitionkeys.covers``) whose
  box for them opens to the proposed key (``coalitionkeys.opens_offer``), so the recorder holds the key it put in
  force, reseals it to every other NCC member the proposal boxed (``coalitionkeys.reseal_offered``, review 28: a
  proposer's wrong box for a third member replaced) and seals it to any NCC member left out (``org.coalition.share``);
  the proposer adopts it at its next ``coalition rekey NAME`` (or any command that seals keys). A departed member's
  signature never counts: the judge takes only NCC members' at the link's time, and ``share_missing`` seals only to
  members holding NCC now. For the
  host's own key (``host`` = our root) the device then carries the rekey into the space (``hostkey.carry_rekeys``)
  when it is a member of it.
- ``when_stale`` (after every command of the organization, session 18): a key ``security.stalekeys`` calls stale
  (someone it was sealed to, or who signed it, no longer holds NCC: above all a term's end, which no command marks)
  goes through ``rekey`` on an NCC key holder's next command; the two-person steps on the following ones. Whether
  there is anything to do is decided without a request (``idle``, session 19): most commands fetch nothing for it.
- ``carry_ally`` (a guest, at each contact with the host: ``client/expulsions.py`` ``carry``): our organization's
  rekeys of the key the space pins for it, carried one at a time and in their order as ``coalition.rekey`` team
  links; where the space pins a key our chain never recorded (a rival rekey won there, or our organization is frozen),
  the guest stops, exit 3, for the Security Team.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from client import coalitionkeys, hostkey
from client.client import Client
from client.sanitize import escape
from client.view import View
from security.stalekeys import stale_keys, stale_since
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement
from vault.chains.coalitionshare import Retired
from vault.encoding import Value
from vault.errors import Conflict, NotFound, ServerMismatch, VaultError

MAX_STEPS: Final = 32  # rekeys carried in one contact (each is a team link; a chain of them is a handful at most)


@dataclass(frozen=True)
class Rekeyed:
    """What ``rekey`` did for one name: ``state`` is "recorded" (and sealed to the NCC by this device), "signed" (this
    member's signature recorded another NCC member's proposal: their device seals the new key), "proposed" (a second
    NCC member runs the same command) or "not held" (this device holds no key for the name: ``note`` says why)."""

    name: str
    state: str
    key: bytes | None = None
    note: str = ""
    proposer: str = ""  # "signed"/"proposed" of another device: who proposed it, on which device (escaped)


async def rekey(s: Client, name: str, since: int | None = None) -> Rekeyed:
    """Replace the coalition key recorded for ``name`` (module doc). A pending proposal counts only while its device
    is neither revoked nor cut (``OrgState.pending``, the judge's rule). By hand (no ``since``): another NCC member's
    is signed, the newest first, else one of ours waits. With ``since`` (the hook: when the key went stale), only one
    made at or after it counts, ours too (an older one answers another question, or is a thief's), and the earliest
    of those is the one (``_fresh``): ours waits, another's is signed; with none, this device proposes a new key
    (session 20, review 24: two members' older proposals each waited on their own for good)."""
    view = await s.chains.view()
    entry = view.org.coalitions.get(name)
    if entry is None:
        raise NotFound(f"this organization's chain records no coalition key named {escape(name)!r}")
    me, now = s.session.me, s.session.now()
    if entry.key in coalitionkeys.proposed(s, name):  # our proposal, recorded by a second member
        await coalitionkeys.seed(s, name)  # adopted as the key for the name (the old seed forgotten)
        await _follow(s, name)
        return Rekeyed(name, "recorded", entry.key)
    held = await coalitionkeys.seed(s, name)
    if held is None:
        raise VaultError(f"this device holds no coalition key for {escape(name)} (no box of it for you in the chain "
                         "yet): an NCC member whose device holds it runs `mvault coalition rekey "
                         f"{escape(name)}`")
    acts = _rekeys_pending(view, name, now)
    proposer, offered = "", list[Value]()
    if since is None:  # by hand: another NCC member's, the newest first; else ours waits
        theirs = sorted((act for act, (by, _, _) in acts.items() if by != me and "ncc" in view.org.roles_of(by, now)),
                        key=lambda act: -acts[act][2])
        mine = [act for act, (by, _, _) in acts.items() if by == me]  # made here: its seed is in our keystore
        order = theirs + mine
    else:  # the hook: the first fresh proposal (``_fresh``), whoever made it; none: ours, anew
        order = _fresh(view, name, now, since)
    first, made, warn = None, coalitionkeys.proposed(s, name), "ncc" in view.org.roles_of(me, now)
    for act in order:  # session 21, review 27: ours waits only if made here; another's is signed only after our own
        key, by = bytes.fromhex(act[2]), _named(view, *acts[act][:2])  # box in it opens to the key
        if acts[act][0] == me and key in made or acts[act][0] != me and await coalitionkeys.opens_offer(
                s, view, name, key):
            first = act
            break
        if warn and acts[act][0] == me:  # in our name, made on another device: no one could sign it with us
            s.session.warnings.append(
                f"a new coalition key {escape(name)} proposed in your name on {by} is not this device's: not waiting "
                "on it (if you did not make it there, that device is seized: revoke it)")
        elif warn:
            s.session.warnings.append(
                f"not signing the new coalition key {escape(name)} that {by} proposed: its box for you is missing or "
                "holds another key (a malicious proposer, or a server that swapped it): tell your Security Team")
    if first is not None and acts[first][0] == me:  # never a second key of ours meanwhile: the second NCC member's next
        return Rekeyed(name, "proposed", bytes.fromhex(first[2]), proposer=_named(view, *acts[first][:2]))
    if first is not None:  # a second NCC member: sign the new key another one proposed (their device holds its seed)
        new = bytes.fromhex(first[2])
        proposer = _named(view, *acts[first][:2])
    else:  # a proposal of ours older than ``since`` answers another question: a new key (its seed kept too)
        fresh = CoalitionKey.generate()
        coalitionkeys.keep_proposed(s, name, fresh.seed)  # kept before it is posted: never a key on record we lost
        new, offered = fresh.public, coalitionkeys.offer_boxes(view, fresh, name, now)
    statement = signed_statement(CoalitionKey(held), rekey_statement(view.org.root, new, now))
    body: dict[str, Value] = {"name": name, "key": new, "host": entry.host, "replaces": entry.key, "rekey": statement}
    if offered:  # the new key sealed to the NCC in the proposal: filed when a second NCC member records it (session
        body["boxes"] = offered  # 21, review 27)
    # dated no earlier than the staleness it answers (a revocation retried a second ahead, say): every other NCC
    # member's hook signs only a proposal made at or after it
    await s.chains.append_org("org.coalition", body, not_before=since or 0)
    recorded = (await s.chains.view()).org.coalitions[name]
    if recorded.key != new:
        return Rekeyed(name, "proposed", new)
    got = await coalitionkeys.seed(s, name)
    if got is None:  # not our seed, no box for us (a proposal of an older client)
        return Rekeyed(name, "signed", new, proposer=proposer)
    if proposer:  # session 21, review 28: the proposer's boxes for the others resealed by us (a wrong one replaced)
        await coalitionkeys.reseal_offered(s, name, got)
    await _follow(s, name)  # our box in the proposal, filed at the recording: held here, sealed to any NCC member left
    return Rekeyed(name, "signed" if proposer else "recorded", new, proposer=proposer)


async def _follow(s: Client, name: str) -> None:
    """The new key recorded and held here: sealed to the NCC as it stands; the host's own key carried into its space
    when this member is in it (else a member's next host statement there carries it: ``hostkey.carry_rekeys``)."""
    await coalitionkeys.share_missing(s)
    view = await s.chains.view()
    if view.org.coalitions[name].host != view.org.root:
        return
    for team in [t for t in view.teams.values() if t.name == name and t.host_key is not None]:
        await hostkey.carry_rekeys(s, team)


async def after_ncc_loss(s: Client) -> list[Rekeyed]:
    """Right after this member's act that took NCC from someone (``role revoke ... ncc``, ``remove`` of an NCC
    member) took effect: every coalition key the chain records, rekeyed (``rekey``)."""
    view, done = await s.chains.view(), []
    if "ncc" not in view.org.roles_of(s.session.me, s.session.now()):  # this member stepped down: the others rekey
        return [Rekeyed(name, "not held", note="you no longer hold NCC: another NCC member runs `mvault coalition "
                        f"rekey {escape(name)}`") for name in sorted(view.org.coalitions)]
    for name in sorted(view.org.coalitions):
        try:
            done.append(await rekey(s, name))
        except VaultError as e:  # one name's failure stops neither the others nor the command
            done.append(Rekeyed(name, "not held", note=str(e)))
    return done


def idle(s: Client, view: View) -> bool:
    """Whether ``when_stale`` has nothing to do by ``view`` (a view this command verified, the last link it appended
    perhaps missing from it): this member holds no NCC now, or no key the chain records is stale with no proposal of
    theirs pending, and no new key of theirs was recorded since. Decided without a request (session 19): most commands
    of most members end here, and one that appended a chain link (``team add``, ``invite``) fetches no chains again
    for it. A key this command's own link made stale, or a proposal of ours its link recorded, waits for the next
    command, whose view has that link (docs/lifecycle.md "The term's window")."""
    now, me = s.session.now(), s.session.me
    if "ncc" not in view.org.roles_of(me, now):
        return True
    stale, since = stale_keys(view.org, now, view.members), stale_since(view.org, now, view.members)
    return not any(_ours(s, view, name) or (name in stale and not _waits(s, view, name, now, since[name]))
                   for name in view.org.coalitions)


def _ours(s: Client, view: View, name: str) -> bool:
    """Whether the key the chain records for ``name`` is a new key this device proposed (``coalitionkeys.proposed``:
    recorded by a second member since, sealed by us next)."""
    return view.org.coalitions[name].key in coalitionkeys.proposed(s, name)


async def when_stale(s: Client, seen: View | None = None) -> list[str]:
    """After any command of an NCC member (client/cli/_common.py): each coalition key the chain says is stale
    (``security.stalekeys.stale_keys``: someone it was sealed to no longer holds NCC, e.g. their role ended
    by its term, which no command marks) and this device holds is rekeyed through ``rekey``'s two-person flow
    (proposed; another NCC member's next command records it; the proposer's next seals it), and a new key this device
    proposed, recorded since, is sealed to the NCC. A proposal of ours still pending is not made again unless it is
    older than the staleness (``_fresh``: then a new one, session 20); a member without NCC or without the key does
    nothing. ``seen``: a view this command verified, the chains fetched only when
    it leaves something to do (``idle``). Returns one line per step taken (sanitized)."""
    if seen is not None and idle(s, seen):
        return []
    view, now, notes = await s.chains.view(), s.session.now(), []
    if "ncc" not in view.org.roles_of(s.session.me, now):
        return []
    stale, since = stale_keys(view.org, now, view.members), stale_since(view.org, now, view.members)
    for name in sorted(view.org.coalitions):
        ours = _ours(s, view, name)
        if not ours and (name not in stale or _waits(s, view, name, now, since[name])):
            continue
        try:
            if not ours and await coalitionkeys.seed_or_warn(s, name) is None:
                if not coalitionkeys.held_by_ncc(view, name, now):  # session 21, review 27: never silently
                    s.session.warnings.append(
                        f"coalition key {escape(name)} must be replaced, and no NCC member holds a box of it in the "
                        "chain: only the device that made it can (if it is lost, or its member left the NCC, no one "
                        "can: a rekey is signed with the current key): tell your Security Team")
                continue  # not held here: an NCC member whose device holds it does it
            r = await rekey(s, name, None if ours else since[name])
        except VaultError as e:  # one name's failure stops neither the others nor the command
            s.session.warnings.append(f"coalition key {escape(name)} not replaced: {e}")
            continue
        why = "" if ours else "; it was sealed to " + ", ".join(escape(view.name_of(m)) for m in stale[name]) + \
            ", who no longer hold(s) NCC or lost a device since"
        notes.append(describe(r) + why)
        view = await s.chains.view()
    return notes


def _rekeys_pending(view: View, name: str, now: int) -> dict[tuple[str, ...], tuple[str, str, int]]:
    """The rekeys of the key recorded for ``name`` waiting at ``now`` (act -> (proposer, device, time)): none of a
    device revoked or cut (``OrgState.pending``, the judge's rule), and none that also names another host (session
    21: the act holds the host, and ``rekey`` signs the one recorded: such a proposal is no rekey it can sign, and the
    hooks waited on it for good), and none whose boxes (``coalitionkeys.covers``) leave out a member sealed to now
    (session 21, review 27: the second signature must put in force a key the NCC holds)."""
    entry = view.org.coalitions[name]
    key, host = entry.key.hex(), entry.host.hex() if entry.host is not None else ""
    return {act: v for act, v in view.org.pending(view.members, now).items()
            if act[:2] == ("org.coalition", name) and len(act) == 5 and act[3] == host and act[4] == key
            and coalitionkeys.covers(view, bytes.fromhex(act[2]), now)}


def _fresh(view: View, name: str, now: int, since: int) -> list[tuple[str, ...]]:
    """The rekeys of ``name`` every NCC member's hook weighs, in order (session 20, review 24): of the pending ones
    made by an NCC member at or after the key went stale (``since``: an older one answers another question, or is a
    thief's), the earliest first (by time, then proposer: the same for every reader of the chain). The first one this
    device made waits, the first another member made whose box for us opens (session 21) is signed (``rekey``); none:
    the hook proposes a new key, dated at or after ``since``, so two members' hooks never each wait on their own for
    good, and never propose again in turn (a new proposal is fresh until a new reason comes)."""
    acts = _rekeys_pending(view, name, now)
    fresh = [act for act, (by, _, when) in acts.items() if when >= since and "ncc" in view.org.roles_of(by, now)]
    return sorted(fresh, key=lambda act: (acts[act][2], acts[act][0], act))


def _waits(s: Client, view: View, name: str, now: int, since: int) -> bool:
    """Whether the hook has nothing to do for ``name``, decided without a request: the first of ``_fresh`` not in
    our name made on another device is a proposal this device made (its seed in our keystore), waiting for a second
    NCC member's signature. Another member's first: ``rekey`` decides (their box for us must open)."""
    acts, made = _rekeys_pending(view, name, now), coalitionkeys.proposed(s, name)
    for act in _fresh(view, name, now, since):
        if acts[act][0] != s.session.me:
            return False
        if bytes.fromhex(act[2]) in made:
            return True
    return False


def _named(view: View, member: str, device: str) -> str:
    """A proposer as the member reads it: name and device name (escaped: both are their owner's choice)."""
    ms = view.members.get(member)
    d = ms.devices.get(device) if ms is not None else None
    return f"{escape(view.name_of(member))} (device {escape(d.name if d is not None else device[:8])})"


def describe(r: Rekeyed) -> str:
    """One line for the member (names are ours: escaped all the same)."""
    name = escape(r.name)
    by_ = f"its proposer, {r.proposer}" if r.proposer else "the NCC member who proposed it"
    return {
        "recorded": f"coalition key {name}: replaced and sealed to the NCC; guests carry it to the host's space at "
                    "their next contact",
        "signed": f"coalition key {name}: replaced (your signature recorded it); sealed to the NCC in the proposal "
                  f"by {by_}",
        "proposed": f"coalition key {name}: new key proposed{' by ' + r.proposer if r.proposer else ''}; a second "
                    f"NCC member runs `mvault coalition rekey {name}` (rule two-person)",
    }.get(r.state, f"coalition key {name}: NOT replaced: {r.note}")


async def carry_ally(guest: Client, own: View, before: Callable[[], Awaitable[list[str]]]) -> list[str]:
    """A guest of the space ``guest`` reaches: our organization's (``own``) rekeys of the key the space pins for it,
    each carried as a ``coalition.rekey`` team link, one at a time and in their order; ``before`` runs before each
    (the expulsions signed with the key the space pins still: after the rekey it signs nothing there). Stops
    (``ServerMismatch``, exit 3) where the space pins for us a key our chain never recorded, or froze us."""
    done: list[str] = []
    root = own.org.root
    retired = [r for rs in own.org.coalitions_retired.values() for r in rs]
    for _ in range(MAX_STEPS):
        team = next(iter((await guest.chains.view()).teams.values()))
        ally = team.allies.get(root)
        if ally is None:
            return done
        step = next((r for r in retired if r.entry.key == ally.key), None)
        _check_pin(team.name, ally.key, ally.frozen, step, own)
        if step is None:
            return done
        done += await before()
        team = next(iter((await guest.chains.view(refresh=True)).teams.values()))
        if team.allies[root].key != step.entry.key:
            continue  # carried meanwhile (another guest)
        carried = step.rekey if isinstance(step.rekey, dict) else {}
        try:
            await guest.chains.append_team(team, "coalition.rekey", {"statement": carried.get("statement"),
                                                                      "sig": carried.get("sig")})
        except Conflict:
            continue  # the space moved on: look again
        team = next(iter((await guest.chains.view(refresh=True)).teams.values()))
        if team.allies[root].key == step.entry.key:
            raise ServerMismatch(f"the host's server accepted your organization's rekey of its coalition key for "
                                 f"coalition space {escape(team.name)} but still serves the old key: stop and tell "
                                 "your Security Team")
        done.append(f"carried your organization's new coalition key to coalition space {escape(team.name)}")
    return done


def _check_pin(space: str, key: bytes, frozen: bool, step: Retired | None, own: View) -> None:
    """The key the space pins for our organization is one our chain recorded (in force, or retired: carried next)."""
    if frozen:
        raise ServerMismatch(f"coalition space {escape(space)} froze your organization: two different rekeys of one "
                             "of its coalition keys reached it (a departed NCC member's old key racing the NCC): none "
                             "of its approvals or removals counts there until the host's NCC pins it again from a "
                             "pairing code given in person: stop and tell your Security Team")
    if step is None and key not in {e.key for e in own.org.coalitions.values()}:
        raise ServerMismatch(f"coalition space {escape(space)} holds for your organization a coalition key its chain "
                             "never recorded (a rival rekey, signed with a key your NCC retired, was carried there "
                             "first): your organization's approvals and removals are refused there; stop and tell your "
                             "Security Team (the host's NCC pins it again from a pairing code given in person)")
