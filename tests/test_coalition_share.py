"""Issue 20, every NCC member holds the coalition key: ``org.coalition.share`` (``vault.chains.coalitionshare``) seals
a recorded coalition key's seed to NCC members' PUKs (``vault.coalitionkeys``), judged by the one judge, replayed by
the real chain code. The chain cannot look inside a box: a server that swaps, replays or forges one is caught by its
recipient on opening, and never gets a key of its choosing used."""

from __future__ import annotations

from typing import Any

import pytest

from security.authority import POLICY
from tests.helpers.chain_world import MWorld, Person, expect
from tests.helpers.coalition_world import Ally, Coalition
from vault.chains.coalition import CoalitionKey
from vault.coalitionkeys import open_coalition_box, seal_coalition_seed
from vault.crypto import primitives as p
from vault.encoding import encode
from vault.errors import ChainError, IntegrityError, PolicyDenied
from vault.links import Link


def _box(ally: Ally, who: Person, *, key: CoalitionKey | None = None, name: str = "campaign") -> dict[str, Any]:
    k = key or ally.key
    return {"member": who.id, "puk_gen": who.puk.generation,
            "box": seal_coalition_seed(k, name, who.id, who.puk.generation, who.puk.box_public)}


def _share(ally: Ally, signer: Person, boxes: list[dict[str, Any]], *, key: bytes | None = None,
           append: bool = True) -> Link:
    return ally.world.org_link(signer, "org.coalition.share",
                               {"name": "campaign", "key": key or ally.key.public, "boxes": boxes}, append=append)


def _refused(w: MWorld, link: Link, exc: type[Exception], match: str) -> None:
    expect(exc, lambda: w.org().apply(link, w.members(), POLICY), match)


@pytest.fixture
def ally() -> tuple[Ally, Person]:
    """The ally's NCC (its founder) recorded the key; ``gina`` is granted NCC after."""
    a = Coalition().ally()
    gina = a.world.admit("gina")
    a.world.role(a.world.founder, gina, "ncc")
    return a, gina


def test_an_ncc_member_opens_the_key_shared_with_them(ally: tuple[Ally, Person]) -> None:
    a, gina = ally
    founder = a.world.founder
    _share(a, founder, [_box(a, founder), _box(a, gina)])
    shares = a.world.org().coalition_shares["campaign"]
    assert set(shares) == {founder.id, gina.id}
    got = open_coalition_box(shares[gina.id].box, gina.puk, "campaign", a.key.public, gina.id)
    assert got.seed == a.key.seed
    assert shares[gina.id].by == founder.id
    # gina's PUK rotates: a later share files a new box for her, replacing the old one
    _share(a, founder, [_box(a, gina)])
    assert a.world.org().coalition_shares["campaign"][gina.id].seq == a.world.org_links[-1].seq


def test_a_share_is_the_ncc_s_act_for_the_ncc_of_the_recorded_key(ally: tuple[Ally, Person]) -> None:
    a, gina = ally
    w, founder = a.world, a.world.founder
    plain = w.admit("plain")
    _refused(w, _share(a, plain, [_box(a, plain)], append=False), PolicyDenied, "share a coalition key")
    _refused(w, _share(a, founder, [_box(a, plain)], append=False), ChainError, "does not hold NCC")
    other = CoalitionKey.generate()
    _refused(w, _share(a, founder, [_box(a, gina, key=other)], key=other.public, append=False), ChainError,
             "no coalition key recorded")
    _refused(w, _share(a, founder, [_box(a, gina), _box(a, gina)], append=False), ChainError, "two boxes")
    _refused(w, _share(a, founder, [], append=False), ChainError, "boxes must be a list")
    unnamed = w.org_link(founder, "org.coalition.share", {"name": "other", "key": a.key.public,
                                                          "boxes": [_box(a, gina)]}, append=False)
    _refused(w, unnamed, ChainError, "no coalition key recorded")
    w.role(founder, gina, "ncc", grant=False)  # gina steps out of the NCC: no box for her any more
    _refused(w, _share(a, founder, [_box(a, gina)], append=False), ChainError, "does not hold NCC")


def test_a_box_the_server_swaps_or_forges_opens_nothing(ally: tuple[Ally, Person]) -> None:
    """The recipient's checks: a box for someone else (filed under gina), a box of another key sealed to her (the
    server's own key), a box bound to another name, or bytes that are no box: each refused, nothing returned."""
    a, gina = ally
    founder = a.world.founder
    for_founder = _box(a, founder)["box"]
    forged = CoalitionKey.generate()
    cases = [(for_founder, "does not open"),
             (seal_coalition_seed(forged, "campaign", gina.id, gina.puk.generation, gina.puk.box_public),
              "bound to another"),
             (seal_coalition_seed(a.key, "other", gina.id, gina.puk.generation, gina.puk.box_public),
              "bound to another"),
             (b"\x00" * 80, "does not open")]
    for box, match in cases:
        expect(IntegrityError, lambda box=box: open_coalition_box(box, gina.puk, "campaign", a.key.public,
                                                                  gina.id), match)
    # a box whose binding names the recorded key but whose seed is another key's
    bad = CoalitionKey.generate()
    lying = p.seal(gina.puk.box_public, encode({"name": "campaign", "key": a.key.public, "member": gina.id,
                                                "puk_gen": gina.puk.generation, "seed": bad.seed}))
    expect(IntegrityError, lambda: open_coalition_box(lying, gina.puk, "campaign", a.key.public, gina.id),
           "holds another key")
