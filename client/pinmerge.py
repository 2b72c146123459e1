"""How two states of one home's pins become one (``Home.save_pins``, under the pins lock; review round 21).

Several commands of one member run at once (``sync --watch`` beside any command, two terminals) and each reads
``pins.bin``, waits on the server, and saves. A save is a merge into the file as it is now, never a write of what
the command read before: per entry the further state wins, and two states neither of which is further are a fork
(the command stops with the rollback or log error, choosing neither).

- ``chains`` (chain id -> [seq, head]) and ``docs`` (team/doc -> [seq, vid, "deleted"?]): the higher seq; the same
  seq with another head or version is a fork (``RollbackDetected``). A pin only one side holds is kept (a chain or
  document is unpinned only by an explicit lowering: ``lowered``).
- ``log``: the larger checkpoint (size); the same size with another root, or another checkpoint-signing key, is a
  fork (``LogInconsistent``). ``witness_size``, ``outside_size``, ``attested``, ``time`` and ``seen_at`` are lower
  bounds the device checks against: the larger of the two. ``anchors`` ([size, time] pairs: this device saw the log
  at that size at that time of its own clock, so every leaf at or after the size is younger; session 24, review 34)
  is a union, whatever else wins, a restore acceptance or a lowering of the log included: per UTC day the pair of
  the smallest size, days more than ``ANCHOR_DAYS`` before the newest dropped (``anchors_merged``).
- A restore acceptance (review round 23): when the file followed one (a longer ``restored`` list) that the saving
  command's read predates, the file's log stays and the saving command keeps, per entry (the further wins), only
  the chains and documents it changed since its read, except those the acceptance's records name as lost
  (``lost.chains``/``lost.docs``): those stay lowered, and the unchanged entries are the state the acceptance
  replaced. Without a known read (pins not read from the file) the file's side wins whole, as does the saving
  side when it is the one with the longer list (``lower_pins(log=True)`` makes the lists equal, so a restoring
  command's own save is merged per entry).
- ``keys`` (fingerprint last seen) and ``verified`` (verified in person): never dropped; where both hold one for a
  member, the saving command's only if it changed it since its read (a stale save does not revert what another
  command saw or confirmed meanwhile).
- ``signers`` (who may sign a restore acceptance) with ``signers_at`` (member -> [org seq, that member's chain seq]:
  the chain positions its list was computed at, by ``Chains.view``; review round 25): per member, the side whose
  positions are at least the other's wins (a list computed from older chain state never replaces one computed from
  newer), the saving command's at the same positions if it holds them; when neither dominates, only the devices
  both list, at the larger of each position (fail closed). A side that does not list a member is at its own chain
  pins (``chains["org"]``, ``chains[member]``), and so is a list without positions (pins older versions wrote,
  pins made otherwise): two such lists at the same pins keep only the devices both list. Whatever wins, no stored
  position is above the merged chain pin it names (a lowering, after a restore acceptance, lowers them too).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vault.errors import LogInconsistent, RollbackDetected

Value = dict[str, Any]  # a pins file's value: table name -> table (client/home.py ``Pins``)
LOG_BOUNDS = ("witness_size", "outside_size", "attested", "time", "seen_at")
DAY = 86400
ANCHOR_DAYS = 3652  # the longest retention the protocols allow (3650 days) and the check's margin


def anchors_merged(*sides: Iterable[Any]) -> list[list[int]]:
    """The log anchors of every side as one list ([size, time], oldest first): per UTC day (of the time) the pair of
    the smallest size (the one that bounds the most leaves; the same day is one judgement), days more than
    ``ANCHOR_DAYS`` before the newest dropped (no retention reaches them). A union: commutative, idempotent, and no
    side's anchor of a kept day is lost except to one that bounds more."""
    best: dict[int, tuple[int, int]] = {}
    for side in sides:
        for pair in side:
            size, t = int(pair[0]), int(pair[1])
            day = t // DAY
            if day not in best or (size, t) < best[day]:
                best[day] = size, t
    newest = max(best, default=0)
    return [[size, t] for day, (size, t) in sorted(best.items()) if day >= newest - ANCHOR_DAYS]


def merged(disk: Value | None, mine: Value, read: Value | None = None) -> Value:
    """``mine`` (what a command saves) merged into ``disk`` (the file as it is now, None if there is none): a new
    value, no argument changed. ``read``: the file's value the command read ``mine`` from (None if unknown: every
    entry of ``mine`` then counts as changed by it). ``RollbackDetected``/``LogInconsistent`` on a fork. The log
    anchors of both sides are kept whichever side's log wins (``anchors_merged``)."""
    out = _merged(disk, mine, read)
    found = [side["log"]["anchors"] for side in (disk, mine) if side is not None and "anchors" in side["log"]]
    if found:
        out["log"] = {**out["log"], "anchors": anchors_merged(*found)}
    return out


def _merged(disk: Value | None, mine: Value, read: Value | None = None) -> Value:
    """``merged`` but for the log anchors."""
    if disk is None:
        return {**{name: dict(table) for name, table in mine.items()}, **_signers(mine, mine, mine["chains"])}
    people = {name: _people(disk[name], mine[name], None if read is None else read.get(name, {}))
              for name in ("keys", "verified")}
    d_epoch, m_epoch = _epoch(disk), _epoch(mine)
    if m_epoch > d_epoch or (d_epoch > m_epoch and read is None):
        newer = disk if d_epoch > m_epoch else mine
        return {**{name: dict(table) for name, table in newer.items()}, **people,
                **_signers(newer, newer, newer["chains"])}
    if d_epoch > m_epoch:  # mine read before an acceptance another command followed: its own changes, not the lost
        assert read is not None
        lost: dict[str, set[str]] = {"chains": set(), "docs": set()}
        for record in disk["log"]["restored"][m_epoch:]:
            for name in lost:
                lost[name].update(record.get("lost", {}).get(name, {}))
        tables = {name: _furthest(disk[name], _changed(mine[name], read.get(name, {}), lost[name]), what)
                  for name, what in (("chains", "chain"), ("docs", "document"))}
        return {**tables, **people, "log": dict(disk["log"]), **_signers(disk, mine, tables["chains"])}
    chains = _furthest(disk["chains"], mine["chains"], "chain")
    return {"chains": chains, "docs": _furthest(disk["docs"], mine["docs"], "document"),
            **people, "log": _log(disk["log"], mine["log"]), **_signers(disk, mine, chains)}


def lowered(disk: Value | None, mine: Value, chains: Iterable[str] = (), docs: Iterable[str] = (),
            log: bool = False, read: Value | None = None) -> Value:
    """``merged``, except that the chains and documents named (and the log, if ``log``) are ``mine``'s as they are,
    lower or absent included: a deliberate lowering (a restore acceptance followed, a command stopped for a rollback
    putting back the log pin it moved, a member dropping a pin), which keeps every other entry's newer state."""
    if disk is None:
        return merged(None, mine)
    base = {name: dict(table) for name, table in disk.items()}
    for chain in chains:
        base["chains"].pop(chain, None)
    for doc in docs:
        base["docs"].pop(doc, None)
    if log:  # mine's log as it is, but not fewer anchors (a union: they only make the pruning check stricter)
        base["log"] = {**mine["log"], "anchors": anchors_merged(disk["log"].get("anchors", []),
                                                                mine["log"].get("anchors", []))}
    return merged(base, mine, read)


def _changed(mine: dict[str, Any], read: dict[str, Any], lost: set[str]) -> dict[str, Any]:
    """The entries of ``mine`` its command changed since its ``read`` (unchanged ones are the state the acceptance
    replaced), without those the acceptance names as lost."""
    return {key: pin for key, pin in mine.items()
            if key not in lost and (key not in read or (read[key] is not pin and read[key] != pin))}


def _people(disk: dict[str, str], mine: dict[str, str], read: dict[str, str] | None) -> dict[str, str]:
    """Never dropped; where both hold one, the saving command's only if it changed (or first set) it since its read:
    what another command saw or confirmed meanwhile is not reverted by a stale save."""
    out = dict(disk)
    for member, value in mine.items():
        if member not in out or read is None or read.get(member) != value:
            out[member] = value
    return out


def _signers(disk: Value, mine: Value, chains: dict[str, list[Any]]) -> dict[str, Any]:
    """``signers`` and ``signers_at`` merged (member -> devices, member -> [org seq, member chain seq]), the
    positions kept no higher than ``chains`` (the merged chain pins). A device one side dropped (a revocation, a
    removal, seen on a member or the org chain) must not come back because the other side, computed at older chain
    state, still lists it: equality with what a command read is no evidence that nothing changed (A -> B -> A)."""
    out: dict[str, list[str]] = {}
    at: dict[str, list[int]] = {}
    d_list, m_list = disk["signers"], mine["signers"]
    for member in sorted({*d_list, *m_list}):
        (dv, dp, _), (mv, mp, m_known) = _entry(disk, member), _entry(mine, member)
        if _covers(mp, dp) and (m_known or mp != dp):  # mine computed at least as far: mine (the same: mine)
            devices, pos = mv, mp
        elif _covers(dp, mp) and dp != mp:
            devices, pos = dv, dp
        else:  # neither computed at the other's positions (or two lists of unknown positions): fail closed
            devices = [x for x in mv if x in dv]
            pos = [max(dp[0], mp[0]), max(dp[1], mp[1])]
        if devices:
            out[member] = list(devices)
            at[member] = [min(pos[0], _seq(chains, "org")), min(pos[1], _seq(chains, member))]
    return {"signers": out, "signers_at": at}


def _entry(side: Value, member: str) -> tuple[list[str], list[int], bool]:
    """(devices, [org seq, member chain seq] they were computed at, whether those are the stored positions) of
    ``member`` on one side. Not listed, or listed without positions: the side's own chain pins (as far as it may
    have seen: a list dropped there is dropped up to them; a list of unknown positions dominates only a side whose
    pins are lower)."""
    devices = side["signers"].get(member)
    stored = side.get("signers_at", {}).get(member)
    if devices and isinstance(stored, list) and len(stored) == 2:
        return list(devices), [int(stored[0]), int(stored[1])], True
    return list(devices or []), [_seq(side["chains"], "org"), _seq(side["chains"], member)], False


def _covers(a: list[int], b: list[int]) -> bool:
    return a[0] >= b[0] and a[1] >= b[1]


def _seq(chains: dict[str, list[Any]], chain: str) -> int:
    pin = chains.get(chain)
    return 0 if pin is None else int(pin[0])


def _epoch(value: Value) -> int:
    return len(value["log"].get("restored", []))


def _furthest(disk: dict[str, list[Any]], mine: dict[str, list[Any]], what: str) -> dict[str, list[Any]]:
    out = dict(disk)
    for key, pin in mine.items():
        old = out.get(key)
        if old is pin:  # the same entry as read (``Home`` shares unchanged entries): nothing to compare
            continue
        if old is None or int(pin[0]) > int(old[0]):
            out[key] = pin
        elif int(pin[0]) == int(old[0]) and str(pin[1]) != str(old[1]):
            raise RollbackDetected(f"two commands of this device were shown two different histories of a {what} "
                                   f"({key[:40]}, both at {int(pin[0])}): the server forked it; stop and tell "
                                   "your Security Team")
    return out


def _log(disk: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    if not disk.get("root") or not mine.get("root"):
        out = dict(mine if mine.get("root") else disk)
    else:
        if disk.get("log_key") != mine.get("log_key"):
            raise LogInconsistent("two commands of this device were shown audit logs signed by different keys")
        d_size, m_size = int(disk["size"]), int(mine["size"])
        if d_size == m_size and disk["root"] != mine["root"]:
            raise LogInconsistent("two commands of this device were shown two different audit logs of the same "
                                  "size (a fork)")
        out = dict(mine if m_size >= d_size else disk)
    for name in LOG_BOUNDS:
        if name in disk or name in mine:
            out[name] = max(int(disk.get(name, 0)), int(mine.get(name, 0)))
    return out
