"""A reference model of who is entitled to a coalition space, written from docs/lifecycle.md section 2, not from
the chain code: it shares nothing with ``vault.chains`` or ``security.authority`` (the policy table's guest cap is
restated here as a rule: an ally's member is never the space's admin).

The rule: an ally's member is in the space only after a space admin's add carrying an approval signed with the
coalition key of an organization two of the host's NCC members pinned (one NCC member's proposal, with whatever key,
pins nothing: not for a guest either), for that member and role, never used before;
they are then in the space for that organization (the host cannot see the allies' rosters: whichever pinned ally
approves a person answers for them), and only that organization approves them again. A host member is in it only
by a space admin's add carrying the host's own approval, signed with the host's coalition key (fresh, for that
member), in any role; the host removes its own members with a statement signed with that key. A member leaves by
a removal from a space admin, or from any member of the space carrying the signed removal of the organization they
are in the space for (the host's included), or carrying that organization's expulsion of them (valid in every space,
once in each); every removal starts a key generation boxed to exactly the members left. A removal carrying an
organization's statement is final even of the space's last admin (session 17, review 17: the space is then left
without one); a space admin's own removal never leaves it without one (the signer is an admin). A space admin changes a
member's role or end within what the approval they hold named (review 16); past it (a higher role, a later end), and
a host member's promotion to admin, only with a fresh approval of the organization they are in the space for.
The host's NCC may rekey its coalition key in its own chain (review 16): from then on no statement signed with the
space's host key counts on the host's side until a member of the space carried the rekeys into it, one at a time and
in their order; the space then holds the new key (and a guest's view agrees from that link on).
The host's organization may remove (``org.remove``) a host member (session 17, review 17): nothing of that changes
the space implicitly. The member stays listed on both sides until a link removes them explicitly: a space admin's
removal, the host's statement, or a "departed" removal any other host member of the space signs (the host's side
takes it only for a member its organization removed; a guest's view, which cannot know, for any host member: the
safe direction). While one is listed the host's side refuses every new key generation and key box (but the one of
the link that removes them) and every act they sign; a guest's view takes those (it cannot tell).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CoalitionModel:
    host: dict[str, str]  # host member -> role in the space (fixed: the admin and a writer)
    admin: str
    ally_of: dict[str, str]  # each ally member -> their own organization (what the host cannot see)
    entered_for: dict[str, str] = field(default_factory=dict)  # ally member -> the organization that approved them
    ncc: set[str] = field(default_factory=set)  # the host's NCC members (the admin and another, not in the space)
    proposed: dict[str, str] = field(default_factory=dict)  # ally -> the NCC member who proposed its pin
    stray: set[str] = field(default_factory=set)  # allies an NCC member proposed with a key of their own (review 16)
    pinned: set[str] = field(default_factory=set)
    guests: dict[str, str] = field(default_factory=dict)  # ally member in the space -> role
    generation: int = 1
    left_at: dict[str, int] = field(default_factory=dict)  # member -> the last generation they were boxed to
    expels_used: set[tuple[str | None, str]] = field(default_factory=set)  # (organization, member) expelled here
    rekeyed: dict[str, int] = field(default_factory=dict)  # ally -> its keys the space retired since its last pin
    frozen: set[str] = field(default_factory=set)  # allies two different rekeys of one key froze (until re-pinned)
    host_people: set[str] = field(default_factory=set)  # the host's members besides the admin (in the space or not)
    untils: dict[str, int | None] = field(default_factory=dict)  # member in the space -> the end of their role
    approved: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # member -> role, end last approved
    host_pending: int = 0  # rekeys of the host's key its chain recorded that no member carried into the space yet
    departed: set[str] = field(default_factory=set)  # host members the host's organization removed (org.remove)

    def host_refuses(self, signer: str, target: str | None, keyed: bool) -> bool:
        """What the host's side refuses besides the rule of the act (session 17): an act signed by a member its
        organization removed, and a key generation or box while the space lists a removed member (but the link's
        own subject, whom it removes)."""
        return signer in self.departed or keyed and bool((self.departed & set(self.host)) - {target})

    def may_depart(self, signer: str, target: str, outside: bool = False) -> bool:
        """A "departed" removal of ``target`` signed by ``signer``: a member of the space other than the target (a
        guest too, session 18) removes a host member of the space, whom (on the host's side) the host's organization
        removed."""
        return (signer in self.members() and target in self.host and signer != target and target != self.admin
                and (outside or target in self.departed))

    def members(self) -> dict[str, str]:
        return {**self.host, **self.guests}

    def is_admin(self, member: str) -> bool:
        """A space admin signs adds, host-side removals and role changes (the founder, or anyone made admin)."""
        return self.members().get(member) == "admin"

    def pin(self, signer: str, ally: str) -> str:
        """"refused", "proposed" or "pinned": only the host's NCC pins, two of them (rule two-person): the first
        signature proposes, the same pin by another NCC member puts it in force; a proposer does not sign twice."""
        if signer not in self.ncc or ally in self.pinned - self.frozen or self.proposed.get(ally) == signer:
            return "refused"
        if ally not in self.proposed:
            self.proposed[ally] = signer
            return "proposed"
        del self.proposed[ally]
        self.pinned.add(ally)
        self.frozen.discard(ally)  # a frozen ally re-pinned (its key given in person): its keys count again
        self.rekeyed.pop(ally, None)  # a pin closes every earlier key of the ally: none retired before it freezes it
        return "pinned"

    def pin_stray(self, signer: str, ally: str) -> str:
        """"refused" or "proposed": one NCC member's pin of ``ally`` with another key than the ally's (their own),
        which no second NCC member signs. A proposal pins nothing, on the host's side and the guest's alike (the
        guest's join code names the pins in force: review 16); the ally's own key is pinned as if it never was."""
        if signer not in self.ncc or ally in self.pinned - self.frozen or ally in self.stray:
            return "refused"
        self.stray.add(ally)
        return "proposed"

    def may_add(self, signer: str, member: str, role: str, approval: str) -> bool:
        """``approval``: "own" (fresh, of the member's organization), "other" (fresh, of the other organization),
        "forged" (the member's organization's root, an unknown key), "reused" (one already used), "none"."""
        return (self.is_admin(signer) and approval in ("own", "other") and member not in self.guests
                and self.approver(member, approval) in self.pinned - self.frozen and role in ("writer", "reader")
                and self.entered_for.get(member, self.approver(member, approval)) == self.approver(member, approval))

    def may_add_host(self, signer: str, member: str, approval: str) -> bool:
        """A host member's add: ``approval`` "host" (fresh, signed with the host's key) by the space's admin only;
        "forged", "reused" or "none" never."""
        return (self.is_admin(signer) and approval == "host" and member in self.host_people and not self.host_pending
                and member not in self.members() and member not in self.departed)

    def approver(self, member: str, approval: str) -> str:
        own = self.ally_of[member]
        return own if approval == "own" else next(o for o in set(self.ally_of.values()) if o != own)

    def may_remove(self, signer: str, target: str, statement: str) -> bool:
        """``statement``: "none" (the host's side), "own" (of the organization the target is in the space for),
        "other" (of any other); "expel" / "expel-other": that organization's expulsion of the target from itself
        (one statement per organization and member, valid in any space that pins it, used once here)."""
        members = self.members()
        if target not in members or target == self.admin or signer not in members or signer == target:
            return False
        if statement == "none":
            return self.is_admin(signer)
        if statement == "host":  # final: also of the space's last admin (review 17)
            return target in self.host_people and not self.host_pending
        if statement.startswith("expel") and (self.entered_for.get(target), target) in self.expels_used:
            return False
        return statement in ("own", "expel") and target in self.guests and self.entered_for[target] not in self.frozen

    def may_rekey(self, signer: str, ally: str, kind: str) -> bool:
        """``coalition.rekey`` carried by ``signer``: "next" (signed with the key pinned now, naming a new key),
        "rival" (signed with a key of the ally the space retired, naming another new key), "forged" (another key),
        "again" (naming the key pinned now), "host" (signed with the key pinned now, naming the space's host key: an
        ally's key is never the host's, session 17). Any member of the space carries one, for a pinned ally not
        frozen; a rival only with a key retired since the ally's last pin (a re-pin closes every earlier key: review
        16)."""
        if signer not in self.members() or ally not in self.pinned - self.frozen or kind == "host":
            return False
        return kind == "next" or kind == "rival" and self.rekeyed.get(ally, 0) > 0

    def rekey(self, ally: str, kind: str) -> None:
        """Taken: "next" retires the pinned key; "rival" freezes the ally (the first rekey of a key won)."""
        if kind == "next":
            self.rekeyed[ally] = self.rekeyed.get(ally, 0) + 1
        else:
            self.frozen.add(ally)

    def may_role(self, signer: str, target: str, role: str, until: int | None, approval: str) -> bool:
        """``team.role`` of ``target`` to ``role`` until ``until`` (always in the future here), by a space admin.
        ``approval``: "none", "fresh" (of the organization the target is in the space for: the host's for a host
        member, signed with its key; for exactly this role and end), "wrong" (the same, naming another end). The
        rule (review 16): a change to a role above, or an end later than, what the target's last approval named (no
        end: none later), and a host member's change to admin, needs a fresh approval, which then bounds later
        changes; a carried approval is always checked and used. A guest is never admin; a frozen ally approves
        nothing; "nothing to change" is refused."""
        members = self.members()
        if not self.is_admin(signer) or target not in members or (members[target], self.untils.get(target)) == (
                role, until) or target in self.guests and role == "admin":
            return False
        if approval != "none":
            return approval == "fresh" and (target in self.host and not self.host_pending
                                            or target in self.guests and self.entered_for[target] not in self.frozen)
        rank = {"reader": 0, "writer": 1, "admin": 2}
        bound = self.approved.get(target)
        past = bound is not None and (rank[role] > rank[bound[0]]
                                      or bound[1] is not None and (until is None or until > bound[1]))
        return not past and not (target in self.host and role == "admin" and members[target] != "admin")

    def may_carry_host_rekey(self, signer: str, kind: str) -> bool:
        """A member of the space carries the host's rekey: "next" (the oldest one not carried yet), "later" (a newer
        one before it: signed with a key the space does not hold)."""
        return signer in self.members() and kind == "next" and self.host_pending > 0

    # -- recording --

    def add(self, member: str, role: str, approval: str) -> None:
        self.entered_for[member] = self.approver(member, approval)
        self.guests[member] = role
        self.left_at.pop(member, None)
        self.untils[member], self.approved[member] = None, (role, None)

    def add_host(self, member: str, role: str) -> None:
        self.host[member] = role
        self.left_at.pop(member, None)
        self.untils[member], self.approved[member] = None, (role, None)

    def set_role(self, member: str, role: str, until: int | None, approval: str) -> None:
        (self.guests if member in self.guests else self.host)[member] = role
        self.untils[member] = until
        if approval == "fresh":
            self.approved[member] = (role, until)

    def remove(self, target: str, statement: str = "none") -> None:
        if statement == "expel":
            self.expels_used.add((self.entered_for.get(target), target))
        self.left_at[target] = self.generation
        self.guests.pop(target, None)
        self.host.pop(target, None)
        self.untils.pop(target, None)
        self.generation += 1


@dataclass
class AllyKeysModel:
    """The ally's own chain as docs/lifecycle.md "Every NCC member holds the coalition key" states it: who holds NCC
    (granted and revoked two-person, docs/format.md ``org.role``), the coalition key recorded per space name, and the
    box each NCC member was filed (``org.coalition.share``). Keys and boxes are labels here, never bytes.

    The rule of a share: an NCC member's act, for the key recorded for that name, 1 to 64 boxes, one per member,
    each for a member who holds NCC at the link's time; a later box for a member replaces the earlier. The chain
    cannot look inside a box: a box of another key, or sealed to someone else, is filed all the same and refused
    by its recipient on opening."""

    ncc: set[str]
    keys: dict[str, str]  # space name -> the label of the key recorded for it
    shares: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)  # name -> member -> (key, for whom)
    retired: dict[str, list[str]] = field(default_factory=dict)  # name -> the keys a rekey replaced, oldest first
    proposals: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, new key) -> its proposer
    signers: dict[str, set[str]] = field(default_factory=dict)  # key -> who signed an org.coalition naming it
    boxed: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> member -> the key its share named
    proposed_on: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, new key) -> its proposal's device
    lost: dict[str, set[str]] = field(default_factory=dict)  # key -> holders who lost a device since they held it
    offers: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)  # proposed key -> member -> its box

    def needs_second(self, signer: str, subject: str) -> bool:
        """A grant or revocation of NCC takes two NCC members when one exists besides the signer and its subject."""
        return any(m not in (signer, subject) for m in self.ncc)

    def may_share(self, signer: str, name: str, key: str, members: list[str]) -> bool:
        return (signer in self.ncc and name in self.keys and self.keys[name] == key and 1 <= len(members) <= 64
                and len(set(members)) == len(members) and all(m in self.ncc for m in members))

    def share(self, name: str, filed: dict[str, tuple[str, str]]) -> None:
        self.shares.setdefault(name, {}).update(filed)
        self.boxed.setdefault(name, {}).update({m: self.keys[name] for m in filed})

    def stale(self) -> dict[str, list[str]]:
        """Issue 20, session 18: a key to replace, and who makes it so: someone who may hold its seed (signed an
        ``org.coalition`` naming it, proposal or recording: whose device made it the chain cannot tell; or was filed a
        share naming it, whatever the box holds) does not hold NCC now, or (session 19) lost a device (revoked) after
        they came to hold it (``lose_device``)."""
        found = {}
        for name, key in sorted(self.keys.items()):
            holders = self.signers.get(key, set()) | {m for m, k in self.boxed.get(name, {}).items() if k == key}
            if gone := sorted(m for m in holders if m not in self.ncc or m in self.lost.get(key, set())):
                found[name] = gone
        return found

    def lose_device(self, member: str, device: str) -> list[tuple[str, str]]:
        """Session 19: ``member`` revokes ``device``: every key they may hold by now (signed or boxed) is stale for
        them, and each proposal that device signed is void (rule two-person: a proposal is its device's): those."""
        for key in [k for k, who in self.signers.items() if member in who]:
            self.lost.setdefault(key, set()).add(member)
        for filed in self.boxed.values():
            if member in filed:
                self.lost.setdefault(filed[member], set()).add(member)
        for key, offered in self.offers.items():  # session 21: a box offered in a proposal, filed if recorded
            if member in offered:
                self.lost.setdefault(key, set()).add(member)
        void = [a for a, by in self.proposals.items() if by == member and self.proposed_on.get(a) == device]
        for act in void:
            del self.proposals[act]
        return void

    def rekey(self, signer: str, name: str, new: str, valid: bool, device: str = "main",
              offered: dict[str, tuple[str, str]] | None = None) -> str:
        """"refused", "proposed" or "recorded": an NCC member replaces the key recorded for ``name`` by ``new``
        (``valid``: it names the key recorded now, and the statement is signed with it). Two-person as the first
        recording: with another NCC member, the first signature proposes, and the same act signed by a second one
        records it while its proposer still holds NCC and its device is not revoked (else it is proposed again, by
        the new signer); a proposer does not sign twice. Recording it retires the old key and voids every other
        proposal for the name.

        Session 21 (review 27): ``offered`` (member -> (the key in the box, sealed to whom)), the rekey's boxes of the
        new key, as a share's (1 to 64, each for a member holding NCC now); the first box offered for a member stays,
        and recording the key files them for the members holding NCC then (the other proposals' offers void)."""
        if signer not in self.ncc or not valid or offered is not None and not (
                1 <= len(offered) <= 64 and set(offered) <= self.ncc):
            return "refused"
        if any(m != signer for m in self.ncc):
            proposer = self.proposals.get((name, new))
            if proposer == signer:
                return "refused"
        for m, box in (offered or {}).items():
            self.offers.setdefault(new, {}).setdefault(m, box)
        if any(m != signer for m in self.ncc):
            self.signers.setdefault(new, set()).add(signer)
            if proposer is None or proposer not in self.ncc:
                self.proposals[(name, new)] = signer
                self.proposed_on[(name, new)] = device
                return "proposed"
        self.signers.setdefault(new, set()).add(signer)
        for act in [act for act in self.proposals if act[0] == name]:
            del self.proposals[act]
        self.retired.setdefault(name, []).append(self.keys[name])
        self.keys[name] = new
        filed = {m: box for m, box in self.offers.pop(new, {}).items() if m in self.ncc}
        for key in [k for k in self.offers if k.startswith(name + "#")]:
            del self.offers[key]
        if filed:
            self.share(name, filed)
        return "recorded"

    def opens(self, name: str, member: str) -> bool:
        """Does ``member``'s filed box for ``name`` give it the key the chain records (its recipient's checks)?"""
        got = self.shares.get(name, {}).get(member)
        return got is not None and got == (self.keys[name], member)
