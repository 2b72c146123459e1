"""The stale-key hooks of two NCC members converge on one new key (session 20, fix24hook; review round 24's fourth
finding, docs/STATUS.md issue 20). Chain level: the client's own ``when_stale``/``rekey`` against the stand-in of
tests/test_review20_exploits.py (the view is the world's replay, an append a link the judge takes, the keystore a
dict). dora (founder) and hank hold NCC and the ally's key ``campaign``; the latest staleness is a revoked device of
hank's. Each test failed on the code before the fix (checked: named in each docstring)."""

from __future__ import annotations

import asyncio

from client.coalitionkeys import next_slot, offer_boxes
from client.coalitionrekey import rekey, when_stale
from client.view import View
from security.stalekeys import stale_keys, stale_since
from tests.helpers.chain_world import MWorld, Person
from tests.helpers.coalition_world import Coalition
from tests.test_review20_exploits import _Device, _share
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement


def _world() -> tuple[MWorld, Person, Person, CoalitionKey, _Device, _Device]:
    ally = Coalition().ally()
    w, dora = ally.world, ally.world.founder
    hank = w.admit("hank")
    w.role(dora, hank, "ncc")
    _share(w, dora, ally.key, dora, hank)
    phone, desk = _Device(w, hank, {"campaign": ally.key.seed}), _Device(w, dora, {"campaign": ally.key.seed})
    return w, dora, hank, ally.key, phone, desk


def _propose(w: MWorld, device: _Device, old: CoalitionKey) -> CoalitionKey:
    """What a hook that read the chain before the other's proposal does: a new key of its own, its seed kept, sealed
    to the NCC in the proposal (session 21)."""
    new = CoalitionKey.generate()
    device.coalitions[next_slot("campaign")] = new.seed
    entry = w.org().coalitions["campaign"]
    w.org_link(device.person, "org.coalition", {
        "name": "campaign", "key": new.public, "host": entry.host, "replaces": old.public,
        "rekey": signed_statement(old, rekey_statement(w.org().root, new.public, w.time)),
        "boxes": offer_boxes(View(w.org(), w.members(), {}), new, "campaign", w.time)})
    return new


def _rekeys(w: MWorld) -> int:
    return sum(1 for link in w.org_links if link.type == "org.coalition")


def test_two_fresh_proposals_the_later_proposer_signs_the_earlier_and_the_hooks_go_quiet() -> None:
    """Both hooks ran on the same view (a race: each proposed). The earlier proposal (by time, then proposer) is the
    one: its proposer's hook waits, the other's signs it (not both: before, each signed the other's, the second
    refused); the proposer's next hook seals it; then many more rounds add no link (no loop). Before the fix: dora's
    hook (the earlier proposer) signed hank's (the assertion on her first hook's output)."""
    w, _dora, hank, key, phone, desk = _world()
    w.revoke_device(hank, w.add_device(hank, "tablet"))
    since = stale_since(w.org(), w.time, w.members())["campaign"]
    first = _propose(w, desk, key)  # dora's, earlier
    _propose(w, phone, key)  # hank's, later
    assert w.org_links[-1].time > w.org_links[-2].time >= since
    assert asyncio.run(when_stale(desk.client())) == []  # hers is the one: she waits for a second NCC member
    signed = asyncio.run(when_stale(phone.client()))
    assert len(signed) == 1 and "your signature recorded it" in signed[0] and "founder (device" in signed[0], signed
    assert w.org().coalitions["campaign"].key == first.public
    sealed = asyncio.run(when_stale(desk.client()))
    assert len(sealed) == 1 and "replaced and sealed to the NCC" in sealed[0], sealed
    links = len(w.org_links)
    for _ in range(4):
        assert asyncio.run(when_stale(phone.client())) == [] and asyncio.run(when_stale(desk.client())) == []
    assert len(w.org_links) == links and stale_keys(w.org(), w.time, w.members()) == {}


def test_an_own_proposal_older_than_the_staleness_is_proposed_anew_once_and_its_seed_kept() -> None:
    """hank's hook proposed; a new reason came (a second device of his revoked); his own proposal is older than it:
    his hook proposes a new key once (not again at his next command: no loop), dated at or after the staleness, and
    dora's hook records that one, not the older. The older seed stays in the keystore: recorded all the same (a
    second signature of it, from a client with an older view), hank's hook adopts and seals it. Before the fix: his
    hook waited on his own older proposal (the assertion on his second hook's output)."""
    w, dora, hank, key, phone, desk = _world()
    w.revoke_device(hank, w.add_device(hank, "tablet"))
    assert "new key proposed" in asyncio.run(when_stale(phone.client()))[0]
    older = CoalitionKey(phone.coalitions[next_slot("campaign")])
    w.revoke_device(hank, w.add_device(hank, "spare"))  # the latest reason: after hank's proposal
    since = stale_since(w.org(), w.time, w.members())["campaign"]
    again = asyncio.run(when_stale(phone.client()))
    assert len(again) == 1 and "new key proposed" in again[0], again
    assert w.org_links[-1].time >= since
    newer = CoalitionKey(phone.coalitions[next_slot("campaign")])
    assert newer.public != older.public and phone.coalitions[f"campaign@next@{older.public.hex()}"] == older.seed
    rekeys = _rekeys(w)
    assert asyncio.run(when_stale(phone.client())) == [] and _rekeys(w) == rekeys  # waits now: proposed once
    # A second signature of the OLDER proposal (a client that read an older chain): recorded; hank still holds it.
    entry = w.org().coalitions["campaign"]
    w.org_link(dora, "org.coalition", {
        "name": "campaign", "key": older.public, "host": entry.host, "replaces": key.public,
        "rekey": signed_statement(key, rekey_statement(w.org().root, older.public, w.time))})
    assert w.org().coalitions["campaign"].key == older.public
    sealed = asyncio.run(when_stale(phone.client()))
    assert len(sealed) == 1 and "replaced and sealed to the NCC" in sealed[0], sealed
    assert phone.coalitions == {"campaign": older.seed}  # the other proposal's seed dropped: it can never be recorded
    assert w.org().coalition_shares["campaign"][dora.id].key == older.public  # sealed to dora too


def test_by_hand_rekey_still_signs_another_members_older_proposal() -> None:
    """`coalition rekey` by hand (no staleness given) is unchanged: it signs another NCC member's pending proposal
    whatever its age (review 24's recovery), the newest first. Passes on the code before too: it guards what the fix
    keeps."""
    w, _dora, hank, key, phone, desk = _world()
    w.revoke_device(hank, w.add_device(hank, "tablet"))
    proposed = _propose(w, phone, key)
    w.revoke_device(hank, w.add_device(hank, "spare"))  # hank's proposal is older than the staleness now
    assert asyncio.run(rekey(desk.client(), "campaign")).state == "signed"
    assert w.org().coalitions["campaign"].key == proposed.public


def test_a_fresh_proposal_that_also_moves_the_host_does_not_hold_the_hooks_up() -> None:
    """Session 21 (CI's model run of stop 39, tests/test_coalition_share_model.py): dora proposed, after the staleness,
    a new key that also names another host (``host`` null: a link no command of ours makes, but an NCC member may
    sign). The hooks took it as the one to sign, yet signed their own link, with the host recorded: another act, so
    the key was never replaced (each hook waited or was refused "you proposed it already"). A rekey that moves the
    host is no rekey the hooks sign: they pass over it, propose and record a key of their own. Before the fix: the key
    stayed stale (the last assertion)."""
    w, dora, hank, key, phone, desk = _world()
    assert w.org().coalitions["campaign"].host is not None
    w.revoke_device(hank, w.add_device(hank, "tablet"))
    moved = CoalitionKey.generate()
    w.org_link(dora, "org.coalition", {
        "name": "campaign", "key": moved.public, "host": None, "replaces": key.public,
        "rekey": signed_statement(key, rekey_statement(w.org().root, moved.public, w.time))})
    for _ in range(3):
        for device in (phone, desk):
            asyncio.run(when_stale(device.client()))
    recorded = w.org().coalitions["campaign"]
    assert recorded.key not in (key.public, moved.public) and recorded.host is not None
    assert stale_keys(w.org(), w.time, w.members()) == {}
