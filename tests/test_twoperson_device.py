"""Session 19 (fix20, review round 20): a two-person proposal is its signing DEVICE's (``vault.chains.twoperson``).
Once the device that signed a pending proposal is revoked (its member's chain) or cut (``org.device.cut``), the
proposal is void: the same act signed afterwards by a second NCC member only proposes it again (in that member's
name), for every kind that waits in ``OrgState.role_proposals`` (``org.role``, ``org.remove``, ``org.audit_team``,
``org.server``, ``org.coalition`` first and rekey). A proposal put in force before the revocation stays in force on
every later replay. Chain level (tests/helpers/chain_world.py); the hook's side (``when_stale`` signs no proposal
made before the staleness it answers, and names the proposer and device) at the end, against the same stand-in
for the client as tests/test_review20_exploits.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from client.coalitionkeys import next_slot
from client.coalitionrekey import when_stale
from security.stalekeys import stale_keys, stale_since
from server.directory import Directory
from tests.helpers.chain_world import DAY, MWorld, Person, expect
from tests.helpers.coalition_world import Coalition
from tests.test_review20_exploits import _Device, _share
from vault.chains import OrgState
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement
from vault.errors import ChainError, Conflict
from vault.keys import DeviceKeys, PukKeys


def _three() -> tuple[MWorld, Person, Person, Person]:
    """dora (founder, NCC), hank (NCC) and gina (a member): hank's tablet signs a proposal."""
    w = MWorld()
    dora, hank, gina = w.founder, w.admit("hank"), w.admit("gina")
    w.role(dora, hank, "ncc")  # one signature: no NCC member besides dora and hank
    return w, dora, hank, gina


def _server(url: str) -> dict[str, Any]:
    return {"url": url, "pin_kind": "spki", "pin": bytes(range(32))}


# Each kind: (the body of the two-person act, whether it is in force on this state).
KINDS: dict[str, tuple[Callable[[Person], tuple[str, dict[str, Any]]], Callable[[OrgState, Person], bool]]] = {
    "org.role": (lambda g: ("org.role", {"member": g.id, "role": "ncc", "grant": True, "until": None}),
                 lambda org, g: "ncc" in org.roles_of(g.id)),
    "org.remove": (lambda g: ("org.remove", {"member": g.id, "reason": ""}),
                   lambda org, g: not org.admitted(g.id)),
    "org.audit_team": (lambda g: ("org.audit_team", {"team": "team-a"}), lambda org, g: org.audit_team == "team-a"),
    "org.server": (lambda g: ("org.server", _server("https://moved.example.org")),
                   lambda org, g: org.server is not None),
    "org.coalition": (lambda g: ("org.coalition", {"name": "campaign", "key": bytes(range(1, 33)), "host": None}),
                      lambda org, g: "campaign" in org.coalitions),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("how", ["revoked", "cut"])
def test_a_proposal_of_a_device_revoked_or_cut_since_is_not_put_in_force(kind: str, how: str) -> None:
    w, dora, hank, gina = _three()
    if kind == "org.remove":  # removing an NCC member takes two
        w.role(dora, gina, "ncc")
        w.role(hank, gina, "ncc")
    make, in_force = KINDS[kind]
    type_, body = make(gina)
    tablet: DeviceKeys = w.add_device(hank, "tablet")
    w.org_link(hank, type_, body, by=tablet)  # the thief, on hank's seized tablet
    assert not in_force(w.org(), gina)  # proposed only
    if how == "revoked":
        w.revoke_device(hank, tablet)  # from his phone
    else:
        w.org_link(dora, "org.device.cut", w.cut_body(hank, tablet))  # the NCC (no Security Team) cuts it
    void = w.org()
    w.org_link(dora, type_, body)  # the second NCC member signs the same act, as told
    org = w.org()
    assert not in_force(org, gina)  # before session 19: in force (the thief's proposal and dora's signature)
    assert void.pending(w.members(), w.time) == {}  # void: nothing waited any more
    assert [(by, dev) for by, dev, _ in org.pending(w.members(), w.time).values()] == [(dora.id, dora.device.device_id)]
    w.org_link(hank, type_, body)  # hank's phone: now the act is the two of them, on live devices
    assert in_force(w.org(), gina)


def test_a_proposal_put_in_force_before_the_revocation_stays_in_force() -> None:
    w, dora, hank, gina = _three()
    tablet = w.add_device(hank, "tablet")
    w.role(hank, gina, "ncc", by=tablet)
    w.role(dora, gina, "ncc")  # in force: the tablet was hank's, live, at both links' times
    w.revoke_device(hank, tablet)
    org = w.org()  # replayed with the revocation known: history unchanged
    assert "ncc" in org.roles_of(gina.id)


def test_pending_lists_no_proposal_of_a_device_revoked_at_any_date() -> None:
    """``OrgState.pending`` (what the clients read and sign): while the device is live the proposal waits; once the
    view holds its revocation, at ANY date (session 19, fix22: review 22 had a revocation dated ahead of the reader's
    time; before, ``pending`` at a time before the revocation listed it), it is not listed, though the judge's raw
    dict keeps it until the next org link."""
    w, dora, hank, gina = _three()
    tablet = w.add_device(hank, "tablet")
    w.role(hank, gina, "ncc", by=tablet)
    before = w.time
    assert list(w.org().pending(w.members(), before)) == list(w.org().role_proposals)
    w.revoke_device(hank, tablet)
    org, members = w.org(), w.members()
    assert list(org.role_proposals)  # no org link since: the raw dict keeps it
    assert org.pending(members, before) == {} and org.pending(members, w.time) == {}


def test_a_key_is_stale_for_a_device_lost_after_its_box_and_not_for_one_lost_before() -> None:
    """Review 20's second finding, both sides: a device revoked before its member was filed a box (sealed to the
    PUK generation that followed) could never open it; one revoked after could. After the rekey, current."""
    ally = Coalition().ally()
    w, dora = ally.world, ally.world.founder
    hank = w.admit("hank")
    w.role(dora, hank, "ncc")
    old = w.add_device(hank, "old-phone")
    w.revoke_device(hank, old)  # before any box of hank's
    _share(w, dora, ally.key, dora, hank)
    assert stale_keys(w.org(), w.time, w.members()) == {}
    tablet = w.add_device(hank, "tablet")
    w.revoke_device(hank, tablet)
    revoked = w.time
    assert stale_keys(w.org(), w.time, w.members()) == {"campaign": (hank.id,)}
    assert stale_since(w.org(), w.time, w.members()) == {"campaign": revoked}
    new, host = CoalitionKey.generate(), w.org().coalitions["campaign"].host
    w.org_link(hank, "org.coalition", {"name": "campaign", "key": new.public, "host": host,
                                       "replaces": ally.key.public,
                                       "rekey": signed_statement(ally.key, rekey_statement(ally.root, new.public,
                                                                                           w.time))})
    w.org_link(dora, "org.coalition", {"name": "campaign", "key": new.public, "host": host,
                                       "replaces": ally.key.public,
                                       "rekey": signed_statement(ally.key, rekey_statement(ally.root, new.public,
                                                                                           w.time))})
    assert w.org().coalitions["campaign"].key == new.public
    assert stale_keys(w.org(), w.time, w.members()) == {}  # its holders got it after the tablet's revocation


def test_a_revocation_dated_ahead_of_the_readers_clock_makes_the_key_stale_at_once() -> None:
    """Session 20 (CI's one failure of test_coalition_device_revoke_rekey): a revocation is dated after the device's
    last act (the server's 409 ``not_before``: the next second, or later when the thief forward-dated it), so the
    command that revoked it often reads the chain at a time before the revocation's date. The key was not stale
    then, and the hook after ``device revoke`` proposed nothing. A revocation the chain records is final whatever its
    date: the key is stale from the moment it is read, and ``stale_since`` is the revocation's time."""
    ally = Coalition().ally()
    w, dora = ally.world, ally.world.founder
    hank = w.admit("hank")
    w.role(dora, hank, "ncc")
    _share(w, dora, ally.key, dora, hank)
    tablet = w.add_device(hank, "tablet")
    read_at = w.time
    w.revoke_device(hank, tablet, time=read_at + 5)
    assert stale_keys(w.org(), read_at, w.members()) == {"campaign": (hank.id,)}
    assert stale_since(w.org(), read_at, w.members()) == {"campaign": read_at + 5}


def test_the_hook_does_not_sign_a_proposal_made_before_the_staleness_it_answers() -> None:
    """hank proposed a rekey by hand (a live device: no thief); later gina's NCC term ends. No hook signs hank's older
    proposal (it answered another question). Session 20 (fix24hook, review 24): hank's own hook no longer waits on it
    either (two such members waited for good): it proposes a new key, the older seed kept under its own slot; dora's
    hook signs that one (naming hank and his device) and the key hank's phone made anew is recorded. (Before
    session 20: hank's hook did nothing, dora's proposed her own, hank's signed hers.)"""
    ally = Coalition().ally()
    w, dora = ally.world, ally.world.founder
    hank, gina = w.admit("hank"), w.admit("gina")
    w.role(dora, hank, "ncc")
    end = w.time + DAY
    w.role(dora, gina, "ncc", until=end)
    w.role(hank, gina, "ncc", until=end)
    _share(w, dora, ally.key, dora, hank, gina)
    early, host = CoalitionKey.generate(), w.org().coalitions["campaign"].host
    w.org_link(hank, "org.coalition", {"name": "campaign", "key": early.public, "host": host,
                                       "replaces": ally.key.public,
                                       "rekey": signed_statement(ally.key, rekey_statement(ally.root, early.public,
                                                                                           w.time))})
    w.time = end + 60
    slot = next_slot("campaign")
    phone = _Device(w, hank, {"campaign": ally.key.seed, slot: early.seed})  # his phone made the early key
    proposed = asyncio.run(when_stale(phone.client()))  # his older proposal answers another question
    assert len(proposed) == 1 and "new key proposed" in proposed[0], proposed
    assert phone.coalitions[f"{slot}@{early.public.hex()}"] == early.seed  # the older seed kept, under its own slot
    anew = CoalitionKey(phone.coalitions[slot]).public
    assert anew != early.public
    desk = _Device(w, dora, {"campaign": ally.key.seed})
    notes = asyncio.run(when_stale(desk.client()))
    assert len(notes) == 1 and "replaced (your signature recorded it)" in notes[0], notes
    assert "its proposer, hank (device " in notes[0], notes  # the proposer, and the device, named
    assert w.org().coalitions["campaign"].key == anew  # not the early key
    assert asyncio.run(when_stale(phone.client())) == ["coalition key campaign: replaced and sealed to the NCC; "
                                                       "guests carry it to the host's space at their next contact"]
    assert set(phone.coalitions) == {"campaign"}  # the slots emptied
    assert CoalitionKey(phone.coalitions["campaign"]).public == anew  # adopted; the early seed dropped


@pytest.mark.parametrize("revoke", [True, False])
def test_a_protocols_text_proposed_on_a_device_revoked_since_is_not_approved(revoke: bool) -> None:
    """``org.protocols.propose`` is two-person too (a second NCC member's ``org.protocols.approve``): the proposal is
    the device's. Revoked: dora's approval names no proposal (refused), the text is not in force, and hank proposes
    it again from his phone; not revoked: dora's approval puts it in force."""
    w, dora, hank, _gina = _three()
    tablet = w.add_device(hank, "tablet")
    text = "version = 2\n[closing]\nncc = \"1\"\nsecurity = 0\n"
    w.org_link(hank, "org.protocols.propose", {"text": text}, by=tablet)
    digest = next(iter(w.org().proposals))
    if revoke:
        w.revoke_device(hank, tablet)
    w.org_link(dora, "org.protocols.approve", {"digest": digest})
    if not revoke:
        assert w.org().protocols is not None and w.org().protocols.digest == digest
        return
    expect(ChainError, w.org, "no such security-protocols proposal")  # before session 19: in force
    w.org_links.pop()
    w.org_link(hank, "org.protocols.propose", {"text": text})  # again, from his phone
    w.org_link(dora, "org.protocols.approve", {"digest": digest})
    assert w.org().protocols is not None and w.org().protocols.digest == digest


def test_the_server_refuses_a_revocation_dated_before_a_second_signature_it_took() -> None:
    """A revocation is dated by its signer (within the server's skew): one dated before the second signature that
    put a proposal of the revoked device in force would make every replay void what the server recorded. The server
    refuses it (409, with the time to sign after); dated after, it is taken and the act stays in force."""
    w, dora, hank, gina = _three()
    tablet = w.add_device(hank, "tablet")
    w.role(hank, gina, "ncc", by=tablet)
    proposed = w.time
    w.role(dora, gina, "ncc")  # in force
    cosigned = w.time
    d = _directory(w)
    early = w.member_link(hank, "device.revoke", w.revoke_body(hank, tablet, PukKeys.generate(hank.puk.generation + 1)),
                          time=proposed + 1, append=False)
    e = expect(Conflict, lambda: d.check_not_before(early), "put in force")  # before session 19: taken
    assert isinstance(e, Conflict) and e.not_before == cosigned + 1  # the judge voids at or before: after it
    w.revoke_device(hank, tablet)  # dated now: after the second signature
    d.check_not_before(hank.chain[-1])
    assert "ncc" in w.org().roles_of(gina.id)


def _directory(w: MWorld) -> Directory:
    d = Directory()
    for person in w.people.values():
        for link in person.chain:
            d.commit_member(d.check_member_create(link) if link.seq == 1 else d.check_member_link(link))
    for link in w.org_links:
        d.commit_org(d.check_org_link(link), link)
    return d
