"""Issue 20, the coalition key's rotation when a member leaves the NCC, on the ally's side (docs/lifecycle.md "Every
NCC member holds the coalition key", step 1): ``org.coalition`` with ``replaces`` and ``rekey`` (a
``coalition.rekey`` statement signed with the key it retires), two-person as the first recording, the departing
member's signature never counting; from that link on the ally's own replay refuses the old key (expel statements,
shares) and keeps it as retired. Real chain code, an ally built by hand (tests/helpers/coalition_world.py)."""

from __future__ import annotations

from typing import Any

import pytest

from security.authority import POLICY
from security.coalitionact import judge_act
from tests.helpers.chain_world import MWorld, Person, expect
from tests.helpers.coalition_rekey import ncc_of_three
from tests.helpers.coalition_world import Ally
from vault.chains.coalition import CoalitionKey, expel_statement, rekey_statement, signed_statement
from vault.coalitionact import CoalitionAct, act_record, sign_act
from vault.coalitionkeys import seal_coalition_seed
from vault.errors import ChainError, NotFound, PolicyDenied
from vault.links import Link


@pytest.fixture
def ally() -> tuple[Ally, Person, Person]:
    """The ally's NCC: its founder (who recorded the key), gina and hank; gina then leaves the NCC (two-person)."""
    a, w, _, gina, hank = ncc_of_three("gina", "hank")  # gina's signature: the second hank's grant takes
    assert {"ncc"} <= w.org().roles_of(hank.id, w.time)
    w.role(w.founder, gina, "ncc", grant=False)
    w.role(hank, gina, "ncc", grant=False)
    assert "ncc" not in w.org().roles_of(gina.id, w.time)
    return a, gina, hank


def rekey_body(a: Ally, new: CoalitionKey, *, old: CoalitionKey | None = None, replaces: bytes | None = None,
               root: bytes | None = None, named: bytes | None = None) -> dict[str, Any]:
    statement = rekey_statement(root or a.root, named or new.public, a.world.time)
    return {"name": "campaign", "key": new.public, "host": None, "replaces": replaces or a.key.public,
            "rekey": signed_statement(old or a.key, statement)}


def refused(w: MWorld, link: Link, exc: type[Exception], match: str) -> None:
    expect(exc, lambda: w.org().apply(link, w.members(), POLICY), match)


def test_the_remaining_ncc_rekeys_and_the_old_key_is_refused_from_that_link_on(
        ally: tuple[Ally, Person, Person]) -> None:
    a, gina, hank = ally
    w, founder = a.world, a.world.founder
    new = CoalitionKey.generate()
    body = rekey_body(a, new)
    w.org_link(founder, "org.coalition", body)  # hank holds NCC too: the first signature proposes
    assert w.org().coalitions["campaign"].key == a.key.public
    expect(PolicyDenied, lambda: w.org().apply(w.org_link(founder, "org.coalition", body, append=False),
                                               w.members(), POLICY), "proposed it already")
    w.org_link(hank, "org.coalition", body)  # the second NCC member's same link records it
    org = w.org()
    seq = w.org_links[-1].seq
    assert org.coalitions["campaign"].key == new.public
    assert [(r.entry.key, r.seq) for r in org.coalitions_retired["campaign"]] == [(a.key.public, seq)]
    # a share of the old key: refused; of the new one, to the remaining NCC: filed
    old_box = {"member": hank.id, "puk_gen": 1, "box": seal_coalition_seed(a.key, "campaign", hank.id, 1,
                                                                          hank.puk.box_public)}
    refused(w, w.org_link(founder, "org.coalition.share", {"name": "campaign", "key": a.key.public,
                                                           "boxes": [old_box]}, append=False),
            ChainError, "no coalition key recorded")
    w.org_link(founder, "org.coalition.share", {"name": "campaign", "key": new.public, "boxes": [
        {"member": m.id, "puk_gen": 1, "box": seal_coalition_seed(new, "campaign", m.id, 1, m.puk.box_public)}
        for m in (founder, hank)]})
    assert set(w.org().coalition_shares["campaign"]) == {founder.id, hank.id}
    assert w.org().coalition_shares["campaign"][hank.id].key == new.public
    # an expulsion signed with the old key: refused by the ally's own replay; with the new one: kept
    ivy = w.admit("ivy")
    for key, ok in ((a.key, False), (new, True)):
        carried = [signed_statement(key, expel_statement(a.root, ivy.id, w.time))]
        link = w.org_link(founder, "org.remove", {"member": ivy.id, "reason": "", "coalition": carried},
                          append=ok)
        if not ok:
            refused(w, link, ChainError, "not signed with a coalition key recorded")
    assert not w.org().admitted(ivy.id) and len(w.org().expels[ivy.id]) == 1


def test_a_rekey_the_chain_refuses(ally: tuple[Ally, Person, Person]) -> None:
    a, gina, hank = ally
    w, founder = a.world, a.world.founder
    new, other = CoalitionKey.generate(), CoalitionKey.generate()
    cases: list[tuple[dict[str, Any], Person, type[Exception], str]] = [
        (rekey_body(a, new, old=other), founder, ChainError, "not signed with the coalition key it replaces"),
        (rekey_body(a, new, replaces=other.public, old=other), founder, ChainError, "replaces is not the coalition"),
        (rekey_body(a, new, named=other.public), founder, ChainError, "another organization or another new key"),
        (rekey_body(a, new, root=bytes(32)), founder, ChainError, "another organization or another new key"),
        (rekey_body(a, a.key), founder, ChainError, "already recorded"),
        ({**rekey_body(a, new), "rekey": {"statement": b"x", "sig": bytes(64)}}, founder, ChainError, "malformed"),
        ({k: v for k, v in rekey_body(a, new).items() if k != "rekey"}, founder, ChainError, "malformed"),
        ({k: v for k, v in rekey_body(a, new).items() if k != "replaces"}, founder, ChainError, "already recorded"),
        (rekey_body(a, new), gina, PolicyDenied, "record a coalition key"),  # she left the NCC: signs nothing
    ]
    for body, signer, exc, match in cases:
        refused(w, w.org_link(signer, "org.coalition", body, append=False), exc, match)
    # a first recording's body for a name already recorded, with a rekey and no replaces: refused as well
    assert w.org().coalitions["campaign"].key == a.key.public and not w.org().coalitions_retired


def test_the_departing_members_signature_never_counts(ally: tuple[Ally, Person, Person]) -> None:
    """gina proposed a rekey (to a key of her own) while she still held NCC; after she left, the founder signing the
    same link only proposes it again (her proposal is void), and hank's second signature is what records it."""
    a, w, founder, gina, hank = ncc_of_three("gina", "hank")
    hers = CoalitionKey.generate()
    body = rekey_body(a, hers)  # gina holds the old key's seed: she can sign the statement
    w.org_link(gina, "org.coalition", body)
    w.role(founder, gina, "ncc", grant=False)
    w.role(hank, gina, "ncc", grant=False)
    w.org_link(founder, "org.coalition", body)
    assert w.org().coalitions["campaign"].key == a.key.public  # still only a proposal (the founder's now)
    w.org_link(hank, "org.coalition", body)
    assert w.org().coalitions["campaign"].key == hers.public  # two current NCC members signed it: in force
    # once replaced, the old key can never come back, nor be replaced again
    refused(w, w.org_link(founder, "org.coalition", rekey_body(a, CoalitionKey.generate()), append=False),
            ChainError, "replaces is not the coalition")
    refused(w, w.org_link(founder, "org.coalition", rekey_body(a, a.key, old=hers, replaces=hers.public),
                          append=False), ChainError, "is \\(or was\\) already recorded")


def test_an_act_record_made_before_the_rekey_still_names_the_space(ally: tuple[Ally, Person, Person]) -> None:
    """A ``coalition.act`` record dated before the rekey (taken up to 30 days after the act) still finds the space the
    organization recorded a key for at its time: the rekey replaced the key, not the space."""
    a, gina, hank = ally
    w, founder = a.world, a.world.founder
    before = w.time
    body = rekey_body(a, CoalitionKey.generate())
    w.org_link(founder, "org.coalition", body)
    w.org_link(hank, "org.coalition", body)
    raw = act_record(w.org_id, founder.id, founder.device.device_id, before, "campaign", "space", "read")
    judge_act(CoalitionAct.parse(raw), sign_act(founder.device, raw), w.org(), w.members())
    first = w.org_links[0].time  # before the key was first recorded: still refused
    raw = act_record(w.org_id, founder.id, founder.device.device_id, first, "campaign", "space", "read")
    expect(NotFound, lambda: judge_act(CoalitionAct.parse(raw), sign_act(founder.device, raw), w.org(), w.members()),
           "recorded no coalition key")


def test_the_second_signer_brings_its_own_rekey_statement(ally: tuple[Ally, Person, Person]) -> None:
    """The proposal is "old key -> new key": the second NCC member (who holds the old key from its box, not the new
    one's proposer's statement) signs its own statement for the same new key; one not signed with the old key is
    refused, and a statement for another new key is another proposal, not a second signature."""
    a, gina, hank = ally
    w, founder = a.world, a.world.founder
    new = CoalitionKey.generate()
    w.org_link(founder, "org.coalition", rekey_body(a, new))
    refused(w, w.org_link(hank, "org.coalition", rekey_body(a, new, old=CoalitionKey.generate()), append=False),
            ChainError, "not signed with the coalition key it replaces")
    w.org_link(hank, "org.coalition", rekey_body(a, CoalitionKey.generate()))  # another key: proposed, not recorded
    assert w.org().coalitions["campaign"].key == a.key.public
    w.tick()
    mine = rekey_body(a, new)
    w.org_link(hank, "org.coalition", mine)
    org = w.org()
    assert org.coalitions["campaign"].key == new.public and w.org_links[-1].body.raw["rekey"] == mine["rekey"]
    assert not [act for act in org.role_proposals if act[0] == "org.coalition"]  # the other proposal is void
