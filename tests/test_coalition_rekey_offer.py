"""Session 21 (fix27rekey; review 27's third finding): a rekey proposal carries the new key's seed sealed to the NCC
(``boxes`` in the ``org.coalition`` rekey, filed as the key's shares when a second NCC member records it), and a
client signs another member's proposal only after opening its own box in it to the proposed key. Chain level, on
the stand-in of tests/test_review20_exploits.py (the clients' own ``rekey``/``when_stale``): the malicious proposer
(or a server swapping a box) on the other side of the rule, and the chain's rules of the boxes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client.coalitionkeys import share_missing
from client.coalitionrekey import rekey, when_stale
from client.home import Home
from security.stalekeys import stale_keys
from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.allies import own_server
from tests.helpers.chain_world import MWorld, Person
from tests.helpers.coalition_rekey import box, ncc_of_three, propose
from tests.helpers.coalition_world import Coalition
from tests.helpers.members import session
from tests.test_review20_exploits import _Device, _share
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement
from vault.coalitionkeys import open_coalition_box, seal_coalition_seed
from vault.errors import ChainError
from vault.links import make_link
from vault.wire.schemas import LinkRequest, SeqAnswer

ally = ally_fixture  # the fixture (tests/helpers/allies.py): dora, founder (NCC) of an ally on a server of its own


def _stale_ally() -> tuple[Any, MWorld, Person, Person]:
    """dora (founder) and hank hold NCC and ``campaign``; hank revokes a spare device: the key is stale."""
    ally = Coalition().ally()
    w, dora = ally.world, ally.world.founder
    hank = w.admit("hank")
    w.role(dora, hank, "ncc")
    _share(w, dora, ally.key, dora, hank)
    w.revoke_device(hank, w.add_device(hank, "spare"))
    return ally, w, dora, hank


@pytest.mark.parametrize("boxes", ["none", "missing", "another key", "sealed to another"])
def test_a_proposal_whose_box_for_the_signer_does_not_give_the_key_is_not_signed(boxes: str) -> None:
    """A malicious proposer (a thief on hank's tablet, or a server swapping the box): its rekey proposal, signed with
    the current key and dated after the staleness, carries no box for dora, none at all, a box bound to the key
    holding another seed, or one sealed to another member. dora's hook does not sign it (it would put in force a key
    she does not hold): it warns and proposes a key of its own, sealed to the NCC; hank's hook records that one
    (his box opens), and the thief's key is never recorded. On the code before session 21 dora's hook signed it."""
    ally, w, dora, hank = _stale_ally()
    thief, other = CoalitionKey.generate(), CoalitionKey.generate()
    tablet = w.add_device(hank, "tablet")
    offered = {"none": None, "missing": [box(thief, hank)],
               "another key": [box(thief, dora, seed_of=other), box(thief, hank)],
               "sealed to another": [box(thief, dora, sealed_to=hank), box(thief, hank)]}[boxes]
    propose(w, hank, ally.key, ally.root, thief, offered, by=tablet)
    desk = _Device(w, dora, {"campaign": ally.key.seed})
    notes = asyncio.run(when_stale(desk.client()))
    assert w.org().coalitions["campaign"].key == ally.key.public, notes  # not recorded
    assert len(notes) == 1 and "new key proposed" in notes[0], notes  # dora's own, instead
    if boxes in ("another key", "sealed to another"):  # a proposal leaving out an NCC member is passed over
        assert any("not signing the new coalition key campaign" in x for x in desk.warnings), desk.warnings
    phone = _Device(w, hank, {"campaign": ally.key.seed})
    signed = asyncio.run(when_stale(phone.client()))
    recorded = w.org().coalitions["campaign"].key
    assert recorded != thief.public and "your signature recorded it" in signed[0], signed
    assert CoalitionKey(phone.coalitions["campaign"]).public == recorded  # the recorder holds it (its box, filed)
    asyncio.run(when_stale(desk.client()))  # dora adopts her proposal's seed
    assert CoalitionKey(desk.coalitions["campaign"]).public == recorded
    assert stale_keys(w.org(), w.time, w.members()) == {}


def test_the_box_a_signer_opened_is_the_one_filed() -> None:
    """Boxes in the proposal are filed at the recording, the first offered for a member kept: a later link naming
    the same key (a re-proposal, the recording itself) carrying another box for dora does not replace it; a member
    who no longer holds NCC at the recording is filed nothing."""
    ally, w, dora, hank, gina = ncc_of_three()
    new, other = CoalitionKey.generate(), CoalitionKey.generate()
    propose(w, dora, ally.key, ally.root, new, [box(new, p) for p in (dora, hank, gina)])
    w.role(dora, gina, "ncc", grant=False)
    w.role(hank, gina, "ncc", grant=False)
    propose(w, hank, ally.key, ally.root, new, [box(new, dora, seed_of=other)])  # records it
    org = w.org()
    assert org.coalitions["campaign"].key == new.public
    filed = org.coalition_shares["campaign"]
    assert {m for m, s in filed.items() if s.key == new.public} == {dora.id, hank.id}
    assert open_coalition_box(filed[dora.id].box, dora.puk, "campaign", new.public, dora.id).seed == new.seed
    assert org.coalition_offers == {}


@pytest.mark.parametrize("case", ["no rekey", "not ncc", "twice", "empty"])
def test_the_chain_refuses_malformed_boxes_in_an_org_coalition(case: str) -> None:
    """The boxes of a rekey follow a share's rule (each for a member holding NCC at the link's time, once, 1 to 64)
    and travel with a rekey only; anything else is refused by the judge (no link stored)."""
    ally = Coalition().ally()
    w, dora = ally.world, ally.world.founder
    hank, ivy = w.admit("hank"), w.admit("ivy")
    w.role(dora, hank, "ncc")
    new = CoalitionKey.generate()
    if case == "no rekey":
        w.org_link(dora, "org.coalition", {"name": "second", "key": new.public, "host": None,
                                           "boxes": [box(new, dora)]})
    else:
        boxes = {"not ncc": [box(new, dora), box(new, ivy)], "twice": [box(new, dora), box(new, dora)],
                 "empty": []}[case]
        propose(w, dora, ally.key, ally.root, new, boxes)
    with pytest.raises(ChainError):
        w.org()


def test_the_hook_warns_when_a_stale_key_is_held_by_no_ncc_device() -> None:
    """A rekey recorded the old way (a proposal without boxes, signed by an older client): the only holder is the
    proposing device; when it is revoked the key is stale and no NCC member has a box of it. dora's hook, which
    cannot replace it, says so (before session 21: silent, every command)."""
    ally, w, dora, hank = _stale_ally()
    tablet = w.add_device(hank, "tablet")
    made = CoalitionKey.generate()
    propose(w, hank, ally.key, ally.root, made, None, by=tablet)
    propose(w, dora, ally.key, ally.root, made, None)  # recorded, no box filed
    w.revoke_device(hank, tablet)
    desk = _Device(w, dora, {"campaign": ally.key.seed})
    assert asyncio.run(when_stale(desk.client())) == []
    assert any("no NCC member holds a box of it" in x for x in desk.warnings), desk.warnings


def test_by_hand_a_proposal_without_the_signers_box_is_not_signed() -> None:
    """`mvault coalition rekey NAME` by hand (no staleness): hank's proposal without a box for dora is not what dora's
    command signs; it proposes her own (sealed to the NCC), which hank's command then records."""
    ally = Coalition().ally()
    w, dora = ally.world, ally.world.founder
    hank = w.admit("hank")
    w.role(dora, hank, "ncc")
    _share(w, dora, ally.key, dora, hank)
    bare = CoalitionKey.generate()
    propose(w, hank, ally.key, ally.root, bare, [box(bare, hank)])
    desk = _Device(w, dora, {"campaign": ally.key.seed})
    mine = asyncio.run(rekey(desk.client(), "campaign"))
    assert mine.state == "proposed" and mine.key != bare.public, mine
    phone = _Device(w, hank, {"campaign": ally.key.seed})
    theirs = asyncio.run(rekey(phone.client(), "campaign"))
    assert theirs.state == "signed" and w.org().coalitions["campaign"].key == mine.key, theirs
    assert CoalitionKey(phone.coalitions["campaign"]).public == mine.key


def test_the_server_refuses_a_rekey_whose_boxes_name_a_member_without_ncc(
        ally: Member, make_member: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real server (the ally's): dora's client posts, without judging it first, an ``org.coalition`` rekey whose
    boxes include one for gina, a member without NCC. The server's judge refuses it (a clear 4xx: the chain's message)
    and stores nothing: the key recorded stays, no offer waits."""
    dora = ally
    gina = make_member("gina")
    gina.ok("join", dora.json("invite")["invite"], "--name", "gina")
    dora.json("coalition", "pairing-code", "campaign")
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(dora.passphrase_file))
    old = CoalitionKey(Home(dora.home).unlock().coalitions["campaign"])
    asyncio.run(_post_boxed_to_gina(tmp_path, dora, old))


async def _post_boxed_to_gina(tmp_path: Path, dora: Member, old: CoalitionKey) -> None:
    async with session(own_server(tmp_path), dora) as s:
        view = await s.chains.view()
        new, gina, me = CoalitionKey.generate(), view.member_by_name("gina"), view.members[s.session.me]
        boxes = [{"member": m.member_id, "puk_gen": m.puk_gen, "box": seal_coalition_seed(
            new, "campaign", m.member_id, m.puk_gen, m.puk_box_public)} for m in (me, gina)]
        body = {"name": "campaign", "key": new.public, "host": view.org.coalitions["campaign"].host,
                "replaces": old.public, "boxes": boxes,
                "rekey": signed_statement(old, rekey_statement(view.org.root, new.public, s.session.now()))}
        link = make_link(chain=view.org.org_id, seq=view.org.seq + 1, prev=view.org.head, time=s.session.now(),
                         signer=s.session.me, device=s.session.device, type_="org.coalition", body=body)
        with pytest.raises(ChainError, match="does not hold NCC"):
            await s.session.api.post("/api/v1/org/links", LinkRequest(link.wire), SeqAnswer)
        after = await s.chains.view(refresh=True)
        assert after.org.seq == view.org.seq and after.org.coalitions["campaign"].key == old.public
        assert after.org.coalition_offers == {}


def test_a_filed_box_that_does_not_open_is_a_warning_not_a_silent_failure() -> None:
    """Session 21 (fix28box, review 28's second finding): gina proposes a key with a box for hank sealed to her own
    member key, and dora records it by hand as an older client would (a signature link, no reseal). On hank's device
    the stale-key hook (he then revokes a spare device) and ``share_missing`` warn, once in the command and sanitized,
    that his box does not open (on the code before: the hook's warning was the bare error, ``share_missing`` raised).
    An honest recorder's client reseals instead: hank holds the key (tests/test_review28_exploits.py)."""
    ally, w, dora, hank, gina = ncc_of_three()
    _share(w, dora, ally.key, dora, hank, gina)
    bad = CoalitionKey.generate()
    propose(w, gina, ally.key, ally.root, bad, [box(bad, dora), box(bad, hank, sealed_to=gina), box(bad, gina)])
    propose(w, dora, ally.key, ally.root, bad, None)  # the recording, by hand: no reseal
    assert w.org().coalitions["campaign"].key == bad.public
    w.revoke_device(hank, w.add_device(hank, "spare"))  # stale: hank's hook reaches the key too
    assert "campaign" in stale_keys(w.org(), w.time, w.members())
    phone = _Device(w, hank, {"campaign": ally.key.seed})
    c = phone.client()
    asyncio.run(when_stale(c))
    assert asyncio.run(share_missing(c)) == []
    notes = [n for n in phone.warnings if "does not open on this device" in n]
    assert len(notes) == 1 and notes[0].startswith("your box of coalition key campaign"), phone.warnings
    assert not any("not replaced" in n for n in phone.warnings), phone.warnings
