"""The coalition key's rotation when a member leaves the NCC (issue 20; docs/lifecycle.md "Every NCC member holds the
coalition key", steps 1-3), the clients' side. The chain side is ``vault.chains.coalitionshare.record_coalition`` (the
organization's own chain) and ``vault.chains.coalition.apply_rekey`` / ``vault.chains.coalitionspace.rekey`` (the
host's space).

- ``rekey`` (``mvault coalition rekey NAME``, and in the same command as ``role revoke MEMBER ncc`` or ``remove`` of an
  NCC member, ``after_ncc_loss``): an NCC member's device holding the key recorded for ``NAME`` makes a new key (its
  seed kept in the keystore, beside the current one, before anything is posted), signs the ``coalition.rekey``
  statement with the current key and posts ``org.coalition {name, key, host, replaces, rekey}``. With another NCC
  member this only proposes it (rule two-person); the same command by a second NCC member signs the proposed new key
  with the old key (its own statement) and records it. The device holding the new seed then seals it to the NCC as it
  stands (``org.coalition.share``): at once when it records it, else at its next ``coalition rekey NAME`` (or any
  command that seals keys). A departed member's signature never counts: the judge takes only NCC members' at the
  link's time, and ``share_missing`` seals only to members holding NCC now. For the host's own key (``host`` = our
  root) the device then carries the rekey into the space (``hostkey.carry_rekeys``) when it is a member of it.
- ``when_stale`` (after every command of the organization, session 18): a key ``security.stalekeys`` calls stale
  (someone it was sealed to, or who signed it, no longer holds NCC: above all a term's end, which no command marks)
  goes through ``rekey`` on an NCC key holder's next command; the two-person steps on the following ones.
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
from security.stalekeys import stale_keys
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement
from vault.chains.coalitionshare import Retired
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


async def rekey(s: Client, name: str) -> Rekeyed:
    """Replace the coalition key recorded for ``name`` (module doc)."""
    view = await s.chains.view()
    entry = view.org.coalitions.get(name)
    if entry is None:
        raise NotFound(f"this organization's chain records no coalition key named {escape(name)!r}")
    slot, me, now = coalitionkeys.next_slot(name), s.session.me, s.session.now()
    made = s.session.secrets.coalitions.get(slot)
    if made is not None and CoalitionKey(made).public == entry.key:  # our proposal, recorded by a second member
        await coalitionkeys.seed(s, name)  # adopted as the key for the name (the old seed forgotten)
        await _follow(s, name)
        return Rekeyed(name, "recorded", entry.key)
    held = await coalitionkeys.seed(s, name)
    if held is None:
        raise VaultError(f"this device holds no coalition key for {escape(name)} (no box of it for you in the chain "
                         "yet): an NCC member whose device holds it runs `mvault coalition rekey "
                         f"{escape(name)}`")
    acts = {act: by for act, (by, _) in view.org.role_proposals.items()
            if act[:2] == ("org.coalition", name) and len(act) == 5 and act[4] == entry.key.hex()}
    theirs = [act for act, by in acts.items() if by != me and "ncc" in view.org.roles_of(by, now)]
    mine = [act for act, by in acts.items() if by == me]
    if theirs:  # a second NCC member: sign the new key another one proposed (their device holds its seed)
        new = bytes.fromhex(theirs[0][2])
    elif mine:
        return Rekeyed(name, "proposed", bytes.fromhex(mine[0][2]))
    else:
        fresh = CoalitionKey.generate()
        s.session.secrets.coalitions[slot] = fresh.seed
        s.session.home.save_secrets(s.session.secrets)  # kept before it is posted: never a key on record we lost
        new = fresh.public
    statement = signed_statement(CoalitionKey(held), rekey_statement(view.org.root, new, now))
    await s.chains.append_org("org.coalition", {"name": name, "key": new, "host": entry.host,
                                                "replaces": entry.key, "rekey": statement})
    recorded = (await s.chains.view()).org.coalitions[name]
    if recorded.key != new:
        return Rekeyed(name, "proposed", new)
    if await coalitionkeys.seed(s, name) is None:  # not our seed, and no box for us yet: its maker seals it
        return Rekeyed(name, "signed", new)
    await _follow(s, name)
    return Rekeyed(name, "recorded", new)


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


async def when_stale(s: Client) -> list[str]:
    """After any command of an NCC member (client/cli/_common.py): each coalition key the chain says is stale
    (``security.stalekeys.stale_keys``: someone it was sealed to no longer holds NCC, e.g. their role ended
    by its term, which no command marks) and this device holds is rekeyed through ``rekey``'s two-person flow
    (proposed; another NCC member's next command records it; the proposer's next seals it), and a new key this device
    proposed, recorded since, is sealed to the NCC. A proposal of ours still pending is not made again; a member
    without NCC or without the key does nothing. Returns one line per step taken (sanitized)."""
    view, now, notes = await s.chains.view(), s.session.now(), []
    if "ncc" not in view.org.roles_of(s.session.me, now):
        return []
    stale = stale_keys(view.org, now)
    for name in sorted(view.org.coalitions):
        made = s.session.secrets.coalitions.get(coalitionkeys.next_slot(name))
        ours = made is not None and CoalitionKey(made).public == view.org.coalitions[name].key
        if not ours and (name not in stale or _proposed_by(view, name, s.session.me)):
            continue
        try:
            if not ours and await coalitionkeys.seed(s, name) is None:
                continue  # not held here: an NCC member whose device holds it does it
            r = await rekey(s, name)
        except VaultError as e:  # one name's failure stops neither the others nor the command
            s.session.warnings.append(f"coalition key {escape(name)} not replaced: {e}")
            continue
        why = "" if ours else "; it was sealed to " + ", ".join(escape(view.name_of(m)) for m in stale[name]) + \
            ", who no longer hold(s) NCC"
        notes.append(describe(r) + why)
        view = await s.chains.view()
    return notes


def _proposed_by(view: View, name: str, me: str) -> bool:
    """Whether ``me`` has a rekey of the key recorded for ``name`` pending (proposed, waiting for a second)."""
    key = view.org.coalitions[name].key.hex()
    return any(by == me and act[:2] == ("org.coalition", name) and len(act) == 5 and act[4] == key
               for act, (by, _) in view.org.role_proposals.items())


def describe(r: Rekeyed) -> str:
    """One line for the member (names are ours: escaped all the same)."""
    name = escape(r.name)
    return {
        "recorded": f"coalition key {name}: replaced and sealed to the NCC; guests carry it to the host's space at "
                    "their next contact",
        "signed": f"coalition key {name}: replaced (your signature recorded it); the NCC member who proposed it "
                  f"seals it to the NCC with `mvault coalition rekey {name}`",
        "proposed": f"coalition key {name}: new key proposed; a second NCC member runs `mvault coalition rekey "
                    f"{name}` (rule two-person)",
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
