"""An allied organization's members in the host's coalition space (docs/lifecycle.md section 2): the ally's
NCC signs a member's entry (``coalition.admit``, with the coalition key it recorded for the space), and a space
admin of the host carries that approval in the ``team.add`` it posts together with the member's chain.

The approval travels out of band, from the ally's NCC to the host's space admin, as a **guest code**:
``mvault-guest:1:<base64url of the canonical encoding of {"statement", "sig", "chain"}>``, where ``chain`` is the
member's chain (its links, oldest first) as the ally's server holds it and the ally's NCC's client verified it.
The code needs no secrecy (it names a member id and its public keys); what makes it count is the coalition key's
signature, checked by the one judge against the key the space pins.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from client import coalitionkeys
from client.client import Client
from client.view import team_link_time
from security.authority import POLICY
from vault.chains import MemberState, TeamState, clone, replay_member
from vault.chains.coalition import (
    CoalitionKey,
    admit_statement,
    check_rekey,
    parse_statement,
    signed_statement,
    verify_statement,
)
from vault.encoding import Fields, Value, decode, encode
from vault.errors import ChainError, EncodingError, NotFound, VaultError
from vault.links import Link, make_link, parse_link
from vault.teamkeys import box_hash
from vault.wire.schemas import GuestRequest, TeamSeq

PREFIX = "mvault-guest:1:"
MAX_REKEYS = 16  # the ally's rekeys of one name a guest code carries (the newest; a handful in a space's life)


@dataclass(frozen=True)
class GuestCode:
    """An ally's signed approval of one of its members for a space, with the member's chain."""

    statement: bytes
    sig: bytes
    chain: list[Link]
    rekeys: tuple[dict[str, Value], ...] = ()  # session 17: the ally's rekeys of the name, oldest first (carried)

    @property
    def code(self) -> str:
        body: dict[str, Value] = {"statement": self.statement, "sig": self.sig, "chain": [x.wire for x in self.chain]}
        if self.rekeys:  # absent otherwise: a code without rekeys reads as before
            body["rekeys"] = list(self.rekeys)
        raw = encode(body)
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, code: str) -> GuestCode:
        if not code.startswith(PREFIX):
            raise VaultError(f"not a guest code (it starts with {PREFIX!r})")
        text = code[len(PREFIX):].strip()
        try:
            f = Fields(decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))), "guest code",
                       {"statement", "sig", "chain", "rekeys"})
            chain = f.raw["chain"]
            links = [x for x in chain if isinstance(x, bytes)] if isinstance(chain, list) else []
            if not isinstance(chain, list) or len(links) != len(chain) or not 1 <= len(links) <= 200:
                raise EncodingError("guest code: chain must be 1 to 200 links")
            rekeys = f.raw.get("rekeys", [])
            if not isinstance(rekeys, list) or not 1 <= len(rekeys) <= MAX_REKEYS and "rekeys" in f.raw:
                raise EncodingError(f"guest code: rekeys must be a list of 1 to {MAX_REKEYS}")
            carried = tuple(Fields(r, "guest code rekey", {"statement", "sig"}).raw for r in rekeys)
            return cls(f.bytes_("statement", max_size=1024), f.bytes_("sig", 64),
                       [parse_link(x) for x in links], carried)
        except (ValueError, VaultError) as e:
            raise VaultError(f"malformed guest code: {e}") from None

    @property
    def ally(self) -> bytes:
        """The root of the organization the statement says approves (not checked: the space's judge does)."""
        return parse_statement(Fields(self.approval, "approval", {"statement", "sig"}), ("coalition.admit",))[0].ally

    @property
    def approval(self) -> dict[str, Value]:
        """What a ``team.add`` carries (``approval``)."""
        return {"statement": self.statement, "sig": self.sig}

    @property
    def member(self) -> MemberState:
        """The member's chain, replayed (self-certifying from its first device)."""
        return replay_member(self.chain)


async def approve(s: Client, name: str, who: str, space: str, role: str, until: int | None) -> GuestCode:
    """The ally's side (NCC, on its own server): approve member ``who`` of this organization for the host's space
    ``space`` (its team id, from the host), with the coalition key recorded for ``name`` (``pairing-code``)."""
    view = await s.chains.view()
    seed = await coalitionkeys.seed(s, name)
    if seed is None:
        raise NotFound(f"this member holds no coalition key recorded for {name!r} (`mvault coalition pairing-code "
                       f"{name}` makes it; the NCC device that holds it seals it to the NCC at its next coalition "
                       "command)")
    own = view.org.coalitions[name].host == view.org.root  # the host approving its own member (client/hostkey.py)
    if role not in ("writer", "reader") and not (own and role == "admin"):
        raise VaultError("a guest is a writer at most: --role writer or reader")
    member = view.member_by_name(who)
    if not view.org.admitted(member.member_id):
        raise VaultError(f"{who} is not an admitted member of this organization")
    statement = admit_statement(space, view.org.root, member.member_id, role, until, s.session.now())
    signed = signed_statement(CoalitionKey(seed), statement)
    links = await s.chains.links(f"/api/v1/chains/member/{member.member_id}")
    if replay_member(links).head != member.head:
        raise ChainError("the server sent another member chain than the one this client verified")
    sig = signed["sig"]
    assert isinstance(sig, bytes)
    rekeys = tuple(dict(r.rekey) for r in view.org.coalitions_retired.get(name, []) if isinstance(r.rekey, dict))
    return GuestCode(statement, sig, links, rekeys[-MAX_REKEYS:])


async def add_guest(s: Client, space: TeamState, who: str, role: str, until: int | None, code: str) -> bool:
    """The host's side (a space admin): add an ally's member with their organization's approval (``code``). The
    member's chain goes to the server with the ``team.add`` carrying the approval, in one request."""
    guest = GuestCode.parse(code)
    ms = guest.member
    name, _, org = who.partition("@")
    space = await carry_rekeys(s, space, guest.rekeys)
    carried = Fields({"statement": guest.statement, "sig": guest.sig}, "approval")
    st = verify_statement(carried, space.allies, space.team_id, "coalition.admit")
    ally = space.allies[st.ally]
    if (ms.member_id, ms.name, ally.name) != (st.member, name, org):
        raise VaultError(f"the guest code approves {ms.name}@{ally.name}, not {who}")
    if (st.role, st.until) != (role, until):
        raise VaultError(f"the guest code approves role {st.role} until {st.until or 'no end'}: "
                         "add with exactly that role and end")
    view = await s.chains.view()
    body: dict[str, Any] = {"member": ms.member_id, "role": role, "until": until, "key": None,
                            "approval": carried.raw, "org_seq": view.org.seq}
    boxes: dict[str, bytes] = {}
    holds = space.holds_key(s.session.me, s.session.now())
    if holds:
        key = await s.keys.team_key(space, space.generation)
        box = key.seal_for(ms.member_id, ms.puk_gen, ms.puk_box_public, key.name_key)
        body["key"] = {"gen": space.generation,
                       "boxes": [{"member": ms.member_id, "puk_gen": ms.puk_gen, "hash": box_hash(box)}]}
        boxes[ms.member_id] = box
    link = make_link(chain=space.team_id, seq=space.seq + 1, prev=space.head,
                     time=team_link_time(s.session.now(), space, view.org), signer=s.session.me,
                     device=s.session.device, type_="team.add", body=body)
    clone(space).apply(link, view.org, {**view.members, ms.member_id: ms}, POLICY)  # the one judge, first
    await s.session.api.post(f"/api/v1/teams/{space.team_id}/guests",
                             GuestRequest([x.wire for x in guest.chain], link.wire, boxes), TeamSeq)
    s.chains.links_posted += 1
    await s.chains.view(refresh=True)
    return holds


async def carry_rekeys(s: Client, space: TeamState, rekeys: tuple[dict[str, Value], ...]) -> TeamState:
    """The ally's rekeys a guest code carries (session 17), in their order: each signed with the key the space pins
    for that ally now goes into the space as a ``coalition.rekey`` before the add (the others are skipped: carried
    already, or not the space's; the one judge checks each link first). So the NCC's code works at the host even when
    no guest of the ally carried the rekey yet (an ally server withholding it from its guests, say)."""
    for carried in rekeys:
        try:
            named = Fields(decode(Fields(carried, "rekey", {"statement", "sig"}).bytes_("statement", max_size=1024)),
                           "coalition.rekey")
            root, new = named.bytes_("ally", 32), named.bytes_("key", 32)
            ally = space.allies.get(root)
            if ally is None or ally.frozen:
                continue
            check_rekey(carried, root, new, ally.key)
        except (ChainError, EncodingError):
            continue
        await s.chains.append_team(space, "coalition.rekey", dict(carried))
        space = (await s.chains.view()).teams[space.team_id]
    return space
