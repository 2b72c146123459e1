"""A coalition space's own transitions of the team chain (``vault.chains.team`` calls them once the link's signer
is judged): pinning an ally, a member's entry with its organization's ``coalition.admit`` (an ally's, or in a space
with ``host_key`` the host's own), the statement a ``coalition.remove`` carries, each statement used once
(``vault.chains.coalition``; docs/lifecycle.md section 2)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Final, Protocol

from vault.acts import ALLOWANCE
from vault.chains.coalition import (
    APPROVAL_SECONDS,
    Ally,
    CoalitionEntry,
    Guest,
    Rekey,
    apply_rekey,
    check_host_admit,
    check_host_key,
    check_rekey,
    parse_ally,
    parse_rekey,
    verify_statement,
    with_host,
)
from vault.chains.org import OrgState
from vault.encoding import Fields
from vault.errors import ChainError, PolicyDenied
from vault.links import Link

RANKS: Final = {"reader": 0, "writer": 1, "admin": 2}  # how far a team role goes: what an approval's role bounds


class TeamState(Protocol):
    """What these transitions read and change of ``vault.chains.team.TeamState`` (not imported: team imports this)."""

    team_id: str
    name: str
    kind: str
    allies: dict[bytes, Ally]
    guests: dict[str, Guest]
    statements_used: set[bytes]
    ally_proposals: dict[tuple[bytes, bytes, str], str]
    ally_pins: dict[int, bytes]
    rekeys: dict[bytes, Rekey]
    host_key: bytes | None
    host_removed: set[str]
    removed_at: dict[str, int]
    approved: dict[str, tuple[str, int | None]]
    host_retired: dict[bytes, int]
    pending_rotation: bool
    pending_share: dict[str, str]

    @property
    def members(self) -> MutableMapping[str, Any]: ...


def host_keys(state: TeamState) -> set[bytes]:
    """The host's coalition keys of the space: the one it holds and those it retired (none without ``host_key``)."""
    return set(state.host_retired) | ({state.host_key} if state.host_key is not None else set())


def use_statement(state: TeamState, h: bytes) -> None:
    if h in state.statements_used:
        raise ChainError("a coalition statement is used once: this one is already in the chain")
    state.statements_used.add(h)


def pin_ally(state: TeamState, link: Link, org: OrgState, org_seq: int) -> None:
    """``coalition.ally`` (its signer judged): the host's NCC pins an allied organization, its root and key."""
    if state.kind != "coalition":
        raise ChainError(f"team {state.name} is not a coalition space: it has no allies")
    root, key, name = parse_ally(link)
    if key in host_keys(state):  # session 17 (review 16): the host key would sign as that ally, on every side
        raise ChainError("coalition.ally: that key is (or was) the host's coalition key for this space")
    if org.outside is not None:  # a guest's view, inside its join code's prefix (past it the judge refused the link)
        # Who is NCC is not known here: the code names the links that put a pin in force on the host's side and
        # their keys (outside.py). Another is a proposal there (one NCC member's word: review 16) and changes nothing.
        named = {k for s, k in org.outside.pins if s == link.seq}
        if not named:
            return
        if named != {key} or root == org.root or root in state.allies and not state.allies[root].frozen:
            raise ChainError(f"coalition.ally at link {link.seq}: the space's chain pins an ally with another key "
                             "than the one its join code names in force there (or an ally pinned already)")
        state.ally_pins[link.seq] = key
        state.allies[root] = Ally(root, key, name, link.seq, link.signer)
        return
    if root == org.root or root in state.allies and not state.allies[root].frozen or key in state.rekeys or any(
            a.key == key for r, a in state.allies.items() if r != root):  # a frozen ally is pinned again
        raise ChainError("coalition.ally: that organization (or its coalition key) is already in the space")
    # Two people (rule two-person), as org.server: with another NCC member at the link's time, the first pin
    # proposes and the same pin by a second NCC member puts it in force.
    pin, ncc = (root, key, name), {m for m in org.members if "ncc" in org.roles_of(m, link.time, org_seq)}
    proposer = state.ally_proposals.get(pin)
    if proposer == link.signer:
        raise PolicyDenied("pinning an ally needs a second NCC member: you proposed this pin already")
    if ncc - {link.signer} and proposer not in ncc:
        state.ally_proposals[pin] = link.signer
        return
    state.ally_proposals.pop(pin, None)
    state.ally_pins[link.seq] = key  # what a join code names to a guest's client (client/guestspace.py)
    state.allies[root] = Ally(root, key, name, link.seq, link.signer)


def admit(state: TeamState, approval: Fields, mid: str, role: str, until: int | None, link: Link, org: OrgState,
          org_seq: int) -> None:
    """An ally's member enters with their organization's ``coalition.admit`` for exactly this add: this space,
    this member, this role and end, signed with the coalition key of an ally pinned here, used once. In a space
    with ``host_key``, a host member enters with the host's own (``check_host_admit``) and is no guest."""
    if state.kind != "coalition":
        raise ChainError(f"team {state.name} is not a coalition space: only its organization's members join it")
    st = verify_statement(approval, with_host(state.allies, org.root, state.host_key), state.team_id,
                          "coalition.admit")
    if st.ally == org.root:
        assert state.host_key is not None
        check_host_in_force(state, org, org_seq)
        check_host_admit(approval, org.root, state.host_key, state.team_id, mid, role, until, link.time)
        if mid in state.guests or org.outside is None and not org.admitted(mid, org_seq):
            raise ChainError(f"member {mid} is not an admitted member of the host organization")
        use_statement(state, st.hash)
        state.host_removed.discard(mid)  # entered again: the host may remove them again
        return
    if (st.member, st.role, st.until) != (mid, role, until):
        raise ChainError("the coalition.admit approval is for another member, role or end")
    if not st.time - ALLOWANCE <= link.time < st.time + APPROVAL_SECONDS:
        raise ChainError("the coalition.admit approval is not valid at the time of this add (expired or later)")
    if mid in org.members:
        raise ChainError(f"member {mid} is known to the host organization: not a guest")
    known = state.guests.get(mid)
    if known is not None and known.ally != st.ally:
        raise ChainError(f"member {mid} entered the space for another organization")
    use_statement(state, st.hash)
    state.guests[mid] = Guest(mid, st.ally, st.hash)


def removal_statement(state: TeamState, carried: Fields, target: str, org: OrgState, org_seq: int) -> None:
    """The statement a ``coalition.remove`` carries (its carrier judged): an ally's removal (or expulsion) of one of
    its guests, or, in a space with ``host_key``, the host's removal of one of its own members, signed with that key;
    used once. The caller then drops the target on every side alike: a member the space no longer lists (who left,
    was removed, or was dropped as ``departed``) is "not in team" on both sides (session 18, review 19: the host's
    side took it as key work only, a guest's view refused it)."""
    st = verify_statement(carried, with_host(state.allies, org.root, state.host_key), state.team_id,
                          "coalition.remove")
    guest = state.guests.get(target)
    ours = guest is None if st.ally == org.root else guest is not None and guest.ally == st.ally
    if st.member != target or not ours:
        raise ChainError("coalition.remove: an organization removes only its own members")
    if st.ally == org.root:
        check_host_in_force(state, org, org_seq)
        # Once per entry, on every side alike: a guest's view drops the member at the first host removal and
        # refuses a second ("not in team"); the host's side, where its organization chain dropped them already,
        # would take a second as key work only, and the two views of the chain would part (review 16).
        if target in state.host_removed:
            raise ChainError(f"coalition.remove: the host removed member {target} from this space already")
        state.host_removed.add(target)
    use_statement(state, st.hash)


def guest_org_seq(state: TeamState, link: Link, org: OrgState, named: int) -> int:
    """The organization state the host's side judges a guest's team link at (session 17, review 17): a guest never
    sees the host's chain and names the space's last ``org_seq``; its rights come from the space's chain alone, but
    the state judged decides what the link does to host members (who is dropped, who is boxed, which host key is in
    force). So the host's side judges it at the newer of the state it names and the one in force ``ALLOWANCE`` before
    the link (every organization link dated before that was on an honest server before the guest's link arrived: the
    replay stays stable), and refuses it while a host member of the space the organization removed by then is still
    in it (a host member's link must carry that removal first: the guest's link would box them, or drop them on the
    host's side only). A guest's view, and every other signer, judge at the state named."""
    if org.outside is not None or link.signer not in state.guests:
        return named
    settled = org.seq_at(link.time - ALLOWANCE - 1)
    if settled <= named:
        return named
    departed = sorted(m for m in state.members if m not in state.guests and org.admitted(m, named)
                      and not org.admitted(m, settled))
    if departed and _departed_removal(link) in departed:  # session 18 (review 19): the guest removes one of them
        return settled
    if departed:
        raise PolicyDenied(f"a guest's link names organization state {named}, but the host's organization removed "
                           f"{', '.join(departed)}, still in space {state.name}, at or before state {settled}: a host "
                           "member's link must remove them from the space first")
    return settled


def _departed_removal(link: Link) -> str | None:
    """The member a ``coalition.remove`` with ``departed`` removes (None: another link)."""
    member = link.body.raw.get("member")
    if link.type != "coalition.remove" or link.body.raw.get("departed") is not True or not isinstance(member, str):
        return None
    return member


def approval_needed(state: TeamState, member: str, role: str, until: int | None, current: str) -> bool:
    """Whether a ``team.role`` of ``member`` (now ``current``) to ``role`` until ``until`` must carry a new
    ``coalition.admit`` of their organization: in a space with ``host_key`` a host member's change to ``admin`` from
    another role; and any change past what the approval they hold named (``approved``: the role and end of the last
    one, at their entry or a later ``team.role``), a higher role or a later end (review 16: a space admin extended an
    approved end to no end)."""
    if state.host_key is not None and member not in state.guests and role == "admin" and current != "admin":
        return True
    bound = state.approved.get(member)
    if bound is None:
        return False
    return RANKS[role] > RANKS[bound[0]] or bound[1] is not None and (until is None or until > bound[1])


def change_role(state: TeamState, carried: Fields | None, member: str, role: str, until: int | None, current: str,
                link: Link, org: OrgState, org_seq: int) -> None:
    """``team.role`` in a coalition space (its signer judged): without ``approval`` only within what the member's
    approval named (``approval_needed``); with one, a ``coalition.admit`` of the member's organization (the host's,
    signed with ``host_key``, for a host member; the ally they entered for, for a guest) for exactly this member,
    role and end, valid at the link's time, used once: it is then the bound of later changes."""
    if carried is None:
        if approval_needed(state, member, role, until, current):
            raise ChainError(f"a change of member {member}'s role or end past what their organization approved (or "
                             "to admin) needs its new coalition.admit for this role and end")
        return
    guest = state.guests.get(member)
    if guest is None:
        if state.host_key is None:
            raise ChainError("team.role: an approval is the host's only in a space with host_key (or an ally's, for "
                             "its guest)")
        check_host_in_force(state, org, org_seq)
        st = check_host_admit(carried, org.root, state.host_key, state.team_id, member, role, until, link.time)
    else:
        st = verify_statement(carried, state.allies, state.team_id, "coalition.admit")
        if st.ally != guest.ally or (st.member, st.role, st.until) != (member, role, until):
            raise ChainError("team.role: the coalition.admit is not of the organization the member entered for, or "
                             "for another member, role or end")
        if not st.time - ALLOWANCE <= link.time < st.time + APPROVAL_SECONDS:
            raise ChainError("the coalition.admit approval is not valid at the time of this link (expired or later)")
    use_statement(state, st.hash)
    state.approved[member] = (role, until)


def host_entries(org: OrgState, name: str) -> list[tuple[CoalitionEntry, int | None]]:
    """The host's own chain's coalition keys for the space ``name``: the current entry (None: in force still) and
    those a rekey retired, each with the seq of the ``org.coalition`` that replaced it."""
    current = org.coalitions.get(name)
    return [*([(current, None)] if current is not None else []),
            *((r.entry, r.seq) for r in org.coalitions_retired.get(name, []))]


def check_host_in_force(state: TeamState, org: OrgState, org_seq: int) -> None:
    """On the host's side, a statement signed with the space's host key counts only while its chain holds that key
    in force at the organization state the link names (review 16: from the ``org.coalition`` that retired it on, a
    departed NCC member's admit or removal signed with it is refused, even before a member carried the rekey into the
    space). A guest's client, without the host's chain, learns it from the space's ``coalition.rekey``
    (``rekey``)."""
    if state.host_key is not None and org.outside is None:
        check_host_key(host_entries(org, state.name), org.root, state.name, state.host_key, org_seq)


def rekey(state: TeamState, link: Link, org: OrgState, org_seq: int) -> None:
    """``coalition.rekey`` (its carrier judged): of a pinned ally (``apply_rekey``), or of the host itself."""
    carried, root, new = parse_rekey(link)
    if root != org.root:
        apply_rekey(state.allies, state.rekeys, link, host_keys(state))
        return
    if state.host_key is None:
        raise ChainError("coalition.rekey: not an ally pinned in this space (the host, in a space without host_key)")
    if new == state.host_key or new in state.host_retired or new in state.rekeys or any(
            a.key == new for a in state.allies.values()):
        raise ChainError("coalition.rekey: that key is (or was) already pinned here")
    check_rekey(carried, root, new, state.host_key)
    if org.outside is None:  # the host's side: its own chain replaced the space's key by this one (two-person)
        entries = host_entries(org, state.name)
        replaced = {e.key: seq for e, seq in entries if e.host == root}
        recorded = {e.key: e.seq for e, _ in entries if e.host == root}
        at = replaced.get(state.host_key)
        if at is None or recorded.get(new) != at or at > org_seq:
            raise ChainError("coalition.rekey: the host's chain did not replace the space's host key by this key "
                             "(org.coalition with replaces) at the organization state this link names")
    state.host_retired[state.host_key] = link.seq
    state.host_key = new


def departed(state: TeamState, org: OrgState, org_seq: int) -> list[str]:
    """Session 17 (review 17): the host members a coalition space still lists whom the host's organization removed
    (not admitted at ``org_seq``). The host's side keeps them listed, as a guest's view does, until a link removes
    them explicitly (``drop_departed``): nothing of the host's organization state changes the space implicitly.
    Outside the host (a guest's view) nobody is known to have departed: empty."""
    if state.kind != "coalition" or org.outside is not None:
        return []
    return sorted(m for m in state.members if m not in state.guests and not org.admitted(m, org_seq))


def drop_departed(state: TeamState, link: Link, target: str, carried: Fields | None, org: OrgState,
                  org_seq: int) -> bool:
    """A ``coalition.remove`` with ``departed`` (its signer judged: ``coalition.remove``'s right): a host member of
    the space (a listed member who is no guest), removed by any other member of the space, with no last-admin check
    (the organization removed them already). The host's side takes it only for a member its organization removed
    (``departed``, at the state the link names, or for a guest's link the settled one: ``guest_org_seq``); a guest's
    view, which cannot know, for any host member on the signer's word (the safe direction: it only removes; a link
    the host's judge refuses its server never stores). Session 18 (review 19): a guest signs it too (before, only
    another host member could, and once the host removed the only host member of the space no link both sides take
    excluded him: the key he held was never rotated and the space stayed read-only). It is the host's removal of
    them for this entry (``host_removed``): a later host statement removing them is refused on every side alike.
    True: it carries a key (the caller rotates); without one a rotation is due, also for a key holder (others
    removed may still be listed: ``withheld``)."""
    signer = link.signer
    if carried is not None or link.body.bool_("departed") is not True:
        raise ChainError("coalition.remove: departed is true and carries no statement")
    if state.kind != "coalition":
        raise ChainError(f"team {state.name} is not a coalition space: its departed members leave with the "
                         "organization")
    if target not in state.members or target in state.guests or signer == target:
        raise ChainError("coalition.remove departed: a member of the space removes a host member of it")
    if org.outside is None and target not in departed(state, org, org_seq):
        raise ChainError(f"coalition.remove departed: the host organization did not remove member {target} (at the "
                         "organization state this link names)")
    state.host_removed.add(target)
    del state.members[target]
    state.removed_at[target] = link.seq
    state.pending_share.pop(target, None)
    state.pending_rotation = link.body.opt_dict("key") is None
    return not state.pending_rotation


def withheld(state: TeamState, key: Fields, boxed: set[str], owed: set[str], recipients: set[str],
             optional: set[str], org: OrgState, org_seq: int) -> tuple[list[str] | None, set[str], set[str]]:
    """A coalition space's new key generation (session 17, review 17): besides the members it boxes (``boxed``) it
    names those it withholds (``withheld``: exactly the members ``owed`` a box, the team's members not waiting for a
    share, who get none), host members only; and on the host's side none of its members the host's organization
    removed is still listed (``departed``: their explicit removal comes first). A guest's view takes the names as
    owed no box (its client cannot see the host's incidents); the host's judge checks them against its incidents
    (the caller: a withheld member must be one whose box is optional or owed none there). Returns the names (None
    outside a coalition space) and the recipients and optional ones the caller checks the boxes against (a guest's
    view: the boxes given, checked here)."""
    if state.kind != "coalition":
        return None, recipients, optional
    gone = departed(state, org, org_seq)
    if gone:
        raise ChainError(f"coalition space {state.name} still lists member(s) {', '.join(gone)}, whom the host "
                         "organization removed: a host member posts their removal (coalition.remove, departed) first")
    raw = key.list_("withheld", 1000) if key.has("withheld") else []
    named = [m for m in raw if isinstance(m, str)]
    if len(named) != len(raw) or not named and key.has("withheld") or named != sorted(set(named)):
        raise ChainError("withheld: member ids, sorted, each once (absent when none)")
    if set(named) & set(state.guests) or not set(named) <= owed or boxed != owed - set(named):
        raise ChainError("key boxes and withheld do not match the team's membership (a member neither boxed nor "
                         "named withheld, or a guest withheld)")
    return named, (boxed if org.outside is not None else recipients), (boxed if org.outside is not None else optional)
