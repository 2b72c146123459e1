"""Coalition key rekeys at chain level (issue 20; tests/test_coalition_rekey_offer.py, tests/test_review28_exploits.py,
tests/test_coalition_rekey_chain.py, tests/test_coalition_stale_keys.py): an ally whose NCC is its founder and two
more members, and a rekey proposal (``org.coalition`` with ``replaces``, ``rekey`` and the new seed's ``boxes``)."""

from __future__ import annotations

from typing import Any

from tests.helpers.chain_world import MWorld, Person
from tests.helpers.coalition_world import Ally, Coalition
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement
from vault.coalitionkeys import seal_coalition_seed
from vault.crypto import primitives as p
from vault.encoding import encode


def ncc_of_three(first: str = "hank", second: str = "gina") -> tuple[Ally, MWorld, Person, Person, Person]:
    """An ally (its founder recorded the key ``campaign``), ``first`` and ``second`` admitted, in that order, and
    granted NCC: the founder grants both, and ``first`` gives the second signature ``second``'s grant takes once
    ``first`` holds NCC. Returns the ally, its world, its founder, ``first`` and ``second``."""
    ally = Coalition().ally()
    w = ally.world
    one, two = w.admit(first), w.admit(second)
    w.role(w.founder, one, "ncc")
    w.role(w.founder, two, "ncc")
    w.role(one, two, "ncc")
    return ally, w, w.founder, one, two


def box(key: CoalitionKey, to: Person, *, seed_of: CoalitionKey | None = None, sealed_to: Person | None = None,
        ) -> dict[str, Any]:
    """``to``'s box of ``key`` in a proposal; ``seed_of``: another key's seed inside (bound to ``key`` all the same);
    ``sealed_to``: sealed to another member's key (filed under ``to``)."""
    target = sealed_to or to
    sealed = seal_coalition_seed(key, "campaign", to.id, to.puk.generation, target.puk.box_public)
    if seed_of is not None:  # the fields bound to the proposed key, the seed another's: what the recipient checks
        sealed = p.seal(target.puk.box_public, encode({"name": "campaign", "key": key.public, "member": to.id,
                                                       "puk_gen": to.puk.generation, "seed": seed_of.seed}))
    return {"member": to.id, "puk_gen": to.puk.generation, "box": sealed}


def propose(w: MWorld, signer: Person, old: CoalitionKey, root: bytes, new: CoalitionKey,
            boxes: list[dict[str, Any]] | None, **kw: Any) -> None:
    """``signer``'s ``org.coalition`` rekey of ``campaign`` from ``old`` to ``new`` (its statement signed with
    ``old``), carrying ``boxes`` (none: no ``boxes`` field, as an older client's)."""
    body: dict[str, Any] = {"name": "campaign", "key": new.public, "host": w.org().coalitions["campaign"].host,
                            "replaces": old.public,
                            "rekey": signed_statement(old, rekey_statement(root, new.public, w.time))}
    if boxes is not None:
        body["boxes"] = boxes
    w.org_link(signer, "org.coalition", body, **kw)
