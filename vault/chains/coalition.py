"""Coalition spaces (docs/lifecycle.md section 2): the acts that let members of an allied organization into a
team of kind ``coalition`` on the host organization's server, each organization approving its own members.

- ``org.coalition`` (the ally's organization chain, NCC): records the ally's **coalition key** for one space,
  so the ally's own members can check, from their chain, that the key the host pinned is their NCC's.
- ``coalition.ally`` (the space's team chain, the host's NCC): pins an allied organization by its root and its
  coalition key. Nothing else makes an organization an ally: a server that invents one is refused.
- ``coalition.admit``: not a link but a **statement** signed with the ally's coalition key (``SIG_COALITION``),
  naming the space, the ally, the member, the role and its end. A space admin's ``team.add`` of an ally's
  member must carry one (``approval``), from an ally pinned in the chain, used once.
- ``coalition.remove`` (the space's team chain): removes a member. Signed by a space admin (the host's side),
  or, for an ally's member, by any member of the space carrying the ally's ``coalition.remove`` statement
  signed with its coalition key (the ally's side; also what the ally sends when it expels the member from
  its own organization). Like every removal, a key holder rotates the key in the same link.
- ``coalition.expel``: a statement signed with the ally's coalition key that the member is no longer the ally's
  member (expelled, or left): valid in every space that pins that key, where it removes that ally's guest as its
  ``coalition.remove`` does. The ally's NCC's client signs one per coalition key it holds and records them in the
  ally's own ``org.remove`` (``coalition``), where the ally's other guests find them and carry them to the host
  (``client/expulsions.py``): nobody has to remember which spaces the member was in.

- the host's own **coalition key** (``host_key`` in the space's ``team.create``, recorded by the host's NCC as
  ``org.coalition`` with ``host`` its own root; docs/lifecycle.md "The host's members' entry, verifiable by a
  guest"): in such a space a host member's ``team.add`` and promotion to ``admin`` carry the host's
  ``coalition.admit`` signed with it (``ally`` = the host's root), and the host's removal of one of its members
  is a ``coalition.remove`` statement signed with it. So a guest's client, which never sees the host's chain,
  judges the host's members' entry as it judges an ally's.

A guest (an ally's member) is never a member of the host organization: the one judge gives them no
organization role (``GUEST_ROLE`` caps their team role) and takes their membership from the team chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from vault.acts import ALLOWANCE
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, Value, decode, encode
from vault.errors import ChainError, EncodingError, VaultError
from vault.links import Link

GUEST_ROLE: Final = "guest"  # the organization role a guest is judged with (security.policy caps its team role)
APPROVAL_SECONDS: Final = 14 * 86400  # a coalition.admit is usable this long after its time (and once)
STATEMENTS: Final = ("coalition.admit", "coalition.remove", "coalition.expel")
_FIELDS: Final = {"coalition.admit": {"v", "type", "space", "ally", "member", "role", "until", "time"},
                  "coalition.remove": {"v", "type", "space", "ally", "member", "time"},
                  "coalition.expel": {"v", "type", "ally", "member", "time"}}
MAX_EXPELS: Final = 64  # coalition.expel statements an org.remove carries (one per coalition key of the organization)


@dataclass(frozen=True)
class CoalitionKey:
    """An organization's coalition key for one space: an Ed25519 key of its own (never a device key)."""

    seed: bytes

    @classmethod
    def generate(cls) -> CoalitionKey:
        return cls(p.random_bytes(32))

    @property
    def public(self) -> bytes:
        return p.sign_keypair(self.seed)[0]

    def sign(self, statement: bytes) -> bytes:
        return p.sign(p.sign_keypair(self.seed)[1], labels.SIG_COALITION, statement)


@dataclass(frozen=True)
class Ally:
    """An allied organization pinned in a space's chain by a ``coalition.ally`` link."""

    org_root: bytes
    key: bytes
    name: str
    seq: int  # the team link that pinned it
    by: str  # the host NCC member who signed it
    frozen: bool = False  # two different rekeys of one of its keys: none of its keys counts until re-pinned


@dataclass(frozen=True)
class Guest:
    """A member of an ally in the space: which ally approved them, with which statement (its hash)."""

    member: str
    ally: bytes
    approval: bytes


def guest_org(allies: Mapping[bytes, Ally], guests: Mapping[str, Guest], member_id: str) -> str | None:
    """The allied organization of a guest of a space, by the name its ``coalition.ally`` pin gives (the start of
    its root if no longer pinned); None for a member who is no guest there. Shown beside a guest's name wherever
    it is printed (NAME@ORG): a guest's name is its owner's choice and may mimic a host member's."""
    g = guests.get(member_id)
    if g is None:
        return None
    ally = allies.get(g.ally)
    return ally.name if ally is not None else g.ally.hex()[:16]


@dataclass(frozen=True)
class Statement:
    """A verified ``coalition.admit`` or ``coalition.remove`` statement."""

    type: str
    space: str
    ally: bytes
    member: str
    time: int
    role: str | None
    until: int | None
    hash: bytes


@dataclass(frozen=True)
class CoalitionEntry:
    """An ``org.coalition`` link of the ally's own chain: its coalition key for a space (by name)."""

    name: str
    key: bytes
    host: bytes | None  # the host organization's root, when known at the time
    seq: int
    by: str


def admit_statement(space: str, ally: bytes, member: str, role: str, until: int | None, time: int) -> bytes:
    return encode({"v": 1, "type": "coalition.admit", "space": space, "ally": ally, "member": member,
                   "role": role, "until": until, "time": time})


def remove_statement(space: str, ally: bytes, member: str, time: int) -> bytes:
    return encode({"v": 1, "type": "coalition.remove", "space": space, "ally": ally, "member": member,
                   "time": time})


def expel_statement(ally: bytes, member: str, time: int) -> bytes:
    """No space: the coalition key names its space, and an expelled member leaves every space that pins it."""
    return encode({"v": 1, "type": "coalition.expel", "ally": ally, "member": member, "time": time})


def signed_statement(key: CoalitionKey, statement: bytes) -> dict[str, Value]:
    """What a link carries (``approval`` of a ``team.add``, ``statement`` of a ``coalition.remove``)."""
    return {"statement": statement, "sig": key.sign(statement)}


def expel_statements(coalitions: Mapping[str, CoalitionEntry], seeds: Mapping[str, bytes], root: bytes,
                     member: str, time: int) -> list[Value]:
    """What the ally's NCC's client puts in an ``org.remove`` (``coalition``): a ``coalition.expel`` of ``member``
    signed with each coalition key recorded in the chain whose seed this device holds (``seeds``: name -> seed)."""
    keys = [CoalitionKey(seeds[n]) for n, c in sorted(coalitions.items())
            if n in seeds and CoalitionKey(seeds[n]).public == c.key]
    statement = expel_statement(root, member, time)
    return [signed_statement(k, statement) for k in keys[:MAX_EXPELS]]


def rekey_statement(ally: bytes, key: bytes, time: int) -> bytes:
    """The organization's word, signed with the coalition key it retires, that ``key`` is its new coalition key for
    the same space (docs/lifecycle.md "Every NCC member holds the coalition key": a member left the NCC)."""
    return encode({"v": 1, "type": "coalition.rekey", "ally": ally, "key": key, "time": time})


def check_rekey(carried: Value, ally: bytes, new: bytes, old: bytes) -> bytes:
    """A ``{statement, sig}`` rekey: a ``coalition.rekey`` of organization ``ally`` to the key ``new``, signed with
    the key ``old`` it retires. Returns the statement's hash; anything else is a ``ChainError``."""
    try:
        outer = Fields(carried, "coalition.rekey", {"statement", "sig"})
        raw, sig = outer.bytes_("statement", max_size=1024), outer.bytes_("sig", p.SIG_BYTES)
        f = Fields(decode(raw), "coalition.rekey", {"v", "type", "ally", "key", "time"})
        if f.int_("v") != 1 or f.str_("type", 32) != "coalition.rekey":
            raise ChainError("coalition.rekey: not a version 1 coalition.rekey statement")
        named = (f.bytes_("ally", 32), f.bytes_("key", 32))
        f.int_("time", 0)
    except EncodingError as e:
        raise ChainError(f"malformed coalition.rekey: {e}") from e
    if named != (ally, new):
        raise ChainError("coalition.rekey: the statement names another organization or another new key")
    if not _signed_by(old, raw, sig):
        raise ChainError("coalition.rekey: the statement is not signed with the coalition key it replaces")
    return statement_hash(raw)


@dataclass(frozen=True)
class Rekey:
    """A ``coalition.rekey`` a space took: the ally's key it retired (the dict's key) became ``new`` at ``seq``."""

    ally: bytes
    new: bytes
    seq: int


def parse_rekey(link: Link) -> tuple[Value, bytes, bytes]:
    """A ``coalition.rekey`` team link's ``{statement, sig}``, the organization its statement names and the new key
    (the signature not yet checked)."""
    carried: Value = {k: link.body.raw.get(k) for k in ("statement", "sig")}
    try:
        named = Fields(decode(Fields(carried, "coalition.rekey").bytes_("statement", max_size=1024)),
                       "coalition.rekey")
        return carried, named.bytes_("ally", 32), named.bytes_("key", 32)
    except EncodingError as e:
        raise ChainError(f"malformed coalition.rekey: {e}") from e


def apply_rekey(allies: dict[bytes, Ally], rekeys: dict[bytes, Rekey], link: Link,
                host_keys: Iterable[bytes] = ()) -> None:
    """``coalition.rekey {"statement", "sig"}`` in a coalition space (any member carries it; docs/lifecycle.md "Every
    NCC member holds the coalition key", steps 2-3): a pinned ally's ``coalition.rekey`` statement signed with the key
    the pin holds now replaces that key, which is retired (nothing signed with it counts here any more, whatever time
    it claims). One signed with a key of that ally already retired, naming another new key, is a rival (the old key's
    holder racing the ally): the ally is frozen, none of its keys counting until the host's NCC re-pins it. Only a key
    retired since the pin in force (the ally's first pin, or the re-pin that unfroze it: ``Ally.seq``) freezes it: a
    re-pin closes every earlier key of the ally for good (review 16: else a key retired before it re-froze the ally
    after every re-pin). ``host_keys``: the space's host key and those it retired, never an ally's (session 17,
    review 16: an ally keyed to the host key would let the host key sign as that ally)."""
    carried, root, new = parse_rekey(link)
    ally = allies.get(root)
    if ally is None or ally.frozen:
        raise ChainError("coalition.rekey: not an ally pinned in this space (or one frozen here)")
    if new == ally.key or new in rekeys or any(a.key == new for a in allies.values()) or new in set(host_keys):
        raise ChainError("coalition.rekey: that key is (or was) already pinned here (an ally's, or the host's)")
    try:
        check_rekey(carried, root, new, ally.key)
    except ChainError:
        retired = [old for old, r in rekeys.items() if r.ally == root and r.seq > ally.seq]
        if not any(_rekey_signed(carried, root, new, old) for old in retired):
            raise
        allies[root] = replace(ally, frozen=True)  # a second, different rekey of a retired key: frozen
        return
    rekeys[ally.key] = Rekey(root, new, link.seq)
    allies[root] = replace(ally, key=new)


def _rekey_signed(carried: Value, root: bytes, new: bytes, old: bytes) -> bool:
    try:
        check_rekey(carried, root, new, old)
    except ChainError:
        return False
    return True


def statement_hash(statement: bytes) -> bytes:
    return p.tagged_hash(labels.H_COALITION, statement)


def parse_statement(carried: Fields, types: tuple[str, ...]) -> tuple[Statement, bytes, bytes]:
    """The statement ``carried`` (``{statement, sig}``) holds, of one of ``types``, its raw bytes and signature
    (the signature not yet checked). A malformed one is a ``ChainError``."""
    what = types[0]
    try:
        outer = Fields(carried.raw, what, {"statement", "sig"})
        raw, sig = outer.bytes_("statement", max_size=1024), outer.bytes_("sig", p.SIG_BYTES)
        inner = decode(raw)
        type_ = inner.get("type") if isinstance(inner, dict) else None
        if type_ not in types:
            raise ChainError(f"{what}: not a {' or '.join(types)} statement")
        assert isinstance(type_, str)
        f = Fields(inner, type_, _FIELDS[type_])
        if f.int_("v") != 1:
            raise ChainError(f"{what}: unknown statement version")
        admit = type_ == "coalition.admit"
        st = Statement(type_, "" if type_ == "coalition.expel" else f.str_("space", 64), f.bytes_("ally", 32),
                       f.str_("member", 64), f.int_("time", 0), f.str_("role", 16) if admit else None,
                       f.opt_int("until", 0) if admit else None, statement_hash(raw))
    except EncodingError as e:
        raise ChainError(f"malformed {what} statement: {e}") from e
    return st, raw, sig


def verify_statement(carried: Fields, allies: dict[bytes, Ally], space: str, type_: str) -> Statement:
    """The statement a link carries, checked: of type ``type_`` (for ``coalition.remove``, also a
    ``coalition.expel``, which names no space), for this space, signed with the coalition key of an ally pinned in
    the chain. Anything else is a ``ChainError``."""
    types = (type_, "coalition.expel") if type_ == "coalition.remove" else (type_,)
    st, raw, sig = parse_statement(carried, types)
    if st.type != "coalition.expel" and st.space != space:
        raise ChainError(f"{type_}: the statement is for another space")
    ally = allies.get(st.ally)
    if ally is None or ally.frozen:
        raise ChainError(f"{type_}: signed for an organization that is not an ally pinned in this space (or one "
                         "frozen there by two different rekeys of its key, until the host's NCC re-pins it)")
    try:
        p.verify(ally.key, labels.SIG_COALITION, raw, sig)
    except VaultError as e:
        raise ChainError(f"{type_}: the statement is not signed with the coalition key of ally {ally.name}") from e
    return st


def with_host(allies: dict[bytes, Ally], root: bytes, host_key: bytes | None) -> dict[bytes, Ally]:
    """The organizations whose statements a space takes: its pinned allies and, in a space whose ``team.create``
    carries ``host_key``, the host itself (its root, that key)."""
    return allies if host_key is None else {**allies, root: Ally(root, host_key, "host", 1, "")}


def check_host_key(entries: Iterable[tuple[CoalitionEntry, int | None]], root: bytes, name: str, key: bytes,
                   org_seq: int) -> None:
    """The host's side of a space's ``host_key``: the key its own chain records (``org.coalition``, ``host`` = its
    own root) for a space of that name, in force at the organization state the ``team.create`` names. ``entries``:
    the name's current entry (None: in force still) and those a rekey retired, each with the seq of the link that
    replaced it (a later rekey of the name never breaks the replay of the space's ``team.create``)."""
    if not any(entry.key == key and entry.host == root and entry.seq <= org_seq
               and (replaced is None or org_seq < replaced) for entry, replaced in entries):
        raise ChainError(f"host_key is not this organization's coalition key for {name!r} (org.coalition with host = "
                         "its own root) at the organization state the link names (retired there: carry its "
                         "coalition.rekey into the space)")


def check_host_admit(carried: Fields, root: bytes, host_key: bytes, space: str, member: str, role: str,
                     until: int | None, time: int) -> Statement:
    """The host's ``coalition.admit`` a host member's ``team.add`` (or promotion to ``admin``) carries in a space
    with ``host_key``: signed with that key, by the host (``ally`` = its root), for exactly this member, role and
    end, valid at ``time`` (14 days). Anything else is a ``ChainError``."""
    st = verify_statement(carried, {root: Ally(root, host_key, "host", 1, "")}, space, "coalition.admit")
    if (st.member, st.role, st.until) != (member, role, until):
        raise ChainError("the host's coalition.admit is for another member, role or end")
    if not st.time - ALLOWANCE <= time < st.time + APPROVAL_SECONDS:
        raise ChainError("the host's coalition.admit is not valid at the time of this link (expired or later)")
    return st


def check_expels(carried: Value, coalitions: Mapping[str, CoalitionEntry], root: bytes,
                 member: str) -> list[Fields]:
    """The ``coalition`` list of an ``org.remove`` in the ally's own chain: ``coalition.expel`` statements of the
    removed ``member``, by this organization (``root``), each signed with a coalition key recorded in its chain
    (``org.coalition``), at most one per key. What the organization's guests carry to the hosts' spaces."""
    if carried is None:
        return []
    if not isinstance(carried, list) or len(carried) > MAX_EXPELS:
        raise ChainError(f"org.remove: coalition must be a list of at most {MAX_EXPELS} coalition.expel statements")
    keys = {c.key for c in coalitions.values()}
    found: list[Fields] = []
    signers: set[bytes] = set()
    for item in carried:
        try:
            f = Fields(item, "org.remove coalition", {"statement", "sig"})
        except EncodingError as e:
            raise ChainError(f"org.remove: malformed coalition.expel: {e}") from e
        st, raw, sig = parse_statement(f, ("coalition.expel",))
        if (st.ally, st.member) != (root, member):
            raise ChainError("org.remove: a coalition.expel statement for another organization or member")
        key = next((k for k in keys - signers if _signed_by(k, raw, sig)), None)
        if key is None:
            raise ChainError("org.remove: a coalition.expel statement not signed with a coalition key recorded in "
                             "this organization's chain (or twice with one)")
        signers.add(key)
        found.append(f)
    return found


def _signed_by(key: bytes, raw: bytes, sig: bytes) -> bool:
    try:
        p.verify(key, labels.SIG_COALITION, raw, sig)
    except VaultError:
        return False
    return True


def parse_ally(link: Link) -> tuple[bytes, bytes, str]:
    """The ally a ``coalition.ally`` link pins: (org root, coalition key, name)."""
    b = link.body
    return b.bytes_("ally", 32), b.bytes_("key", 32), b.str_("name", 64)


def coalition_act(entry: CoalitionEntry) -> tuple[str, ...]:
    """How a proposed ``org.coalition`` waits in ``OrgState.role_proposals`` for a second NCC member's same link."""
    return ("org.coalition", entry.name, entry.key.hex(), entry.host.hex() if entry.host is not None else "")


def parse_org_coalition(link: Link) -> CoalitionEntry:
    """An ``org.coalition`` link of the ally's own chain (judged as ``org.coalition`` by the one judge)."""
    b = link.body
    return CoalitionEntry(b.str_("name", 64), b.bytes_("key", 32), b.opt_bytes("host", 32), link.seq, link.signer)
