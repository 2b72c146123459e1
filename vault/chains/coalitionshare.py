"""The organization's coalition keys in its own chain (docs/lifecycle.md section 2): ``org.coalition`` records one
for a space, ``org.coalition.share`` seals its seed to NCC members (``vault.coalitionkeys``).

``org.coalition.share`` (action ``org.coalition.share``, NCC): ``{"name", "key", "boxes": [{"member", "puk_gen",
"box"}]}``. ``key`` must be the key recorded for ``name`` at the link's time; each box is for a member who holds NCC
then, once per member in a link. A later box for the same member replaces the earlier one (a new PUK generation).
The chain cannot look inside a box: its recipient checks it on opening (``open_coalition_box``).

A rekey proposal carries the new key's seed sealed to the NCC (session 21, review 27): ``org.coalition`` with
``replaces`` may carry ``boxes`` in the same form as a share's (each for a member holding NCC at the link's time,
once per member), bound to the NEW key. They wait in ``OrgState.coalition_offers`` (new key -> member -> box, the
first link's box for a member kept) and are filed as that key's shares when a link records it, for the members who
hold NCC at the recording. The chain cannot look inside them either: the clients sign a proposal only after opening
their own box in it to the proposed key (client/coalitionrekey.py), so every recording leaves its recorder holding
the key. A proposal without boxes stays valid on the chain (old chains replay): no client signs it.

``OrgState.coalition_signers`` keeps who signed an ``org.coalition`` naming each key, and when first:
``security.stalekeys`` judges from it (and the boxes' links) which keys to replace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from vault.chains.coalition import CoalitionEntry, check_rekey, coalition_act, parse_org_coalition
from vault.encoding import Fields, Value
from vault.errors import ChainError
from vault.links import Link

MAX_SHARES: Final = 64  # boxes in one org.coalition.share (the NCC is a handful of people)
MAX_BOX_BYTES: Final = 512


@dataclass(frozen=True)
class Share:
    """An NCC member's box of a coalition key's seed, as an ``org.coalition.share`` filed it."""

    key: bytes
    puk_gen: int
    box: bytes
    seq: int
    by: str
    first: int = 0  # the seq of the member's first box of this key (a later box replaces it; a device could open both)


@dataclass(frozen=True)
class Retired:
    """A coalition key an ``org.coalition`` with ``replaces`` retired: no act of ours is signed with it from ``seq``."""

    entry: CoalitionEntry  # the key as it was recorded
    seq: int  # the org.coalition link that replaced it
    rekey: Value = None  # that link's ``rekey`` ({statement, sig}, checked): what the guests carry to the host's space


@dataclass
class Offers:
    """Where ``record_coalition`` keeps and files a rekey's boxes: ``offers`` (new key -> member -> box, waiting),
    ``shares`` (``OrgState.coalition_shares``), ``holds_ncc`` (a member holds NCC at the link's time)."""

    offers: dict[bytes, dict[str, Share]]
    shares: dict[str, dict[str, Share]]
    holds_ncc: Callable[[str], bool]


def record_coalition(coalitions: dict[str, CoalitionEntry], proposals: dict[tuple[str, ...], tuple[str, int]],
                     link: Link, second_person: Callable[[tuple[str, ...]], bool],
                     retired: dict[str, list[Retired]], root: bytes,
                     signers: dict[bytes, dict[str, int]], boxes: Offers) -> None:
    """``org.coalition`` (already judged): record the key, or only propose it (``second_person``: rule two-person).
    With ``replaces`` (the key recorded for the name now) and ``rekey`` (a ``coalition.rekey`` statement of this
    organization, ``root``, to the new key, signed with the old one): the new key replaces it, which is retired.
    ``signers``: every signer of a link naming a key, proposal or not (``holders``: the chain cannot tell whose device
    made its seed; a re-proposal by another member keeps the first proposer's seed), with the time of their first.
    ``boxes``: a rekey's ``boxes`` (module doc) kept as offers, filed as shares when the key is recorded."""
    entry = parse_org_coalition(link)
    replaces, rekey = link.body.opt_bytes("replaces", 32), link.body.raw.get("rekey")
    old = coalitions.get(entry.name)
    used = {c.key for c in coalitions.values()} | {r.entry.key for rs in retired.values() for r in rs}
    if entry.key in used:
        raise ChainError("org.coalition: that coalition key is (or was) already recorded")
    act = coalition_act(entry)
    if replaces is None:
        if old is not None or rekey is not None:
            raise ChainError(f"org.coalition: a coalition key for {entry.name!r} is already recorded (a new one "
                             "names the key it replaces and carries the rekey statement), or a rekey replaces nothing")
    else:
        if old is None or old.key != replaces:
            raise ChainError(f"org.coalition: replaces is not the coalition key recorded for {entry.name!r}")
        check_rekey(rekey, root, entry.key, replaces)
        act += (replaces.hex(),)  # each signer's rekey statement is its own: the act is old key -> new key
    raw = link.body.raw.get("boxes")
    if raw is not None and replaces is None:
        raise ChainError("org.coalition: boxes travel with a rekey only (replaces)")
    offered = parse_boxes(raw, entry.key, link, boxes.holds_ncc, "org.coalition") if raw is not None else {}
    recorded = second_person(act)
    signers.setdefault(entry.key, {}).setdefault(link.signer, link.time)
    for member, share in offered.items():  # the first box offered for a member stays (the one a signer opened)
        boxes.offers.setdefault(entry.key, {}).setdefault(member, share)
    if not recorded:
        return  # proposed: the same link by a second NCC member records it (rule two-person)
    if old is not None:
        retired.setdefault(entry.name, []).append(Retired(old, link.seq, rekey))
    coalitions[entry.name] = entry
    for act in [act for act in proposals if act[:2] == ("org.coalition", entry.name)]:
        del proposals[act]  # recorded: other keys proposed for the name are void
        boxes.offers.pop(bytes.fromhex(act[2]), None)
    filed = {m: share for m, share in boxes.offers.pop(entry.key, {}).items() if boxes.holds_ncc(m)}
    if filed:  # the recorded key's boxes: filed for the members holding NCC now
        boxes.shares.setdefault(entry.name, {}).update(filed)


def parse_boxes(raw: Value, key: bytes, link: Link, holds_ncc: Callable[[str], bool], what: str,
                earlier: dict[str, Share] | None = None) -> dict[str, Share]:
    """The boxes of ``key`` a link carries (``org.coalition.share``, or an ``org.coalition`` rekey's): 1 to
    ``MAX_SHARES``, once per member, each for a member holding NCC at the link's time. ``earlier``: the boxes filed
    for the name (a member's first box of the same key keeps its ``first``)."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SHARES:
        raise ChainError(f"{what}: boxes must be a list of 1 to {MAX_SHARES}")
    filed: dict[str, Share] = {}
    for item in raw:
        f = Fields(item, f"{what} box", {"member", "puk_gen", "box"})
        member = f.str_("member", 64)
        if member in filed:
            raise ChainError(f"{what}: two boxes for one member")
        if not holds_ncc(member):
            raise ChainError(f"{what}: {member} does not hold NCC: a coalition key is the NCC's")
        before = (earlier or {}).get(member)
        first = before.first if before is not None and before.key == key else link.seq
        filed[member] = Share(key, f.int_("puk_gen", 1), f.bytes_("box", max_size=MAX_BOX_BYTES), link.seq,
                              link.signer, first)
    return filed


def apply_share(shares: dict[str, dict[str, Share]], coalitions: dict[str, CoalitionEntry], link: Link,
                holds_ncc: Callable[[str], bool]) -> None:
    """``org.coalition.share`` (already judged): file each box under its member for the recorded key."""
    b = link.body
    name, key = b.str_("name", 64), b.bytes_("key", 32)
    entry = coalitions.get(name)
    if entry is None or entry.key != key:
        raise ChainError(f"org.coalition.share: no coalition key recorded for {name!r} is the key shared")
    filed = parse_boxes(b.raw.get("boxes"), key, link, holds_ncc, "org.coalition.share", shares.get(name))
    shares.setdefault(name, {}).update(filed)

