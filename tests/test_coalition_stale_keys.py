"""Issue 20, session 18: the one rule of a coalition key to replace (``security.stalekeys.stale_keys``): a
key is stale when someone the ally's chain says may hold its seed (a signer of an ``org.coalition`` naming it, or a
member filed a box of it) does not hold NCC now, whichever way they lost it; above all by the end of their NCC term,
which no link marks. Chain level (tests/helpers/coalition_world.py); the model's side is
tests/test_coalition_share_model.py (invariant c)."""

from __future__ import annotations

from security.stalekeys import holders, stale_keys
from tests.helpers.chain_world import DAY, MWorld, Person
from tests.helpers.coalition_rekey import ncc_of_three
from tests.helpers.coalition_world import Coalition
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement
from vault.coalitionkeys import seal_coalition_seed


def _share(w: MWorld, by: Person, key: CoalitionKey, *to: Person) -> None:
    w.org_link(by, "org.coalition.share", {"name": "campaign", "key": key.public, "boxes": [
        {"member": p.id, "puk_gen": p.puk.generation,
         "box": seal_coalition_seed(key, "campaign", p.id, p.puk.generation, p.puk.box_public)} for p in to]})


def _rekey(w: MWorld, by: Person, old: CoalitionKey, new: CoalitionKey, root: bytes) -> None:
    w.org_link(by, "org.coalition", {"name": "campaign", "key": new.public, "host": None, "replaces": old.public,
                                     "rekey": signed_statement(old, rekey_statement(root, new.public, w.time))})


def test_a_key_sealed_to_a_member_whose_ncc_term_ended_is_stale_until_replaced() -> None:
    ally = Coalition().ally()
    w, founder = ally.world, ally.world.founder
    gina = w.admit("gina")
    end = w.time + DAY
    w.role(founder, gina, "ncc", until=end)  # one signature: no NCC member besides the signer and gina
    _share(w, founder, ally.key, founder, gina)
    org = w.org()
    assert holders(org, "campaign") == {founder.id, gina.id}
    assert stale_keys(org, end - 1, w.members()) == {}  # her term runs: the key is the NCC's
    assert stale_keys(org, end, w.members()) == {"campaign": (gina.id,)}  # no link marks its end: the time does
    w.time = end + 10
    new = CoalitionKey.generate()
    _rekey(w, founder, ally.key, new, ally.root)  # the NCC is the founder alone: recorded at once
    org = w.org()
    assert holders(org, "campaign") == {founder.id}  # gina's box is of the retired key
    assert stale_keys(org, w.time, w.members()) == {}


def test_a_member_who_only_signed_the_key_makes_it_stale_and_ncc_again_does_not() -> None:
    """hank proposed the new key (his device made its seed), gina recorded it; nobody was sealed it yet. hank's NCC
    revoked: stale for him alone (gina still holds NCC). Granted again: not stale."""
    ally, w, founder, gina, hank = ncc_of_three("gina", "hank")
    new = CoalitionKey.generate()
    _rekey(w, hank, ally.key, new, ally.root)  # proposed
    _rekey(w, gina, ally.key, new, ally.root)  # recorded (her own statement)
    org = w.org()
    assert org.coalitions["campaign"].key == new.public and holders(org, "campaign") == {hank.id, gina.id}
    assert stale_keys(org, w.time, w.members()) == {}
    w.role(founder, hank, "ncc", grant=False)
    w.role(gina, hank, "ncc", grant=False)
    assert stale_keys(w.org(), w.time, w.members()) == {"campaign": (hank.id,)}
    w.role(founder, hank, "ncc")
    w.role(gina, hank, "ncc")
    assert stale_keys(w.org(), w.time, w.members()) == {}


def test_a_removed_member_who_held_a_box_makes_the_key_stale() -> None:
    ally = Coalition().ally()
    w, founder = ally.world, ally.world.founder
    gina = w.admit("gina")
    w.role(founder, gina, "ncc")
    _share(w, founder, ally.key, founder, gina)
    w.org_link(founder, "org.remove", {"member": gina.id, "reason": ""})
    assert stale_keys(w.org(), w.time, w.members()) == {"campaign": (gina.id,)}
